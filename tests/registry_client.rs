//! The registry client against the real registry: listings, true digests, deletes that
//! converge, errors a person can act on (delete disabled, read-only, credentials, TLS,
//! unreachable), and the verifier catching damage done behind the registry's back.

mod support;

use regsweep::digest::Digest;
use regsweep::maintenance::instance::free_port;
use regsweep::media;
use regsweep::registry::{ClientOptions, DeleteOutcome, RegistryClient, RegistryError, WriteProbe};
use support::{ImageKind, TestRegistry, TestRegistryOptions, push_image, push_image_full, push_index};

#[tokio::test]
async fn catalog_lists_nested_repositories_sorted_and_tags_sorted() {
    let reg = TestRegistry::start(TestRegistryOptions::default()).await;
    let c = reg.client();
    c.ping().await.unwrap();
    for repo in ["zeta", "team-a/app", "alpha", "team-b/tools/cli", "team-a/api"] {
        push_image(&c, repo, "v1", ImageKind::Docker, 1).await;
    }
    assert_eq!(c.catalog().await.unwrap(), ["alpha", "team-a/api", "team-a/app", "team-b/tools/cli", "zeta"]);
    let img = push_image_full(&c, "team-a/app", "latest", ImageKind::Oci, 1).await;
    for tag in ["v10", "a", "v2", "B"] {
        c.put_manifest("team-a/app", tag, img.media_type, &c.get_manifest("team-a/app", "latest").await.unwrap().body).await.unwrap();
    }
    assert_eq!(c.tags("team-a/app").await.unwrap(), ["B", "a", "latest", "v1", "v10", "v2"]);
    let err = c.tags("nope").await.unwrap_err();
    assert!(matches!(err, RegistryError::RepositoryUnknown { .. }), "{err}");
    let err = c.get_manifest("team-a/app", "missing").await.unwrap_err();
    assert!(matches!(err, RegistryError::ManifestUnknown { .. }), "{err}");
    reg.stop().await;
}

#[tokio::test]
async fn manifests_come_back_with_their_true_digest_and_head_agrees() {
    let reg = TestRegistry::start(TestRegistryOptions::default()).await;
    let c = reg.client();
    let docker = push_image_full(&c, "team-a/app", "docker", ImageKind::Docker, 2).await;
    let oci = push_image_full(&c, "team-a/app", "oci", ImageKind::Oci, 1).await;
    let arm = push_image_full(&c, "team-a/app", "", ImageKind::Oci, 1).await;
    let index = push_index(
        &c,
        "team-a/app",
        "multi",
        &[(oci.digest.clone(), oci.media_type, oci.size, "amd64"), (arm.digest.clone(), arm.media_type, arm.size, "arm64")],
        ImageKind::Oci,
    )
    .await;
    let list =
        push_index(&c, "team-a/app", "list", &[(docker.digest.clone(), docker.media_type, docker.size, "amd64")], ImageKind::Docker).await;
    let cases = [
        ("docker", &docker.digest, media::DOCKER_MANIFEST),
        ("oci", &oci.digest, media::OCI_MANIFEST),
        ("multi", &index, media::OCI_INDEX),
        ("list", &list, media::DOCKER_MANIFEST_LIST),
        (&arm.digest.as_str(), &arm.digest, media::OCI_MANIFEST),
    ];
    for (reference, want, media_type) in cases {
        let got = c.get_manifest("team-a/app", reference).await.unwrap();
        assert_eq!((&got.digest, got.media_type.as_str()), (want, media_type), "GET {reference}");
        assert_eq!(Digest::of(&got.body), got.digest);
        for head_ref in [reference, &want.as_str()] {
            let head = c.head_manifest("team-a/app", head_ref).await.unwrap().expect("exists");
            assert_eq!((&head.digest, head.media_type.as_str(), head.size), (want, media_type, got.body.len() as u64), "HEAD {head_ref}");
        }
    }
    assert_eq!(c.head_manifest("team-a/app", "missing").await.unwrap(), None);
    // Blobs: HEAD gives the size, GET is hashed.
    let layer = &docker.layers[0];
    let size = c.head_blob("team-a/app", layer).await.unwrap().expect("layer exists");
    assert_eq!(c.fetch_blob_verified("team-a/app", layer).await.unwrap(), size);
    assert_eq!(c.head_blob("team-a/app", &Digest::of(b"never pushed")).await.unwrap(), None);
    let err = c.fetch_blob_verified("team-a/app", &Digest::of(b"never pushed")).await.unwrap_err();
    assert!(matches!(err, RegistryError::BlobUnknown { .. }), "{err}");
    reg.stop().await;
}

