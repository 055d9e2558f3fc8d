//! The statuses the operator writes in each state a GitOps tool must tell apart, made by the
//! reconciler's own status functions and kept as whole objects under `tests/health/statuses/`
//! (the Argo CD health script and the kstatus rules are tested against them there). This test
//! fails when the committed files differ from what the code writes; regenerate them with
//! `REGSWEEP_WRITE_HEALTH_STATUSES=1 cargo test --lib health_statuses`.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};

use super::conditions::k8s_time;
use super::reconcile::{idle, progressing, stalled};
use crate::policy::{PendingPlan, RegistryCleanupPolicy, RegistryCleanupPolicyStatus, RepositoryDeletions, RunResult, RunSummary};

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 2, 30, 0).unwrap()
}

fn policy(generation: i64, suspend: bool) -> RegistryCleanupPolicy {
    let yaml = format!(
        "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: nightly, namespace: registry, generation: {generation}}}\nspec:\n  registry: {{deployment: docker-registry, url: \"http://docker-registry.registry.svc:5000\", hosts: [\"docker-registry.registry.svc:5000\"]}}\n  schedule: \"30 2 * * *\"\n  suspend: {suspend}\n  rules: [{{repositories: [\"**\"], keepLatest: 10}}]\n"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn last_run(result: RunResult, message: &str) -> RunSummary {
    RunSummary {
        id: "4f1c2a9e0b7d".into(),
        start: at() - chrono::Duration::minutes(3),
        end: at() - chrono::Duration::minutes(1),
        result,
        dry_run: false,
        manifests_deleted: 120,
        tags_deleted: 118,
        bytes_reclaimed: 3 << 30,
        bytes_estimated: 3 << 30,
        reclaimed: "3.0 GiB".into(),
        read_only_seconds: 95,
        in_use_protected: 4,
        message: message.into(),
        plan_id: "plan-3f2a9c0d1e4b5a6f7c8d".into(),
        review: false,
        quarantined_until: None,
        quarantined_bytes: 0,
    }
}

fn pending(over_limit: Option<&str>) -> PendingPlan {
    PendingPlan {
        id: "plan-3f2a9c0d1e4b5a6f7c8d".into(),
        run: "9a8b7c6d5e4f".into(),
        made: at(),
        tags_deleted: 730,
        manifests_deleted: 741,
        bytes_estimated: 12 << 30,
        largest: vec![RepositoryDeletions { repository: "ci/builds".into(), tags_deleted: 700 }],
        details: "kubectl logs -n registry job/regsweep-nightly-9a8b7c6d5e4f".into(),
        over_limit: over_limit.map(String::from),
        refused: None,
    }
}

/// Every case: its file name and the policy with the status the reconciler writes.
fn cases() -> Vec<(&'static str, RegistryCleanupPolicy)> {
    let next = "next run at 2026-12-04T02:30:00+00:00";
    let with = |generation: i64, suspend: bool, f: &dyn Fn(&mut RegistryCleanupPolicyStatus, &RegistryCleanupPolicy)| {
        let mut p = policy(generation, suspend);
        let mut status = RegistryCleanupPolicyStatus::default();
        f(&mut status, &p);
        for c in &mut status.conditions {
            c.last_transition_time = k8s_time(at());
        }
        p.status = Some(status);
        p
    };
    vec![
        ("idle", with(1, false, &|s, p| idle(s, p, "Idle", next, at()))),
        (
            "succeeded",
            with(1, false, &|s, p| {
                s.last_run = Some(last_run(RunResult::Succeeded, "swept"));
                idle(s, p, "Idle", next, at())
            }),
        ),
        ("progressing-freezing", with(1, false, &|s, p| progressing(s, p, "Freezing", "waiting for the registry to refuse writes"))),
        ("progressing-sweeping", with(1, false, &|s, p| progressing(s, p, "Sweeping", "job regsweep-nightly-4f1c2a9e0b7d running"))),
        ("planning", with(1, false, &|s, p| progressing(s, p, "Planning", "review job regsweep-nightly-9a8b7c6d5e4f making the plan"))),
        (
            "degraded-last-run-failed",
            with(1, false, &|s, p| {
                s.last_run = Some(last_run(RunResult::Failed, "garbage-collect failed: exit status 1; the registry was thawed"));
                idle(s, p, "Idle", next, at())
            }),
        ),
        (
            "invalid",
            with(1, false, &|s, _| {
                stalled(s, Some(1), "Invalid", "InvalidPolicy", "spec.rules[0].keepWithin: \"30 days\" is not a duration", at())
            }),
        ),
        (
            "blocked-secret",
            with(1, false, &|s, _| {
                stalled(s, Some(1), "Blocked", "SecretError", "secret registry/registry-auth not found; the registry was not frozen", at())
            }),
        ),
        ("suspended", with(1, true, &|s, p| idle(s, p, "Suspended", "suspended", at()))),
        (
            "awaiting-approval",
            with(1, false, &|s, p| {
                s.pending_plan = Some(pending(None));
                idle(s, p, "Idle", next, at())
            }),
        ),
        (
            "held-over-limit",
            with(1, false, &|s, p| {
                s.pending_plan = Some(pending(Some("maxDeletedTags 500: the plan deletes 730 of the 1000 tags (73.0%)")));
                idle(s, p, "Idle", next, at())
            }),
        ),
        (
            "new-generation-not-observed",
            with(1, false, &|s, p| {
                s.last_run = Some(last_run(RunResult::Succeeded, "swept"));
                idle(s, p, "Idle", next, at())
            }),
        ),
    ]
    .into_iter()
    .map(|(name, mut p)| {
        // The spec was edited after the status was written: generation 2, observed 1.
        if name == "new-generation-not-observed" {
            p.metadata.generation = Some(2);
        }
        (name, p)
    })
    .collect()
}

#[test]
fn the_committed_health_statuses_are_what_the_reconciler_writes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/health/statuses");
    let write = std::env::var_os("REGSWEEP_WRITE_HEALTH_STATUSES").is_some();
    let mut stale = Vec::new();
    for (name, policy) in cases() {
        let text = format!("{}\n", serde_json::to_string_pretty(&policy).unwrap());
        let path = dir.join(format!("{name}.json"));
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what the reconciler writes; regenerate: REGSWEEP_WRITE_HEALTH_STATUSES=1 cargo test --lib health_statuses"
    );
}
