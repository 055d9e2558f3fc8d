//! `regsweep demo`: a local registry in a temporary directory, filled with a realistic mix,
//! then planned, frozen, swept, thawed and verified, all with the real registry binary.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};

use crate::fixture::{Format, push_image, push_index, push_signature, set_manifest_pushed, set_tag_pushed};
use crate::maintenance::instance::{RegistryProcess, find_registry_bin, free_port};
use crate::registry::{ClientOptions, READ_ONLY_ENV, READ_ONLY_VALUE, RegistryClient, RegistryError};
use crate::storage::Layout;

/// The policy the demo applies (also shipped as `examples/demo.yaml`).
pub const DEMO_POLICY: &str = include_str!("../examples/demo.yaml");

/// The demo registry's public configuration: delete is off, as in the registry's default, to
/// show that regsweep does not need it on the public registry.
pub fn public_config(root: &Path, addr: SocketAddr) -> String {
    format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: {addr}\n  secret: regsweep-demo-secret\n",
        root.display()
    )
}

/// A public registry on loopback, restartable read-only (frozen) or read-write (thawed).
pub struct DemoRegistry {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub addr: SocketAddr,
    pub process: Option<RegistryProcess>,
}

impl DemoRegistry {
    pub async fn start(bin: Option<&Path>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let bin = find_registry_bin(bin)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        std::fs::create_dir_all(dir.path().join("storage"))?;
        std::fs::write(dir.path().join("config.yml"), public_config(&dir.path().join("storage"), addr))?;
        let mut reg = DemoRegistry { dir, bin, addr, process: None };
        reg.restart(false).await?;
        Ok(reg)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.dir.path().join("storage"))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Maintenance of this registry's storage, proving first that it refuses writes.
    pub fn maintenance_options(&self, policy: crate::policy::RegistryCleanupPolicy) -> crate::maintenance::run::MaintenanceOptions {
        crate::maintenance::run::MaintenanceOptions {
            registry_bin: Some(self.bin.clone()),
            public_url: Some(self.url()),
            ..crate::maintenance::run::MaintenanceOptions::new(policy, self.config_path())
        }
    }

    pub fn client(&self) -> Result<RegistryClient, RegistryError> {
        RegistryClient::new(&self.url(), ClientOptions::default())
    }

    /// Restarts on the same storage and port; a restart also drops the blob cache that lies
    /// after garbage collection.
    pub async fn restart(&mut self, read_only: bool) -> anyhow::Result<()> {
        if let Some(p) = self.process.take() {
            p.stop().await;
        }
        let env = if read_only { vec![(READ_ONLY_ENV.to_string(), READ_ONLY_VALUE.to_string())] } else { Vec::new() };
        let log = self.dir.path().join("registry.log");
        self.process = Some(RegistryProcess::start(&self.bin, &self.config_path(), env, self.addr, Some(log)).await?);
        Ok(())
    }
}

const KIB: usize = 1024;

/// Fills a registry with the demo's mix and sets push times back on disk.
pub async fn fill(client: &RegistryClient, layout: &Layout) -> anyhow::Result<()> {
    let now = Utc::now();
    let days = |n: i64| now - Duration::days(n);
    // team-a/api: releases, CI builds, `latest` sharing a digest, tag history, a signature.
    let base = push_image(client, "team-a/api", None, Format::Docker, &[256 * KIB], &[]).await?;
    let base_layer = (base.blobs[1].clone(), 256 * KIB);
    for (i, age) in [(0, 60), (1, 45), (2, 30), (3, 20), (4, 10)] {
        let tag = format!("v1.{i}.0");
        push_image(client, "team-a/api", Some(&tag), Format::Docker, &[128 * KIB], std::slice::from_ref(&base_layer)).await?;
        set_tag_pushed(layout, "team-a/api", &tag, days(age))?;
    }
    for (n, age) in [(101, 40), (102, 35), (103, 25), (104, 12), (105, 9), (106, 2)] {
        let tag = format!("build-{n}");
        let img = push_image(client, "team-a/api", Some(&tag), Format::Docker, &[192 * KIB], std::slice::from_ref(&base_layer)).await?;
        set_tag_pushed(layout, "team-a/api", &tag, days(age))?;
        set_manifest_pushed(layout, "team-a/api", &img.digest, days(age))?;
        if n == 103 {
            // `stable` shares build-103's digest; keepLatest would drop build-103, not `stable`.
            client
                .put_manifest("team-a/api", "stable", &img.media_type, &client.get_manifest("team-a/api", &img.digest.as_str()).await?.body)
                .await?;
            set_tag_pushed(layout, "team-a/api", "stable", days(1))?;
        }
    }
    let hotfix = push_image(client, "team-a/api", Some("v0.9.0-hotfix"), Format::Oci, &[64 * KIB], &[]).await?;
    set_tag_pushed(layout, "team-a/api", "v0.9.0-hotfix", days(90))?;
    set_manifest_pushed(layout, "team-a/api", &hotfix.digest, days(90))?;
    // `latest` re-pushed: its old digests stay behind untagged (tag history).
    for age in [50, 20, 3] {
        let img = push_image(client, "team-a/api", Some("latest"), Format::Docker, &[160 * KIB], std::slice::from_ref(&base_layer)).await?;
        set_manifest_pushed(layout, "team-a/api", &img.digest, days(age))?;
        set_tag_pushed(layout, "team-a/api", "latest", days(age))?;
    }
    let signed = push_image(client, "team-a/api", Some("build-100"), Format::Oci, &[96 * KIB], &[]).await?;
    set_tag_pushed(layout, "team-a/api", "build-100", days(80))?;
    push_signature(client, "team-a/api", &signed.digest).await?;
    // team-a/web: multi-arch OCI indexes whose platform images are untagged.
    for (tag, age) in [("2023.9", 120), ("2024.1", 70), ("2024.2", 50), ("2025.1", 1)] {
        let amd = push_image(client, "team-a/web", None, Format::Oci, &[128 * KIB], &[]).await?;
        let arm = push_image(client, "team-a/web", None, Format::Oci, &[128 * KIB], &[]).await?;
        let idx = push_index(client, "team-a/web", tag, Format::Oci, &[(&amd, "amd64"), (&arm, "arm64")]).await?;
        for d in [&amd.digest, &arm.digest, &idx.digest] {
            set_manifest_pushed(layout, "team-a/web", d, days(age))?;
        }
        set_tag_pushed(layout, "team-a/web", tag, days(age))?;
        push_signature(client, "team-a/web", &idx.digest).await?;
    }
    // team-b/worker: a Docker manifest list, release tags, and pull-request builds.
    let amd = push_image(client, "team-b/worker", None, Format::Docker, &[96 * KIB], &[]).await?;
    let arm = push_image(client, "team-b/worker", None, Format::Docker, &[96 * KIB], &[]).await?;
    push_index(client, "team-b/worker", "1.0", Format::Docker, &[(&amd, "amd64"), (&arm, "arm64")]).await?;
    for (pr, age) in [(7, 30), (8, 20), (9, 3)] {
        let tag = format!("pr-{pr}");
        push_image(client, "team-b/worker", Some(&tag), Format::Docker, &[160 * KIB], &[]).await?;
        set_tag_pushed(layout, "team-b/worker", &tag, days(age))?;
    }
    // legacy/tool: no rule matches it, so nothing there is touched however old.
    push_image(client, "legacy/tool", Some("0.1"), Format::Docker, &[64 * KIB], &[]).await?;
    set_tag_pushed(layout, "legacy/tool", "0.1", days(700))?;
    Ok(())
}