#[tokio::test]
async fn delete_by_digest_removes_the_tags_and_converges() {
    let reg = TestRegistry::start(TestRegistryOptions::default()).await;
    let c = reg.client();
    let digest = push_image(&c, "app", "v1", ImageKind::Docker, 1).await;
    let body = c.get_manifest("app", "v1").await.unwrap().body;
    c.put_manifest("app", "also", media::DOCKER_MANIFEST, &body).await.unwrap();
    assert_eq!(c.delete_manifest("app", &digest).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(c.delete_manifest("app", &digest).await.unwrap(), DeleteOutcome::AlreadyGone);
    assert_eq!(c.head_manifest("app", "v1").await.unwrap(), None);
    // Both tags went with the digest; the registry answers {"tags":null}.
    assert_eq!(c.tags("app").await.unwrap(), Vec::<String>::new());
    assert_eq!(c.catalog().await.unwrap(), ["app"], "an emptied repository stays in the catalog");
    reg.stop().await;
}

#[tokio::test]
async fn delete_disabled_names_the_setting_to_change() {
    let reg = TestRegistry::start(TestRegistryOptions { delete_enabled: false, ..Default::default() }).await;
    let c = reg.client();
    let digest = push_image(&c, "app", "v1", ImageKind::Oci, 1).await;
    let err = c.delete_manifest("app", &digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::DeleteDisabled { .. }), "{err}");
    assert_eq!(err.category(), "delete-disabled");
    assert!(err.to_string().contains("storage.delete.enabled"), "{err}");
    reg.stop().await;
}

#[tokio::test]
async fn read_only_mode_refuses_writes_and_the_probe_tells() {
    let mut reg = TestRegistry::start(TestRegistryOptions::default()).await;
    let c = reg.client();
    assert!(matches!(c.probe_write("app").await.unwrap(), WriteProbe::Accepted { upload_uuid: Some(_) }));
    let digest = push_image(&c, "app", "v1", ImageKind::Oci, 1).await;
    reg.restart(true).await;
    let c = reg.client();
    assert_eq!(c.probe_write("app").await.unwrap(), WriteProbe::Refused { status: 405 });
    let err = c.delete_manifest("app", &digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");
    let err = c.push_blob("app", b"x").await.unwrap_err();
    assert_eq!(err.category(), "read-only", "{err}");
    // Reads still work.
    assert_eq!(c.get_manifest("app", "v1").await.unwrap().digest, digest);
    reg.restart(false).await;
    assert!(matches!(reg.client().probe_write("app").await.unwrap(), WriteProbe::Accepted { .. }));
    reg.stop().await;
}

#[tokio::test]
async fn basic_auth_and_credential_errors() {
    let password = "Pa55-for-the-test";
    let reg = TestRegistry::start(TestRegistryOptions { htpasswd: Some(("ci".into(), password.into())), ..Default::default() }).await;
    let good = reg.client();
    good.ping().await.unwrap();
    push_image(&good, "app", "v1", ImageKind::Docker, 1).await;
    assert_eq!(good.catalog().await.unwrap(), ["app"]);
    let with = |username: Option<&str>, password: Option<&str>| {
        reg.client_with(ClientOptions { username: username.map(String::from), password: password.map(String::from), ..Default::default() })
    };
    for (bad, hint) in [(with(Some("ci"), Some("Not-The-Pa55")), "wrong"), (with(None, None), "none were given")] {
        let err = bad.catalog().await.unwrap_err();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(hint) && text.contains("REGSWEEP_REGISTRY_PASSWORD"), "says what to fix: {text}");
        assert!(!text.contains(password) && !text.contains("Not-The-Pa55"), "never prints a password: {text}");
        assert!(!format!("{bad:?}").contains("Not-The-Pa55"));
    }
    reg.stop().await;
}

#[tokio::test]
async fn an_unreachable_registry_is_named_in_the_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let c = RegistryClient::new(&url, ClientOptions::default()).unwrap();
    let err = c.ping().await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command.
