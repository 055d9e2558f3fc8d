//! Guard rails (issue 11 §2–3) against the real registry: a plan over `spec.limits` changes
//! nothing (whole-storage fingerprint) and exits 5; under them the run proceeds; an approved
//! plan executed after new pushes and a retag deletes nothing it did not approve, and a plan
//! file changed after review is refused.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{Duration, Utc};
use regsweep::demo::DemoRegistry;
use regsweep::digest::Digest;
use regsweep::fixture::{Format, push_image, set_tag_pushed};
use support::{assert_unchanged, fingerprint, served, verify_whole};

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");

fn policy(dir: &Path, limits: &str) -> PathBuf {
    let p = dir.join("policy.yaml");
    std::fs::write(
        &p,
        format!(
            "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: t}}\nspec:\n  registry: {{}}\n  rules:\n    - repositories: [\"**\"]\n      keepLatest: 2\n{limits}"
        ),
    )
    .unwrap();
    p
}

/// `app` with v1..v6 (v1 oldest) and `tools/cli` with t1..t3, pushed days apart; frozen.
/// Keeping the newest 2 of each deletes 4 + 1 of the 9 tags.
async fn registry() -> (DemoRegistry, BTreeMap<(String, String), Digest>) {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    let (client, layout) = (reg.client().unwrap(), reg.layout());
    let mut digests = BTreeMap::new();
    for (repo, tags) in [("app", 6), ("tools/cli", 3)] {
        for i in 1..=tags {
            let tag = format!("{}{i}", if repo == "app" { "v" } else { "t" });
            let pushed = push_image(&client, repo, Some(&tag), Format::Oci, &[64], &[]).await.unwrap();
            set_tag_pushed(&layout, repo, &tag, Utc::now() - Duration::days(20 - i)).unwrap();
            digests.insert((repo.to_string(), tag), pushed.digest);
        }
    }
    reg.restart(true).await.unwrap();
    (reg, digests)
}

fn maintenance(reg: &DemoRegistry, policy: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["maintenance", "--concurrency", "4", "-f"])
        .arg(policy)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", &reg.url()])
        .args(extra)
        .output()
        .unwrap()
}

fn keys(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(r, t)| (r.to_string(), t.to_string())).collect()
}

#[tokio::test]
async fn over_a_limit_nothing_changes_and_under_it_the_run_proceeds() {
    let (mut reg, digests) = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let root = reg.layout().root().to_path_buf();
    let before = fingerprint(&root);
    for (limits, named) in [
        ("  limits: {maxDeletedTags: 4}\n", "maxDeletedTags 4"),
        // 5 of 9 is 55.6%.
        ("  limits: {maxDeletedPercent: 55}\n", "maxDeletedPercent 55"),
    ] {
        let out = maintenance(&reg, &policy(dir.path(), limits), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        for needle in [named, "deletes 5 of the 9 tags", "55.6%", "app (4), tools/cli (1)", "nothing was changed"] {
            assert!(stderr.contains(needle), "{needle:?} in {stderr}");
        }
        assert_unchanged(&before, &root);
    }
    // A dry run reports it and goes on.
    let out = maintenance(&reg, &policy(dir.path(), "  limits: {maxDeletedTags: 4}\n"), &["--dry-run", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["warnings"].to_string().contains("maxDeletedTags 4"), "the dry run warns of the limit: {report}");
    assert_unchanged(&before, &root);

    let out = maintenance(&reg, &policy(dir.path(), "  limits: {maxDeletedTags: 5, maxDeletedPercent: 56}\n"), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    let kept = served(&client).await;
    let expected: BTreeMap<_, _> = keys(&[("app", "v5"), ("app", "v6"), ("tools/cli", "t2"), ("tools/cli", "t3")])
        .into_iter()
        .map(|k| {
            let d = digests[&k].clone();
            (k, d)
        })
        .collect();
    assert_eq!(kept, expected);
    verify_whole(&client).await;
}

#[tokio::test]
async fn an_approved_plan_deletes_nothing_it_did_not_approve() {
    let (mut reg, digests) = registry().await;
    let dir = tempfile::tempdir().unwrap();
    // One tag at most: the approval, not the limit, decides.
    let policy = policy(dir.path(), "  limits: {maxDeletedTags: 1}\n");
    let root = reg.layout().root().to_path_buf();
    let plan = Command::new(BIN).args(["plan", "-o", "json", "-f"]).arg(&policy).arg("--storage").arg(&root).output().unwrap();
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, &plan.stdout).unwrap();
    let reviewed: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert!(reviewed["id"].as_str().is_some_and(|id| id.starts_with("plan-")), "the plan carries its id");
    assert_eq!(reviewed["summary"]["tagsDeleted"], 5);
    // A dry run's --plan-file is the same plan.
    let dry_plan = dir.path().join("reviews/dry.json");
    let out = maintenance(&reg, &policy, &["--dry-run", "--plan-file", dry_plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dry: serde_json::Value = serde_json::from_slice(&std::fs::read(&dry_plan).unwrap()).unwrap();
    assert_eq!(dry["id"], reviewed["id"]);

    // After the review: v1 is pushed again (a new image, as old as before), and an old tag v0
    // appears; the policy would delete both now.
    reg.restart(false).await.unwrap();
    let (client, layout) = (reg.client().unwrap(), reg.layout());
    let v1 = push_image(&client, "app", Some("v1"), Format::Oci, &[64], &[]).await.unwrap().digest;
    set_tag_pushed(&layout, "app", "v1", Utc::now() - Duration::days(19)).unwrap();
    let v0 = push_image(&client, "app", Some("v0"), Format::Docker, &[64], &[]).await.unwrap().digest;
    set_tag_pushed(&layout, "app", "v0", Utc::now() - Duration::days(30)).unwrap();
    reg.restart(true).await.unwrap();

    // A plan file changed after the review is refused, and changes nothing.
    let before = fingerprint(&root);
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, String::from_utf8_lossy(&plan.stdout).replacen("\"keep\"", "\"delete\"", 1)).unwrap();
    let out = maintenance(&reg, &policy, &["--approved-plan", tampered.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("changed after it was made"), "{stderr}");
    assert_unchanged(&before, &root);

    let out = maintenance(&reg, &policy, &["--approved-plan", plan_file.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["plan"]["tagsDeleted"], 4, "v2, v3, v4 of app and t1 of tools/cli (v1 moved since): {report}");
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    let kept = served(&client).await;
    let mut expected: BTreeMap<(String, String), Digest> = keys(&[("app", "v5"), ("app", "v6"), ("tools/cli", "t2"), ("tools/cli", "t3")])
        .into_iter()
        .map(|k| {
            let d = digests[&k].clone();
            (k, d)
        })
        .collect();
    expected.insert(("app".into(), "v1".into()), v1);
    expected.insert(("app".into(), "v0".into()), v0);
    assert_eq!(kept, expected, "the retagged v1 and the new v0 were not approved");
    verify_whole(&client).await;
}
