//! Untagging on the frozen storage (the executor's answer to the registry's O(N²) manifest
//! DELETE) must leave exactly what the registry's own DELETE leaves: the same sweep on two
//! copies of one storage, once with every tag removed by the registry's API and once with the
//! planned tags removed on storage first, ends in the same files and serves the same state.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Duration, Utc};
use regsweep::demo::{DemoRegistry, fill};
use regsweep::fixture::{Format, push_image, set_tag_pushed};
use regsweep::maintenance::run::{MaintenanceOptions, run_maintenance};
use regsweep::registry::RegistryClient;
use regsweep::storage::prune::{PruneOptions, prune};

const POLICY_EXTRA: &str = r#"    - repositories: ["ci/**"]
      keepLatest: 5
      untagged: Delete
"#;

/// Every file under the storage root (the sweep's own `.regsweep` aside), with the content of
/// every link file; directories too, so a leftover empty directory counts.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with(".regsweep") {
                continue;
            }
            let kind = e.file_type().unwrap();
            if kind.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                stack.push(path);
            } else if rel.ends_with("/link") {
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            } else {
                out.insert(rel, format!("{} bytes", e.metadata().unwrap().len()));
            }
        }
    }
    out
}

/// What the registry serves: every repository's tags with the digest each resolves to.
async fn served(client: &RegistryClient) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for repo in client.catalog().await.unwrap() {
        for tag in client.tags(&repo).await.unwrap() {
            let head = client.head_manifest(&repo, &tag).await.unwrap();
            out.insert(format!("{repo}:{tag}"), head.map(|h| h.digest.to_string()).unwrap_or_else(|| "404".into()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagging_on_storage_leaves_what_the_registrys_delete_leaves() {
    support::ensure_registry_installed();
    let mut via_api = DemoRegistry::start(None).await.unwrap();
    let (client, layout) = (via_api.client().unwrap(), via_api.layout());
    fill(&client, &layout).await.unwrap();
    // A CI repository: 30 builds, every third also tagged by commit (two tags, one digest).
    let now = Utc::now();
    for i in 0..30 {
        let build = format!("build-{i:02}");
        let pushed = push_image(&client, "ci/app", Some(&build), Format::Oci, &[256], &[]).await.unwrap();
        set_tag_pushed(&layout, "ci/app", &build, now - Duration::hours(100 - i)).unwrap();
        if i % 3 == 0 {
            let fetched = client.get_manifest("ci/app", &build).await.unwrap();
            let commit = format!("sha-{i:02}");
            assert_eq!(client.put_manifest("ci/app", &commit, &pushed.media_type, &fetched.body).await.unwrap(), pushed.digest);
            set_tag_pushed(&layout, "ci/app", &commit, now - Duration::hours(100 - i)).unwrap();
        }
    }
    // The same storage, byte for byte and with its times, for the second registry.
    let mut on_storage = DemoRegistry::start(None).await.unwrap();
    on_storage.process.take().unwrap().stop().await;
    via_api.process.take().unwrap().stop().await;
    std::fs::remove_dir_all(on_storage.layout().root()).unwrap();
    let cp = std::process::Command::new("cp").arg("-a").arg(layout.root()).arg(on_storage.layout().root()).status().unwrap();
    assert!(cp.success());
    assert_eq!(tree(layout.root()), tree(on_storage.layout().root()), "the copies start equal");
    via_api.restart(true).await.unwrap();
    on_storage.restart(true).await.unwrap();

    let policy_yaml = regsweep::demo::DEMO_POLICY.replace("  protection:\n", &format!("{POLICY_EXTRA}  protection:\n"));
    let policy = regsweep::policy::load::from_yaml(&policy_yaml, "t").unwrap();
    let api =
        run_maintenance(MaintenanceOptions { untag_on_storage: false, concurrency: 4, ..via_api.maintenance_options(policy.clone()) })
            .await
            .unwrap();
    let storage = run_maintenance(MaintenanceOptions { concurrency: 4, ..on_storage.maintenance_options(policy) }).await.unwrap();

    assert_eq!(api.plan.deletions(), storage.plan.deletions(), "one plan");
    assert!(api.report.untag.is_none());
    let planned_tags = storage.plan.summary.tags_deleted;
    let untag = storage.report.untag.as_ref().expect("the planned tags were removed on storage");
    assert!(planned_tags >= 20, "a sweep that removes tags: {planned_tags}");
    assert_eq!(untag.tags_removed, planned_tags, "{untag:?}");
    assert_eq!(untag.skipped, 0);

    assert_eq!(tree(layout.root()), tree(on_storage.layout().root()), "the same files after the sweep");
    // The sweep's prune visits only what it changed; a full one finds nothing it missed.
    for root in [layout.root(), on_storage.layout().root()] {
        let full = prune(&regsweep::storage::Layout::new(root), &PruneOptions { dry_run: true, ..Default::default() });
        assert!(!full.removed_anything() && full.problems.is_empty(), "a full prune after the sweep's targeted one: {full:?}");
    }
    assert!(storage.report.prune.as_ref().is_some_and(|p| p.removed_anything()), "the targeted prune removed the sweep's litter");
    // The untagged tags and the pruned litter went through the trash; what the run did not
    // empty before it ended (it does not wait) is left for the next run, and nothing else is.
    let trash = storage.report.trash.as_ref().expect("the run used its trash");
    assert_eq!(trash.left, 0, "{trash:?}");
    let dot = on_storage.layout().root().join(".regsweep");
    assert_eq!(trash.left_for_next_run, dot.exists(), "only a trash left for the next run stays (never the lock): {trash:?}");
    let rest = regsweep::storage::trash::empty_all(&on_storage.layout(), None, &std::sync::atomic::AtomicBool::new(false));
    assert!(trash.removed + rest.removed >= 2 * planned_tags as u64, "every untagged tag went through the trash: {trash:?} + {rest:?}");
    // The usage after the sweep is computed, not walked: it must equal a walk.
    for (root, run) in [(layout.root(), &api), (on_storage.layout().root(), &storage)] {
        let walked = regsweep::storage::usage::measure(&regsweep::storage::Layout::new(root)).unwrap();
        let after = &run.report.usage_after;
        assert_eq!((after.blob_bytes, after.blobs), (walked.blob_bytes, walked.blobs), "computed {after:?}, walked {walked:?}");
        assert!(after.total_bytes >= walked.total_bytes && after.total_bytes - walked.total_bytes < 100 * 1024, "{after:?} vs {walked:?}");
    }
    via_api.restart(false).await.unwrap();
    on_storage.restart(false).await.unwrap();
    let (a, b) = (via_api.client().unwrap(), on_storage.client().unwrap());
    let served_a = served(&a).await;
    assert_eq!(served_a, served(&b).await, "the same tags and digests served");
    assert!(served_a.keys().any(|k| k.starts_with("ci/app:")), "{served_a:?}");
    for client in [&a, &b] {
        let verify = regsweep::verify::verify_registry(client).await.unwrap();
        assert!(verify.is_ok(), "{:?}", verify.problems);
    }
}
