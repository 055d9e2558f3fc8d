//! `registry garbage-collect` and pruning against the real registry: what GC reports is what
//! disappears from disk, pruning removes exactly the litter, and the survivors still pull.
//! Also: the private instance's derived configuration really accepts DELETE where the
//! frozen, authenticated original refuses it.

mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use regsweep::digest::Digest;
use regsweep::maintenance::config::RegistryConfig;
use regsweep::maintenance::gc::run_gc;
use regsweep::maintenance::instance::{RegistryProcess, find_registry_bin, free_port};
use regsweep::registry::RegistryClient;
use regsweep::storage::Layout;
use regsweep::storage::prune::{PruneOptions, prune};
use regsweep::storage::usage::measure;
use support::{ImageKind, PushedImage, TestRegistry, TestRegistryOptions, push_image_full};

fn blobs_of(image: &PushedImage) -> Vec<Digest> {
    let mut all = vec![image.digest.clone(), image.config.clone()];
    all.extend(image.layers.iter().cloned());
    all
}

/// Every blob whose `data` file is on disk.
fn blobs_on_disk(layout: &Layout) -> BTreeSet<Digest> {
    let mut out = BTreeSet::new();
    for prefix in std::fs::read_dir(layout.blobs()).into_iter().flatten().flatten() {
        for blob in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
            if blob.path().join("data").is_file() {
                out.insert(Digest::from_hex(&blob.file_name().to_string_lossy()).unwrap());
            }
        }
    }
    out
}

/// Every directory under `dir`, relative to it.
fn dirs_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.insert(e.path().strip_prefix(dir).unwrap().to_path_buf());
                stack.push(e.path());
            }
        }
    }
    out
}

/// Starts an upload session and leaves it; returns its id.
async fn abandon_upload(reg: &TestRegistry, repo: &str) -> String {
    let resp = reqwest::Client::new().post(format!("{}/v2/{repo}/blobs/uploads/", reg.url())).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    resp.headers()["docker-upload-uuid"].to_str().unwrap().to_string()
}