struct Counts {
    tags: usize,
    manifests: usize,
    blob_bytes: u64,
    disk_bytes: u64,
}

fn count(layout: &Layout) -> anyhow::Result<Counts> {
    let snap = crate::storage::read_storage(layout).map_err(anyhow::Error::msg)?;
    let usage = crate::storage::usage::measure(layout)?;
    Ok(Counts { tags: snap.tag_count(), manifests: snap.manifest_count(), blob_bytes: snap.blob_bytes(), disk_bytes: usage.total_bytes })
}

/// The whole routine, narrated on stdout.
pub async fn run(bin: Option<&Path>) -> anyhow::Result<()> {
    use crate::units::bytes;
    let mut registry = DemoRegistry::start(bin).await?;
    let layout = registry.layout();
    println!("1. Started {} at {} (storage {}; delete disabled)", registry.bin.display(), registry.url(), layout.root().display());
    fill(&registry.client()?, &layout).await?;
    let before = count(&layout)?;
    println!("   filled it: {} tags, {} manifests, {} of blobs\n", before.tags, before.manifests, bytes(before.blob_bytes));

    let policy = crate::policy::load::from_yaml(DEMO_POLICY, "examples/demo.yaml")?;
    let compiled = crate::policy::compile(&policy.spec)?;
    let snapshot = crate::storage::read_storage(&layout).map_err(anyhow::Error::msg)?;
    let plan = crate::plan::plan(&compiled, &snapshot, &[], Utc::now());
    println!("2. The plan (policy examples/demo.yaml):\n");
    print!("{}", crate::plan::render::table(&plan, true));

    println!("\n3. Freezing: restarting the registry with {READ_ONLY_ENV}={READ_ONLY_VALUE}");
    registry.restart(true).await?;
    println!("4. Maintenance: delete through a private instance, garbage-collect, prune");
    let outcome = crate::maintenance::run::run_maintenance(registry.maintenance_options(policy)).await?;
    print!("{}", outcome.report.human());

    println!("5. Thawing: restarting read-write (which also drops the stale blob cache)");
    registry.restart(false).await?;
    let client = registry.client()?;
    let verify = crate::verify::verify_registry(&client).await?;
    println!(
        "6. Verified from outside: {} tags, {} manifests, {} blobs; {}",
        verify.tags,
        verify.manifests,
        verify.blobs,
        if verify.is_ok() { "every kept image is whole".to_string() } else { format!("{} PROBLEMS", verify.problems.len()) }
    );
    let after = count(&layout)?;
    println!("\n            {:>10} {:>10}", "before", "after");
    println!("tags        {:>10} {:>10}", before.tags, after.tags);
    println!("manifests   {:>10} {:>10}", before.manifests, after.manifests);
    println!("blob bytes  {:>10} {:>10}", bytes(before.blob_bytes), bytes(after.blob_bytes));
    println!("disk bytes  {:>10} {:>10}", bytes(before.disk_bytes), bytes(after.disk_bytes));
    if let Some(p) = registry.process.take() {
        p.stop().await;
    }
    anyhow::ensure!(verify.is_ok(), "verification failed: {:?}", verify.problems);
    Ok(())
}
