//! Images pushed by a real third-party client (skopeo, from an OCI layout on disk) are planned,
//! swept and verified like our own.

mod support;

use std::path::Path;
use std::process::Command;

use chrono::{Duration, Utc};
use regsweep::demo::DemoRegistry;
use regsweep::digest::Digest;
use regsweep::plan::Action;
use serde_json::json;

/// Writes a one-layer OCI image layout with a real gzip'd tar layer, tagged `tag`.
fn oci_layout(dir: &Path, tag: &str, content: &str) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write_blob = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        (d, bytes.len())
    };
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("hello.txt"), content).unwrap();
    let tar = src.path().join("layer.tar.gz");
    let ok = Command::new("tar").arg("czf").arg(&tar).arg("-C").arg(src.path()).arg("hello.txt").status().unwrap();
    assert!(ok.success());
    let (layer, layer_size) = write_blob(&std::fs::read(&tar).unwrap());
    let config =
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer.to_string()]}}))
            .unwrap();
    let (config, config_size) = write_blob(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.to_string(), "size": layer_size}]
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = write_blob(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest.to_string(), "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": tag}
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    manifest_digest
}

fn skopeo_copy(layout: &Path, tag: &str, dest: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("skopeo runs");
    assert!(out.status.success(), "skopeo copy failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn images_pushed_by_skopeo_are_swept_and_verified() {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    let layout = reg.layout();
    let host = reg.url().trim_start_matches("http://").to_string();
    let mut digests = Vec::new();
    for (tag, age) in [("old", 40), ("new", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let digest = oci_layout(dir.path(), tag, &format!("hello from {tag}"));
        skopeo_copy(dir.path(), tag, &format!("{host}/skopeo/app:{tag}"));
        regsweep::fixture::set_tag_pushed(&layout, "skopeo/app", tag, Utc::now() - Duration::days(age)).unwrap();
        digests.push(digest);
    }
    let policy = regsweep::policy::load::from_yaml(
        "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {name: t}\nspec:\n  registry: {}\n  rules:\n    - repositories: [\"skopeo/*\"]\n      keepWithin: 7d\n",
        "t",
    )
    .unwrap();
    reg.restart(true).await.unwrap();
    let outcome = regsweep::maintenance::run::run_maintenance(regsweep::maintenance::run::MaintenanceOptions {
        concurrency: 4,
        ..reg.maintenance_options(policy)
    })
    .await
    .unwrap();
    reg.restart(false).await.unwrap();
    let repo = outcome.plan.repository("skopeo/app").unwrap();
    assert_eq!(repo.tag("old").unwrap().action, Action::Delete);
    assert_eq!(repo.tag("old").unwrap().digest, digests[0], "skopeo preserved the layout's digest");
    assert_eq!(repo.tag("new").unwrap().action, Action::Keep);
    let client = reg.client().unwrap();
    assert_eq!(client.tags("skopeo/app").await.unwrap(), vec!["new".to_string()]);
    let verify = regsweep::verify::verify_registry(&client).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
    assert_eq!(verify.tags, 1);
    // skopeo itself can still pull what was kept.
    let out =
        Command::new("skopeo").args(["inspect", "--tls-verify=false"]).arg(format!("docker://{host}/skopeo/app:new")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