fn make_certs(dir: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let run = |args: &[&str]| std::process::Command::new("openssl").args(args).current_dir(dir).output().is_ok_and(|o| o.status.success());
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let ok = run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=regsweep test CA",
    ]) && run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"])
        && run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ]);
    ok.then(|| (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key")))
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = make_certs(certs.path()) else {
        panic!("the openssl command is needed: run scripts/install-test-deps.sh");
    };
    let reg = TestRegistry::start(TestRegistryOptions { tls: Some((cert, key)), ..Default::default() }).await;
    assert!(reg.url().starts_with("https://"), "{}", reg.url());
    let err = reg.client().ping().await.unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("--ca-cert"), "{err}");
    reg.client_with(ClientOptions { ca_cert: Some(ca), ..Default::default() }).ping().await.unwrap();
    reg.client_with(ClientOptions { insecure_skip_tls_verify: true, ..Default::default() }).ping().await.unwrap();
    reg.stop().await;
}

#[tokio::test]
async fn the_verifier_passes_a_healthy_registry_and_catches_a_missing_layer() {
    let mut reg = TestRegistry::start(TestRegistryOptions::default()).await;
    let c = reg.client();
    let broken = push_image_full(&c, "team-a/app", "broken", ImageKind::Docker, 2).await;
    let other = push_image_full(&c, "team-a/app", "", ImageKind::Oci, 1).await;
    push_index(
        &c,
        "team-a/app",
        "multi",
        &[(broken.digest.clone(), broken.media_type, broken.size, "amd64"), (other.digest.clone(), other.media_type, other.size, "arm64")],
        ImageKind::Oci,
    )
    .await;
    push_image(&c, "team-a/app", "fine", ImageKind::Oci, 2).await;
    let corrupt = push_image_full(&c, "b", "1", ImageKind::Docker, 1).await;
    let healthy = regsweep::verify::verify_registry(&c).await.unwrap();
    assert!(healthy.is_ok(), "{:?}", healthy.problems);
    // 4 images + 1 index; blobs: 3 + 2 + 3 + 2 (config and layers).
    assert_eq!((healthy.repositories, healthy.tags, healthy.manifests, healthy.blobs), (2, 4, 5, 10));

    // Behind the registry's back: one layer file gone, another one's bytes replaced.
    std::fs::remove_file(reg.blob_data_path(&broken.layers[1])).unwrap();
    let corrupt_path = reg.blob_data_path(&corrupt.layers[0]);
    let len = std::fs::metadata(&corrupt_path).unwrap().len() as usize;
    std::fs::write(&corrupt_path, vec![7u8; len]).unwrap();
    reg.restart(false).await; // drops the blob descriptor cache
    let report = regsweep::verify::verify_registry(&reg.client()).await.unwrap();
    assert!(!report.is_ok());
    let found: Vec<(&str, &str, Option<&Digest>)> =
        report.problems.iter().map(|p| (p.repository.as_str(), p.tag.as_str(), p.digest.as_ref())).collect();
    assert_eq!(
        found,
        [
            ("b", "1", Some(&corrupt.layers[0])),
            ("team-a/app", "broken", Some(&broken.layers[1])),
            ("team-a/app", "multi", Some(&broken.layers[1]))
        ],
        "the image, the index over it, and the corrupted one: {:?}",
        report.problems
    );
    assert!(report.problems[0].problem.contains("digest"), "{:?}", report.problems[0]);

    let only_fine = regsweep::verify::verify_tags(&reg.client(), &[("team-a/app".into(), "fine".into())]).await.unwrap();
    assert!(only_fine.is_ok() && only_fine.tags == 1, "{only_fine:?}");
    let missing_tag = regsweep::verify::verify_tags(&reg.client(), &[("b".into(), "gone".into())]).await.unwrap();
    assert_eq!(missing_tag.problems.len(), 1, "{missing_tag:?}");
    reg.stop().await;
}

#[tokio::test]
async fn the_verifier_fails_as_a_whole_when_the_registry_is_unreachable() {
    let c = RegistryClient::new(&format!("http://127.0.0.1:{}", free_port()), ClientOptions::default()).unwrap();
    let err = regsweep::verify::verify_registry(&c).await.unwrap_err();
    assert_eq!(err.category(), "unreachable");
}

/// A real token service for the registry's `auth.token` mode: checks basic credentials and
/// answers RS256 JWTs (signed by the openssl command) granting whatever scope is asked.
mod token_service {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub const SERVICE: &str = "regsweep-test";
    pub const ISSUER: &str = "regsweep-test-issuer";
    pub const AUTH: &str = "Basic Y2k6dG9rZW4tcGFzcw=="; // ci:token-pass

