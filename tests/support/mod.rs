//! The integration-test harness, shared by the test files (each uses part of it): a real
//! `registry serve` on 127.0.0.1 with a free port and its own temporary storage, and helpers
//! that push small random images through the API.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Once;

use rand::RngCore;
use regsweep::digest::Digest;
use regsweep::maintenance::instance::{InstanceError, RegistryProcess, find_registry_bin, free_port};
use regsweep::media;
use regsweep::registry::{ClientOptions, RegistryClient};
use serde_json::json;

/// The tests need the real registry (and skopeo for some). When missing and we are root (CI),
/// install them from the system packages, once per test binary; otherwise say how.
pub fn ensure_registry_installed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let have_registry = find_registry_bin(None).is_ok();
        if have_registry && which("skopeo") {
            return;
        }
        if is_root() {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-test-deps.sh");
            let status = std::process::Command::new("bash").arg(script).status().expect("run scripts/install-test-deps.sh");
            assert!(status.success(), "installing docker-registry and skopeo failed; see the output above");
        } else if !have_registry {
            panic!("these tests need the registry binary: run `sudo bash scripts/install-test-deps.sh` (or `sudo apt-get install docker-registry skopeo`)");
        }
    });
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

#[derive(Clone, Debug)]
pub struct TestRegistryOptions {
    /// `storage.delete.enabled` (the registry's default is false; ours is true).
    pub delete_enabled: bool,
    /// Read-only maintenance mode, set the way that works:
    /// `REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled":true}`.
    pub read_only: bool,
    /// Basic auth with one bcrypt htpasswd user.
    pub htpasswd: Option<(String, String)>,
    /// Serve an existing storage instead of a fresh one in the temp directory.
    pub storage_root: Option<PathBuf>,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Bearer-token auth (`auth.token`) against a token service the test runs.
    pub token_auth: Option<TokenAuth>,
}

/// The registry's `auth.token` settings.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM certificates that sign the tokens.
    pub root_cert_bundle: PathBuf,
}

impl Default for TestRegistryOptions {
    fn default() -> Self {
        TestRegistryOptions { delete_enabled: true, read_only: false, htpasswd: None, storage_root: None, tls: None, token_auth: None }
    }
}

/// A running registry and the temporary directory holding its config, log and (by default)
/// storage. Killed when dropped.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    bin: PathBuf,
    addr: SocketAddr,
    storage_root: PathBuf,
    options: TestRegistryOptions,
    process: Option<RegistryProcess>,
}