/// The manifest and every blob of `image`, digest-checked, through `client`.
async fn assert_pulls(client: &RegistryClient, repo: &str, tag: &str, image: &PushedImage) {
    let manifest = client.get_manifest(repo, tag).await.unwrap_or_else(|e| panic!("{repo}:{tag}: {e}"));
    assert_eq!(manifest.digest, image.digest);
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        client.fetch_blob_verified(repo, blob).await.unwrap_or_else(|e| panic!("{repo}@{blob}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_then_prune_leaves_a_clean_storage_that_still_pulls() {
    let storage = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start(TestRegistryOptions { storage_root: Some(storage.path().to_path_buf()), ..Default::default() }).await;
    let client = reg.client();
    // team-a/app: v1 pushed twice (the first digest stays in v1's history), and v2.
    let first_v1 = push_image_full(&client, "team-a/app", "v1", ImageKind::Docker, 2).await;
    let v2 = push_image_full(&client, "team-a/app", "v2", ImageKind::Oci, 2).await;
    let v1 = push_image_full(&client, "team-a/app", "v1", ImageKind::Docker, 1).await;
    // team-a, the parent of a nested repository, and solo, with one image.
    let parent = push_image_full(&client, "team-a", "stable", ImageKind::Oci, 1).await;
    let solo = push_image_full(&client, "solo", "latest", ImageKind::Docker, 2).await;
    for (repo, digest) in [("team-a/app", &v2.digest), ("team-a/app", &first_v1.digest), ("solo", &solo.digest)] {
        client.delete_manifest(repo, digest).await.unwrap();
    }
    let abandoned = abandon_upload(&reg, "team-a/app").await;
    let recent = abandon_upload(&reg, "team-a").await;
    let config = work.path().join("config.yml");
    std::fs::copy(reg.config_path(), &config).unwrap();
    reg.stop().await;

    let config = RegistryConfig::load(&config, Vec::new()).unwrap();
    let layout = Layout::new(config.storage_root().unwrap());
    assert_eq!(layout.root(), storage.path());
    let old = layout.uploads("team-a/app").join(&abandoned).join("startedat");
    std::fs::write(&old, (chrono::Utc::now() - chrono::Duration::hours(48)).to_rfc3339()).unwrap();

    let bin = find_registry_bin(None).unwrap();
    let private = config.private_instance(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())));
    let private_config = private.write_to(work.path()).unwrap();
    let before = blobs_on_disk(&layout);
    let dry = run_gc(&bin, &private_config, &private.env, true).await.unwrap();
    assert_eq!(blobs_on_disk(&layout), before, "a dry run deletes nothing");
    let outcome = run_gc(&bin, &private_config, &private.env, false).await.unwrap();
    let after = blobs_on_disk(&layout);
    let disappeared: BTreeSet<Digest> = before.difference(&after).cloned().collect();
    let expected: BTreeSet<Digest> = [&first_v1, &v2, &solo].into_iter().flat_map(blobs_of).collect();
    assert_eq!(disappeared, expected);
    assert_eq!(outcome.blobs_eligible, disappeared.len());
    assert_eq!(outcome.eligible_blobs.iter().cloned().collect::<BTreeSet<_>>(), disappeared);
    assert_eq!(outcome.marked, after.len(), "every blob left is marked");
    assert_eq!(outcome.manifests_eligible, 0);
    assert_eq!((dry.marked, dry.blobs_eligible, dry.manifests_eligible), (outcome.marked, outcome.blobs_eligible, 0));

    // The litter GC leaves, as measured on 2.8.2.
    let revision = |repo: &str, d: &Digest| layout.revisions(repo).join(d.hex());
    let layer = |repo: &str, d: &Digest| layout.layers(repo).join(d.hex()).join("link");
    assert!(revision("solo", &solo.digest).is_dir() && !revision("solo", &solo.digest).join("link").exists());
    assert!(layer("solo", &solo.layers[0]).is_file());
    assert!(layout.tag_index("team-a/app", "v1").join(first_v1.digest.hex()).is_dir());
    assert!(!layout.tags("team-a/app").join("v2").exists(), "DELETE removed the tag on the digest");
    assert!(layout.blobs().join(&solo.digest.hex()[..2]).is_dir(), "GC leaves the blob's prefix directory");

    let usage_before = measure(&layout).unwrap();
    let report = prune(&layout, &PruneOptions::default());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.repositories_removed, vec!["solo".to_string()]);
    assert!(!layout.repository("solo").exists());
    assert_eq!(report.empty_revisions, 3);
    assert_eq!(report.stale_tag_history, 1);
    assert_eq!(report.abandoned_uploads, 1);
    assert_eq!(
        report.dangling_layer_links,
        disappeared.iter().filter(|d| ![&first_v1.digest, &v2.digest, &solo.digest].contains(d)).count()
    );
    assert!(!layout.uploads("team-a/app").join(&abandoned).exists());
    assert!(layout.uploads("team-a").join(&recent).exists(), "a recent upload stays");
    for repo in ["team-a", "team-a/app"] {
        for dir in dirs_under(&layout.revisions(repo)) {
            assert!(layout.revisions(repo).join(&dir).join("link").is_file(), "{repo}: empty revision {dir:?} left");
        }
        for entry in std::fs::read_dir(layout.layers(repo)).unwrap().flatten() {
            let link = std::fs::read_to_string(entry.path().join("link")).unwrap();
            assert!(layout.blob_data(&Digest::parse(&link).unwrap()).is_file(), "{repo}: dangling layer link {link}");
        }
    }
    for prefix in std::fs::read_dir(layout.blobs()).unwrap().flatten() {
        assert!(std::fs::read_dir(prefix.path()).unwrap().next().is_some(), "empty prefix {:?} left", prefix.path());
    }
    assert_eq!(blobs_on_disk(&layout), after, "pruning removes no blob");
    let usage_after = measure(&layout).unwrap();
    assert_eq!((usage_after.blobs, usage_after.blob_bytes), (usage_before.blobs, usage_before.blob_bytes));
    assert!(usage_after.total_bytes < usage_before.total_bytes);
    let again = prune(&layout, &PruneOptions::default());
    assert!(!again.removed_anything(), "a second prune removes nothing: {again:?}");
    // The collector still runs on the pruned storage, and finds nothing more.
    let rerun = run_gc(&bin, &private_config, &private.env, true).await.unwrap();
    assert_eq!((rerun.marked, rerun.blobs_eligible), (after.len(), 0));

    // Restart on the same storage: the survivors pull whole, the deleted are gone.
    let reg = TestRegistry::start(TestRegistryOptions { storage_root: Some(storage.path().to_path_buf()), ..Default::default() }).await;
    let client = reg.client();
    assert_pulls(&client, "team-a/app", "v1", &v1).await;
    assert_pulls(&client, "team-a", "stable", &parent).await;
    let mut catalog = client.catalog().await.unwrap();
    catalog.sort();
    assert_eq!(catalog, vec!["team-a".to_string(), "team-a/app".to_string()]);
    assert_eq!(client.tags("team-a/app").await.unwrap(), vec!["v1".to_string()]);
    assert!(client.head_manifest("team-a/app", &v2.digest.as_str()).await.unwrap().is_none());
    reg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_on_a_storage_never_pushed_to_collects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n", dir.path().join("empty").display()))
        .unwrap();
    support::ensure_registry_installed();
    let outcome = run_gc(&find_registry_bin(None).unwrap(), &config, &[], false).await.unwrap();
    assert_eq!((outcome.marked, outcome.blobs_eligible), (0, 0));
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "version: 0.1\nstorage:\n  nosuchdriver: {}\n").unwrap();
    let err = run_gc(&find_registry_bin(None).unwrap(), &broken, &[], true).await.unwrap_err().to_string();
    assert!(err.contains("nosuchdriver"), "the error carries the collector's output: {err}");
}