    pub struct TokenService {
        pub realm: String,
        pub cert: PathBuf,
        pub requests: Arc<AtomicUsize>,
    }

    fn b64(bytes: &[u8], url: bool) -> String {
        let alphabet: &[u8] = if url {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        } else {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        };
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
            if !url {
                out.push_str(&"=".repeat(3 - chunk.len()));
            }
        }
        out
    }

    /// Starts the service; None when openssl is not installed.
    pub async fn start(dir: &Path) -> Option<TokenService> {
        let ok = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.pem",
                "-days",
                "1",
                "-subj",
                "/CN=token-issuer",
            ])
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return None;
        }
        let pem = std::fs::read_to_string(dir.join("token.pem")).unwrap();
        let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let (key, counter) = (dir.join("token.key"), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let (key, der_b64) = (key.clone(), der_b64.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).to_string();
                    let (status, body) = answer(&request, &key, &der_b64).await;
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        Some(TokenService { realm, cert: dir.join("token.pem"), requests })
    }

    async fn answer(request: &str, key: &Path, der_b64: &str) -> (&'static str, String) {
        let path = request.split_whitespace().nth(1).unwrap_or("/");
        let authorized = request.lines().any(|l| l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == AUTH);
        if !authorized {
            return ("401 Unauthorized", r#"{"details":"bad credentials"}"#.into());
        }
        let url = reqwest::Url::parse(&format!("http://x{path}")).unwrap();
        // `type:name:actions`, where the name may itself hold colons (host:port/app).
        let access: Vec<serde_json::Value> = url
            .query_pairs()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter_map(|scope| {
                let (kind, rest) = scope.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [der_b64]});
        let claims = serde_json::json!({"iss": ISSUER, "sub": "ci", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid::Uuid::new_v4().to_string(), "access": access});
        let signing_input = format!("{}.{}", b64(header.to_string().as_bytes(), true), b64(claims.to_string().as_bytes(), true));
        let mut child = tokio::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(signing_input.as_bytes()).await.unwrap();
        let signature = child.wait_with_output().await.unwrap().stdout;
        ("200 OK", serde_json::json!({"token": format!("{signing_input}.{}", b64(&signature, true))}).to_string())
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(b64(b"foobar", false), "Zm9vYmFy");
        assert_eq!(b64(b"fooba", false), "Zm9vYmE=");
        assert_eq!(b64(b"foob", true), "Zm9vYg");
        assert_eq!(format!("Basic {}", b64(b"ci:token-pass", false)), AUTH);
    }
}

#[tokio::test]
async fn bearer_token_auth_fetches_caches_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tokens) = token_service::start(dir.path()).await else {
        panic!("the openssl command is needed: run scripts/install-test-deps.sh");
    };
    let auth = support::TokenAuth {
        realm: tokens.realm.clone(),
        service: token_service::SERVICE.into(),
        issuer: token_service::ISSUER.into(),
        root_cert_bundle: tokens.cert.clone(),
    };
    let reg = TestRegistry::start(TestRegistryOptions { token_auth: Some(auth), ..Default::default() }).await;
    let c = reg.client_with(ClientOptions { username: Some("ci".into()), password: Some("token-pass".into()), ..Default::default() });
    let digest = push_image(&c, "team-a/app", "v1", ImageKind::Oci, 1).await;
    assert_eq!(c.catalog().await.unwrap(), ["team-a/app"]);
    assert_eq!(c.get_manifest("team-a/app", "v1").await.unwrap().digest, digest);
    let before = tokens.requests.load(std::sync::atomic::Ordering::SeqCst);
    // Cached per scope: the same reads again cost no new token.
    assert_eq!(c.catalog().await.unwrap(), ["team-a/app"]);
    assert_eq!(c.get_manifest("team-a/app", "v1").await.unwrap().digest, digest);
    assert_eq!(tokens.requests.load(std::sync::atomic::Ordering::SeqCst), before, "tokens are cached per scope");
    assert_eq!(c.delete_manifest("team-a/app", &digest).await.unwrap(), DeleteOutcome::Deleted);
    regsweep::verify::verify_registry(&c).await.unwrap();

    let wrong = reg.client_with(ClientOptions { username: Some("ci".into()), password: Some("nope".into()), ..Default::default() });
    let err = wrong.catalog().await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("token service"), "{err}");
    reg.stop().await;
}
