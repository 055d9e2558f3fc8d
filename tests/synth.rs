//! The storage generator writes what the registry itself writes: every generated tag pulls
//! whole through the real registry (digests checked), the registry's collector finds nothing
//! to delete on it, and the snapshot reads it without a problem.

mod support;

use chrono::Utc;
use regsweep::demo::DemoRegistry;
use regsweep::synth::{RepoShape, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_storage_is_what_the_registry_serves_and_collects_nothing_from() {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    reg.process.take().unwrap().stop().await;
    let layout = reg.layout();
    let shapes = [
        RepoShape::mixed("ci/app", 60),
        RepoShape::mixed("team/svc", 12),
        RepoShape { name: "plain".into(), tags: 5, alias_every: 0, index_every: 0, untagged: 0 },
    ];
    let written = write(&layout, &shapes, Utc::now()).unwrap();
    // 60 + 6 aliases, 12 + 2 aliases, 5.
    assert_eq!(written.tags, 85);

    let snapshot = regsweep::storage::read_storage(&layout).unwrap();
    assert!(snapshot.problems.is_empty(), "{:?}", snapshot.problems);
    let tags: usize = snapshot.repositories.values().map(|r| r.tags.len()).sum();
    let manifests: usize = snapshot.repositories.values().map(|r| r.manifests.len()).sum();
    assert_eq!((tags, manifests), (written.tags, written.manifests));

    let out = std::process::Command::new(&reg.bin).args(["garbage-collect", "--dry-run"]).arg(reg.config_path()).output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(" 0 blobs and 0 manifests eligible for deletion"), "{log}");
    assert!(!log.contains("blob eligible for deletion:"), "the collector would delete generated blobs:\n{log}");

    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    let verify = regsweep::verify::verify_registry(&client).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
    assert_eq!(verify.tags, written.tags);
    let mut catalog = client.catalog().await.unwrap();
    catalog.sort();
    assert_eq!(catalog, ["ci/app", "plain", "team/svc"]);
}