async fn delete_status(url: &str, repo: &str, digest: &Digest, credentials: Option<(&str, &str)>) -> u16 {
    let mut req = reqwest::Client::new().delete(format!("{url}/v2/{repo}/manifests/{digest}"));
    if let Some((user, password)) = credentials {
        req = req.basic_auth(user, Some(password));
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_private_instance_deletes_where_the_frozen_authenticated_original_refuses() {
    let (user, password) = ("ci", "s3cret");
    let mut reg = TestRegistry::start(TestRegistryOptions {
        htpasswd: Some((user.into(), password.into())),
        delete_enabled: false,
        ..Default::default()
    })
    .await;
    let image = push_image_full(&reg.client(), "team/app", "v1", ImageKind::Oci, 1).await;
    reg.restart(true).await;
    let creds = Some((user, password));
    assert_eq!(delete_status(&reg.url(), "team/app", &image.digest, None).await, 401);
    assert_eq!(delete_status(&reg.url(), "team/app", &image.digest, creds).await, 405, "read-only refuses");

    // The Job's view: the same file and the same variables the registry runs with.
    let env = [
        ("REGISTRY_STORAGE_MAINTENANCE_READONLY".to_string(), r#"{"enabled":true}"#.to_string()),
        ("REGISTRY_HTTP_SECRET".to_string(), "x".to_string()),
    ];
    let config = RegistryConfig::load(&reg.config_path(), env).unwrap();
    let work = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let private = config.private_instance(addr);
    assert!(private.env.is_empty(), "{:?}", private.env);
    let path = private.write_to(work.path()).unwrap();
    let instance =
        RegistryProcess::start(&find_registry_bin(None).unwrap(), &path, private.env.clone(), addr, Some(work.path().join("log")))
            .await
            .unwrap();
    assert_eq!(delete_status(&instance.url(), "team/app", &image.digest, None).await, 202);
    assert_eq!(delete_status(&instance.url(), "team/app", &image.digest, None).await, 404);
    instance.stop().await;
    // Same storage: the frozen original no longer has the tag.
    assert!(reg.client().head_manifest("team/app", "v1").await.unwrap().is_none());
    reg.stop().await;
}
