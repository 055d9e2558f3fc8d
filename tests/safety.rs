//! Bad input and unsafe states get a clear error and change nothing; an interrupted sweep
//! leaves every kept image whole, and a rerun converges.

mod support;

use support::{assert_unchanged, fingerprint};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use regsweep::demo::DemoRegistry;
use regsweep::fixture::{Format, push_image, push_index, set_tag_pushed};
use regsweep::maintenance::error::MaintenanceError;
use regsweep::maintenance::run::{MaintenanceOptions, run_maintenance};

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");

const POLICY: &str = "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {name: t}\nspec:\n  registry: {}\n  rules:\n    - repositories: [\"**\"]\n      keepLatest: 1\n      untagged: Delete\n";

async fn filled() -> DemoRegistry {
    support::ensure_registry_installed();
    let reg = DemoRegistry::start(None).await.unwrap();
    regsweep::demo::fill(&reg.client().unwrap(), &reg.layout()).await.unwrap();
    reg
}

fn options(reg: &DemoRegistry, policy_yaml: &str) -> MaintenanceOptions {
    MaintenanceOptions { concurrency: 8, ..reg.maintenance_options(regsweep::policy::load::from_yaml(policy_yaml, "t").unwrap()) }
}

#[tokio::test]
async fn a_public_registry_that_accepts_writes_is_refused_and_nothing_changes() {
    let reg = filled().await;
    // The public registry has delete disabled, as by default: the API says so clearly.
    let client = reg.client().unwrap();
    let tags = client.tags("team-a/api").await.unwrap();
    let digest = client.get_manifest("team-a/api", &tags[0]).await.unwrap().digest;
    let err = client.delete_manifest("team-a/api", &digest).await.unwrap_err();
    assert!(err.to_string().contains("storage.delete.enabled"), "{err}");

    let before = fingerprint(reg.layout().root());
    let err = run_maintenance(options(&reg, POLICY)).await.err().expect("refused");
    assert!(matches!(err, MaintenanceError::NotFrozen(_)), "{err}");
    assert!(err.to_string().contains("REGISTRY_STORAGE_MAINTENANCE_READONLY"), "says how to fix it: {err}");
    assert_unchanged(&before, reg.layout().root());
}

#[tokio::test]
async fn invalid_input_is_rejected_with_exit_code_2_and_nothing_changes() {
    let mut reg = filled().await;
    reg.restart(true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let before = fingerprint(reg.layout().root());
    let cases = [
        ("keepWithin: 30x", "spec.rules[0].keepWithin"),
        ("keepTags: [\"regex:(\"]", "spec.rules[0].keepTags[0]"),
        ("keepLatest: -3", "spec.rules[0].keepLatest"),
        ("keeplatest: 3", "spec.rules.0.keeplatest"),
    ];
    for (rule_line, field) in cases {
        let policy = dir.path().join("bad.yaml");
        std::fs::write(&policy, format!("apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: t}}\nspec:\n  registry: {{}}\n  schedule: \"0 3 * * *\"\n  rules:\n    - repositories: [\"**\"]\n      {rule_line}\n")).unwrap();
        let out = Command::new(BIN)
            .arg("maintenance")
            .arg("-f")
            .arg(&policy)
            .arg("--config")
            .arg(reg.config_path())
            .args(["--url", &reg.url()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rule_line}: {stderr}");
        assert!(stderr.contains(field), "{rule_line}: the error names {field}: {stderr}");
    }
    let bad_cron = dir.path().join("cron.yaml");
    std::fs::write(&bad_cron, POLICY.replace("  rules:", "  schedule: \"every night\"\n  rules:")).unwrap();
    let out = Command::new(BIN).args(["plan", "-f"]).arg(&bad_cron).arg("--storage").arg(reg.layout().root()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("5-field cron"));
    assert_unchanged(&before, reg.layout().root());

    // An unreachable public registry is a registry failure (exit 3), and changes nothing.
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, POLICY).unwrap();
    let out = Command::new(BIN)
        .args(["maintenance", "-f"])
        .arg(&good)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:9"));
    assert_unchanged(&before, reg.layout().root());
}

fn revision_count(root: &Path) -> usize {
    fingerprint(root).keys().filter(|k| k.contains("_manifests/revisions/") && k.ends_with("/link")).count()
}

#[tokio::test]
async fn a_sweep_killed_mid_way_leaves_kept_images_whole_and_a_rerun_converges() {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    let (client, layout) = (reg.client().unwrap(), reg.layout());
    // A kept multi-arch image, and many old single images to delete.
    let amd = push_image(&client, "app", None, Format::Oci, &[512], &[]).await.unwrap();
    let arm = push_image(&client, "app", None, Format::Oci, &[512], &[]).await.unwrap();
    push_index(&client, "app", "keep", Format::Oci, &[(&amd, "amd64"), (&arm, "arm64")]).await.unwrap();
    for i in 0..300 {
        let tag = format!("old-{i}");
        push_image(&client, "app", Some(&tag), Format::Docker, &[256], &[]).await.unwrap();
        set_tag_pushed(&layout, "app", &tag, Utc::now() - Duration::days(30)).unwrap();
    }
    let policy = "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {name: t}\nspec:\n  registry: {}\n  rules:\n    - repositories: [\"app\"]\n      keepTags: [\"keep\"]\n      keepLatest: 0\n      untagged: Delete\n";
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("p.yaml");
    std::fs::write(&policy_file, policy).unwrap();
    reg.restart(true).await.unwrap();
    let before = revision_count(layout.root());
    let mut child = Command::new(BIN)
        .args(["maintenance", "--concurrency", "1", "-f"])
        .arg(&policy_file)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", &reg.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while revision_count(layout.root()) > before - 20 {
        assert!(started.elapsed() < StdDuration::from_secs(60), "deletions never started");
        assert!(child.try_wait().unwrap().is_none(), "maintenance finished before it could be interrupted");
        std::thread::sleep(StdDuration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mid = revision_count(layout.root());
    assert!(mid < before && mid > 3, "killed mid-way: {mid} of {before} manifests left");

    // Interrupted: the kept image is whole.
    reg.restart(false).await.unwrap();
    let verify = regsweep::verify::verify_registry(&reg.client().unwrap()).await.unwrap();
    assert!(verify.is_ok(), "after the kill: {:?}", verify.problems);

    // Rerun: converges to exactly the kept image.
    reg.restart(true).await.unwrap();
    let outcome = run_maintenance(options(&reg, policy)).await.unwrap();
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    assert_eq!(client.tags("app").await.unwrap(), vec!["keep".to_string()]);
    let verify = regsweep::verify::verify_registry(&client).await.unwrap();
    assert!(verify.is_ok(), "after the rerun: {:?}", verify.problems);
    assert_eq!(verify.manifests, 3, "the index and its two children");
    assert_eq!(revision_count(layout.root()), 3);
    assert!(outcome.report.prune.is_some());
}