impl TestRegistry {
    pub async fn start(options: TestRegistryOptions) -> TestRegistry {
        ensure_registry_installed();
        let dir = tempfile::tempdir().expect("temp dir");
        let storage_root = options.storage_root.clone().unwrap_or_else(|| dir.path().join("storage"));
        std::fs::create_dir_all(&storage_root).expect("storage dir");
        if let Some((user, password)) = &options.htpasswd {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).expect("htpasswd");
        }
        let bin = find_registry_bin(None).expect("registry binary");
        let mut reg = TestRegistry { dir, bin, addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), storage_root, options, process: None };
        // The free port can be taken between choosing and binding it; try a few.
        let mut last = None;
        for _ in 0..3 {
            reg.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            match reg.launch().await {
                Ok(()) => return reg,
                Err(e) => last = Some(e),
            }
        }
        panic!("the test registry did not start: {}", last.expect("an error"));
    }

    fn write_config(&self) {
        let mut config = json!({
            "version": "0.1",
            "log": {"level": "warn"},
            "storage": {
                "filesystem": {"rootdirectory": self.storage_root},
                "delete": {"enabled": self.options.delete_enabled},
                "cache": {"blobdescriptor": "inmemory"},
            },
            // A fixed secret, so upload sessions survive a restart.
            "http": {"addr": self.addr.to_string(), "secret": "regsweep-test-secret"},
        });
        if self.options.htpasswd.is_some() {
            config["auth"] = json!({"htpasswd": {"realm": "regsweep-test", "path": self.dir.path().join("htpasswd")}});
        }
        if let Some(t) = &self.options.token_auth {
            config["auth"] =
                json!({"token": {"realm": t.realm, "service": t.service, "issuer": t.issuer, "rootcertbundle": t.root_cert_bundle}});
        }
        if let Some((cert, key)) = &self.options.tls {
            config["http"]["tls"] = json!({"certificate": cert, "key": key});
        }
        std::fs::write(self.config_path(), serde_yaml::to_string(&config).expect("yaml")).expect("write config.yml");
    }

    async fn launch(&mut self) -> Result<(), InstanceError> {
        self.write_config();
        let env = if self.options.read_only {
            vec![("REGISTRY_STORAGE_MAINTENANCE_READONLY".to_string(), r#"{"enabled":true}"#.to_string())]
        } else {
            Vec::new()
        };
        self.process = Some(RegistryProcess::start(&self.bin, &self.config_path(), env, self.addr, Some(self.log_path())).await?);
        Ok(())
    }

    pub fn url(&self) -> String {
        match &self.process {
            Some(p) => p.url(),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, RegistryProcess::pid)
    }

    pub fn storage_root(&self) -> &Path {
        &self.storage_root
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Where the filesystem driver keeps a blob's bytes.
    pub fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        self.storage_root.join("docker/registry/v2/blobs/sha256").join(&digest.hex()[..2]).join(digest.hex()).join("data")
    }

    /// A client with the htpasswd credentials, if any.
    pub fn client(&self) -> RegistryClient {
        let (username, password) = self.options.htpasswd.clone().map_or((None, None), |(u, p)| (Some(u), Some(p)));
        self.client_with(ClientOptions { username, password, ..Default::default() })
    }

    pub fn client_with(&self, options: ClientOptions) -> RegistryClient {
        RegistryClient::new(&self.url(), options).expect("client")
    }

    /// Stops and starts again on the same storage and port (which also drops the registry's
    /// in-memory blob cache), read-only or not.
    pub async fn restart(&mut self, read_only: bool) {
        if let Some(p) = self.process.take() {
            p.stop().await;
        }
        self.options.read_only = read_only;
        self.launch().await.expect("restart the test registry");
    }

    pub async fn stop(mut self) {
        if let Some(p) = self.process.take() {
            p.stop().await;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Docker,
    Oci,
}

impl ImageKind {
    pub fn manifest_type(self) -> &'static str {
        match self {
            ImageKind::Docker => media::DOCKER_MANIFEST,
            ImageKind::Oci => media::OCI_MANIFEST,
        }
    }

    pub fn index_type(self) -> &'static str {
        match self {
            ImageKind::Docker => media::DOCKER_MANIFEST_LIST,
            ImageKind::Oci => media::OCI_INDEX,
        }
    }
}

/// A pushed image: its manifest and the blobs it needs.
#[derive(Clone, Debug)]
pub struct PushedImage {
    pub digest: Digest,
    pub media_type: &'static str,
    pub size: u64,
    pub config: Digest,
    pub layers: Vec<Digest>,
}

fn format(kind: ImageKind) -> regsweep::fixture::Format {
    match kind {
        ImageKind::Docker => regsweep::fixture::Format::Docker,
        ImageKind::Oci => regsweep::fixture::Format::Oci,
    }
}

/// Pushes an image of `layers` random layers (256–1023 bytes each) through the library's
/// fixture, tagged `tag` (or untagged, by digest, when `tag` is empty).
pub async fn push_image_full(client: &RegistryClient, repo: &str, tag: &str, kind: ImageKind, layers: usize) -> PushedImage {
    let sizes: Vec<usize> = (0..layers).map(|_| 256 + (rand::rng().next_u32() % 768) as usize).collect();
    let tag = (!tag.is_empty()).then_some(tag);
    let pushed = regsweep::fixture::push_image(client, repo, tag, format(kind), &sizes, &[]).await.expect("push an image");
    let (config, layers) = pushed.blobs.split_first().expect("a config blob");
    PushedImage {
        digest: pushed.digest,
        media_type: kind.manifest_type(),
        size: pushed.size as u64,
        config: config.clone(),
        layers: layers.to_vec(),
    }
}

/// [`push_image_full`], returning the manifest digest.
pub async fn push_image(client: &RegistryClient, repo: &str, tag: &str, kind: ImageKind, layers: usize) -> Digest {
    push_image_full(client, repo, tag, kind, layers).await.digest
}

/// Pushes an OCI index or Docker manifest list over already pushed children, given as
/// (digest, media type, size, architecture).
pub async fn push_index(client: &RegistryClient, repo: &str, tag: &str, children: &[(Digest, &str, u64, &str)], kind: ImageKind) -> Digest {
    let pushed: Vec<regsweep::fixture::Pushed> = children
        .iter()
        .map(|(digest, media_type, size, _)| regsweep::fixture::Pushed {
            digest: digest.clone(),
            media_type: media_type.to_string(),
            size: *size as usize,
            blobs: Vec::new(),
        })
        .collect();
    let with_arch: Vec<(&regsweep::fixture::Pushed, &str)> = pushed.iter().zip(children).map(|(p, c)| (p, c.3)).collect();
    regsweep::fixture::push_index(client, repo, tag, format(kind), &with_arch).await.expect("push the index").digest
}

/// Every file under the storage with its size and, for small files (links), its content.
/// Tolerates files vanishing while it walks (a sweep running meanwhile).
pub fn fingerprint(root: &Path) -> std::collections::BTreeMap<String, (u64, Vec<u8>)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if let Ok(meta) = e.metadata() {
                let content = if meta.len() < 200 { std::fs::read(&path).unwrap_or_default() } else { Vec::new() };
                out.insert(path.strip_prefix(root).unwrap().display().to_string(), (meta.len(), content));
            }
        }
    }
    out
}

/// Fails with the files that were added, removed or changed.
pub fn assert_unchanged(before: &std::collections::BTreeMap<String, (u64, Vec<u8>)>, root: &Path) {
    let after = fingerprint(root);
    let changed: Vec<&String> = before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.is_empty(), "nothing may change, but these files did: {changed:?}");
}

/// Every (repository, tag) the registry serves outside the quarantine, with its digest.
pub async fn served(client: &RegistryClient) -> std::collections::BTreeMap<(String, String), Digest> {
    let mut out = std::collections::BTreeMap::new();
    for repo in client.catalog().await.unwrap().into_iter().filter(|r| !regsweep::quarantine::is_quarantine(r)) {
        for tag in client.tags(&repo).await.unwrap() {
            out.insert((repo.clone(), tag.clone()), client.get_manifest(&repo, &tag).await.unwrap().digest);
        }
    }
    out
}

/// Every tag's whole graph (index → manifests → config → layers) pulls with correct digests.
pub async fn verify_whole(client: &RegistryClient) {
    let report = regsweep::verify::verify_registry(client).await.unwrap();
    assert!(report.is_ok(), "every kept image pulls whole: {:?}", report.problems);
}
