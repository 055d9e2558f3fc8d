//! Quarantine (issue 11 §1) against the real registry and its real collector: a sweep with
//! `spec.quarantine` deletes as before (tags gone, pulls 404) but everything stays restorable
//! whole, through a `garbage-collect --delete-untagged` in between; restore by reference and
//! by run brings back every tag with its digest; a restore of something unknown, expired or
//! retagged since changes nothing; expiry frees exactly what a sweep without quarantine frees.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{Duration, Utc};
use regsweep::demo::DemoRegistry;
use regsweep::fixture::{Format, push_image, push_index, push_signature, set_tag_pushed};
use support::{assert_unchanged, fingerprint, served, verify_whole};

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");

fn policy(dir: &Path, keep_for: &str) -> PathBuf {
    let p = dir.join(format!("policy-{}.yaml", keep_for.replace(' ', "")));
    let quarantine = if keep_for.is_empty() { String::new() } else { format!("  quarantine: {{keepFor: {keep_for}}}\n") };
    std::fs::write(
        &p,
        format!(
            "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: q}}\nspec:\n  registry: {{}}\n  rules:\n    - repositories: [\"**\"]\n      keepLatest: 2\n{quarantine}"
        ),
    )
    .unwrap();
    p
}

/// `app`: v1..v5 over a shared base layer (v1 signed, v2 also tagged `v2-alias`), `multi`:
/// three indexes of two images each. Keeping the newest 2 deletes app v1, v2 (and its alias),
/// v3 with v1's signature, and multi's oldest index with its two children.
async fn registry() -> DemoRegistry {
    support::ensure_registry_installed();
    let reg = DemoRegistry::start(None).await.unwrap();
    let (client, layout) = (reg.client().unwrap(), reg.layout());
    let base = push_image(&client, "app", None, Format::Oci, &[2048], &[]).await.unwrap();
    let base_layer = (base.blobs[1].clone(), 2048);
    for i in 1..=5 {
        let tag = format!("v{i}");
        let format = if i % 2 == 0 { Format::Docker } else { Format::Oci };
        let pushed = push_image(&client, "app", Some(&tag), format, &[300 + i], std::slice::from_ref(&base_layer)).await.unwrap();
        set_tag_pushed(&layout, "app", &tag, Utc::now() - Duration::days(20 - i as i64)).unwrap();
        if i == 1 {
            push_signature(&client, "app", &pushed.digest).await.unwrap();
        }
        if i == 2 {
            let m = client.get_manifest("app", "v2").await.unwrap();
            client.put_manifest("app", "v2-alias", &m.media_type, &m.body).await.unwrap();
            set_tag_pushed(&layout, "app", "v2-alias", Utc::now() - Duration::days(18)).unwrap();
        }
    }
    for i in 1..=3 {
        let amd = push_image(&client, "multi", None, Format::Oci, &[100 + i], &[]).await.unwrap();
        let arm = push_image(&client, "multi", None, Format::Oci, &[200 + i], &[]).await.unwrap();
        let tag = format!("i{i}");
        push_index(&client, "multi", &tag, Format::Oci, &[(&amd, "amd64"), (&arm, "arm64")]).await.unwrap();
        set_tag_pushed(&layout, "multi", &tag, Utc::now() - Duration::days(10 - i as i64)).unwrap();
    }
    reg
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn sweep(reg: &DemoRegistry, policy: &Path) -> serde_json::Value {
    ok(&run(&[
        "maintenance",
        "-o",
        "json",
        "-f",
        policy.to_str().unwrap(),
        "--config",
        reg.config_path().to_str().unwrap(),
        "--url",
        &reg.url(),
    ]))
}

fn collect_garbage(reg: &DemoRegistry, delete_untagged: bool) {
    let mut cmd = Command::new(&reg.bin);
    cmd.arg("garbage-collect");
    if delete_untagged {
        cmd.arg("--delete-untagged");
    }
    let out = cmd.arg(reg.config_path()).output().unwrap();
    assert!(out.status.success(), "garbage-collect: {}", String::from_utf8_lossy(&out.stderr));
}

fn key(repo: &str, tag: &str) -> (String, String) {
    (repo.to_string(), tag.to_string())
}

#[tokio::test]
async fn a_quarantined_sweep_survives_the_collector_and_restores_whole() {
    let mut reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let before = served(&reg.client().unwrap()).await;
    let signature_tag = format!("sha256-{}.sig", before[&key("app", "v1")].hex());
    reg.restart(true).await.unwrap();

    let report = sweep(&reg, &policy(dir.path(), "7d"));
    let run_id = report["runId"].as_str().unwrap().to_string();
    let q = &report["plan"]["quarantine"];
    assert_eq!(q["keepFor"], "7d", "{report}");
    assert!(q["enteringBytes"].as_u64().unwrap() > 0 && q["enteringManifests"] == 7, "4 app manifests, an index and its 2 children: {q}");
    assert_eq!(report["plan"]["bytesFreed"], 0, "quarantine frees nothing now: {report}");
    assert_eq!(report["quarantine"]["records"], 2, "{report}");
    assert_eq!(report["gc"]["blobsEligible"], 0, "the collector deletes nothing quarantined: {report}");

    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    let gone =
        [key("app", "v1"), key("app", "v2"), key("app", "v2-alias"), key("app", "v3"), key("app", &signature_tag), key("multi", "i1")];
    let expected_kept: BTreeMap<_, _> = before.iter().filter(|(k, _)| !gone.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(served(&client).await, expected_kept, "the sweep deleted as without quarantine");
    assert!(
        client.head_manifest("app", &before[&key("app", "v1")].as_str()).await.unwrap().is_none(),
        "a deleted image no longer pulls by digest"
    );
    verify_whole(&client).await;

    // Both listings say the same: every deleted root with all its tags, from this run.
    let from_storage = ok(&run(&["quarantine", "list", "-o", "json", "--storage", reg.layout().root().to_str().unwrap()]));
    let from_api = ok(&run(&["quarantine", "list", "-o", "json", "--url", &reg.url()]));
    assert_eq!(from_storage, from_api);
    let listed: BTreeSet<(String, String, Vec<String>)> = from_api["records"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            assert_eq!(r["runId"], run_id.as_str());
            assert_eq!(r["expired"], false);
            let repo = r["repository"].as_str().unwrap().to_string();
            r["entries"].as_array().unwrap().iter().map(move |e| {
                let tags: Vec<String> = e["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
                (repo.clone(), e["digest"].as_str().unwrap().to_string(), tags)
            })
        })
        .collect();
    let d = |r: &str, t: &str| before[&key(r, t)].to_string();
    let expected_listed: BTreeSet<(String, String, Vec<String>)> = [
        ("app", d("app", "v1"), vec!["v1"]),
        ("app", d("app", "v2"), vec!["v2", "v2-alias"]),
        ("app", d("app", "v3"), vec!["v3"]),
        ("app", d("app", &signature_tag), vec![signature_tag.as_str()]),
        ("multi", d("multi", "i1"), vec!["i1"]),
    ]
    .into_iter()
    .map(|(r, d, t)| (r.to_string(), d, t.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(listed, expected_listed);

    // Even `garbage-collect --delete-untagged` (which breaks the kept multi-arch images of
    // `multi` itself, as the registry does) keeps every quarantined manifest and blob: tried
    // on a copy.
    reg.restart(true).await.unwrap();
    let copy = DemoRegistry::start(None).await.unwrap();
    let mut copy = stopped_copy_of(&reg, copy).await;
    collect_garbage(&copy, true);
    let snapshot = regsweep::storage::read_storage(&copy.layout()).unwrap();
    let held: Vec<_> = snapshot.repositories.values().filter(|r| regsweep::quarantine::is_quarantine(&r.name)).collect();
    assert_eq!(held.iter().map(|r| r.manifests.len()).sum::<usize>(), 9, "7 quarantined manifests and 2 records");
    for m in held.iter().flat_map(|r| r.manifests.values()) {
        assert!(!m.is_unknown(), "{m:?}");
        for d in m.references().filter(|d| !held.iter().any(|r| r.manifests.contains_key(*d))) {
            assert!(snapshot.blobs.contains_key(d), "blob {d} of quarantined {} survives", m.digest);
        }
    }
    copy.restart(false).await.unwrap();
    drop(copy);

    // The registry's collector between sweep and restore.
    collect_garbage(&reg, false);
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    verify_whole(&client).await;

    // v3 was pushed again since: restoring it refuses, naming both digests, and changes nothing.
    let v3_new = push_image(&client, "app", Some("v3"), Format::Oci, &[64], &[]).await.unwrap().digest;
    let root = reg.layout().root().to_path_buf();
    let untouched = fingerprint(&root);
    let out = run(&["restore", "--url", &reg.url(), "app:v3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&*v3_new.as_str()) && stderr.contains(&d("app", "v3")) && stderr.contains("--force"), "{stderr}");
    assert_unchanged(&untouched, &root);

    // v1's own config and layer lose their links in `app` (as if pruned by another tool): the
    // restore must mount them from the quarantine.
    let v1 = client.get_manifest("regsweep-quarantine/app", &d("app", "v1")).await.unwrap();
    let regsweep::storage::Content::Image { config, layers } = regsweep::storage::snapshot::parse_manifest(&v1.body).1 else { panic!() };
    for blob in [&config, &layers[1]] {
        std::fs::remove_dir_all(reg.layout().layers("app").join(blob.hex())).unwrap();
    }
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();

    // By reference: multi's index comes back with its children; v1 with its signature.
    let restored = ok(&run(&["restore", "-o", "json", "--url", &reg.url(), "multi:i1", &format!("app@{}", d("app", "v1"))]));
    assert_eq!(restored["restored"].as_array().unwrap().len(), 3, "the index, v1 and v1's signature: {restored}");
    // The sweep left the source repository's blob links (their blobs stayed): nothing to copy.
    assert_eq!(restored["blobsCopied"], 0, "blobs are linked, never copied: {restored}");
    assert_eq!(restored["blobsMounted"], 2, "v1's config and own layer: {restored}");
    // By run, with --force for v3: the rest, and what is back already is left as it is.
    ok(&run(&["restore", "-o", "json", "--force", "--url", &reg.url(), "--run", &run_id]));
    assert_eq!(served(&client).await, before, "every tag is back with its digest");
    verify_whole(&client).await;
    reg.restart(true).await.unwrap();
    collect_garbage(&reg, false);
    reg.restart(false).await.unwrap();
    verify_whole(&reg.client().unwrap()).await;
}

/// The blob store's digests, and every path in the registry's tree outside the quarantine.
fn tree(root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let v2 = root.join("docker/registry/v2");
    let all = fingerprint(&v2);
    let blobs = all.keys().filter(|p| p.starts_with("blobs/")).cloned().collect();
    let quarantine = format!("repositories/{}", regsweep::quarantine::NAMESPACE);
    let repos = all.keys().filter(|p| p.starts_with("repositories/") && !p.starts_with(&quarantine)).cloned().collect();
    (blobs, repos)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let out = Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `into`, stopped, now holding a copy of `from`'s storage.
async fn stopped_copy_of(from: &DemoRegistry, mut into: DemoRegistry) -> DemoRegistry {
    into.process.take().unwrap().stop().await;
    std::fs::remove_dir_all(into.layout().root()).unwrap();
    copy_tree(from.layout().root(), into.layout().root());
    into
}

/// Sizes of the quarantine records' blobs on the storage.
fn record_bytes(reg: &DemoRegistry) -> u64 {
    let found = regsweep::quarantine::list::from_storage(&reg.layout());
    found.records.iter().map(|r| r.to_manifest().len() as u64).sum()
}

#[tokio::test]
async fn expiry_frees_exactly_what_a_sweep_without_quarantine_frees() {
    let mut reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    reg.restart(true).await.unwrap();
    // The twin: the same storage, swept without quarantine.
    let mut twin = stopped_copy_of(&reg, DemoRegistry::start(None).await.unwrap()).await;
    twin.restart(true).await.unwrap();
    let twin_report = sweep(&twin, &policy(dir.path(), ""));
    assert!(twin_report["gc"]["blobsEligible"].as_u64().unwrap() > 0, "{twin_report}");

    let first = sweep(&reg, &policy(dir.path(), "3s"));
    let entering = first["plan"]["quarantine"]["enteringBytes"].as_u64().unwrap();
    assert_eq!(entering, twin_report["plan"]["bytesFreed"].as_u64().unwrap(), "what quarantine holds is what the sweep would free");
    let run_id = first["runId"].as_str().unwrap().to_string();
    let records = record_bytes(&reg);
    assert!(records > 0);
    std::thread::sleep(std::time::Duration::from_secs(4));

    // Expired: a restore refuses and changes nothing.
    reg.restart(false).await.unwrap();
    let root = reg.layout().root().to_path_buf();
    let untouched = fingerprint(&root);
    let out = run(&["restore", "--url", &reg.url(), "--run", &run_id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    let out = run(&["restore", "--url", &reg.url(), "app:nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no quarantine record holds app:nope"));
    assert_unchanged(&untouched, &root);

    // The next sweep (quarantine off now: earlier records expire all the same) frees them.
    reg.restart(true).await.unwrap();
    let second = sweep(&reg, &policy(dir.path(), ""));
    let q = &second["plan"]["quarantine"];
    assert_eq!(q["expiringRecords"], 2, "{second}");
    assert_eq!(second["plan"]["tagsDeleted"], 0, "expiry is not counted as the policy's deletions: {second}");
    assert_eq!(
        q["expiringBytes"].as_u64().unwrap(),
        entering + records,
        "expiry frees what the quarantine held, and its records: {second}"
    );
    assert_eq!(second["plan"]["bytesFreed"], q["expiringBytes"], "{second}");
    assert_eq!(tree(&root), tree(twin.layout().root()), "same blobs and same repositories as the sweep without quarantine");
    assert!(
        !reg.layout()
            .repository(regsweep::quarantine::NAMESPACE)
            .join("app/_manifests/tags")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
    reg.restart(false).await.unwrap();
    verify_whole(&reg.client().unwrap()).await;
    let listed = ok(&run(&["quarantine", "list", "-o", "json", "--storage", root.to_str().unwrap()]));
    assert_eq!(listed["records"], serde_json::json!([]), "{listed}");
}

/// Reads the child's JSON log until a line has every needle; false when it exited first.
fn wait_for_line(child: &mut std::process::Child, needles: &[&str]) -> bool {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(child.stderr.as_mut().unwrap());
    reader.lines().map_while(Result::ok).any(|line| needles.iter().all(|n| line.contains(n)))
}

#[tokio::test]
async fn a_quarantined_sweep_killed_anywhere_still_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), "7d");
    let points: &[&[&str]] = &[
        &["\"quarantine written\""],
        &["\"manifest deleted\""],
        &["\"running registry garbage-collect\"", "\"dry_run\":false"],
        &["\"pruned GC litter\""],
    ];
    for needles in points {
        let mut reg = registry().await;
        let before = served(&reg.client().unwrap()).await;
        reg.restart(true).await.unwrap();
        let mut child = Command::new(BIN)
            .args(["--log-format", "json", "maintenance", "--concurrency", "1", "-f", policy.to_str().unwrap()])
            .args(["--config", reg.config_path().to_str().unwrap(), "--url", &reg.url()])
            .env("RUST_LOG", "regsweep=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let hit = wait_for_line(&mut child, needles);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(hit, "the sweep never logged {needles:?}");
        // Rerun to completion, thaw, and restore every run the quarantine lists.
        sweep(&reg, &policy);
        reg.restart(false).await.unwrap();
        let listed = ok(&run(&["quarantine", "list", "-o", "json", "--url", &reg.url()]));
        let runs: BTreeSet<String> =
            listed["records"].as_array().unwrap().iter().map(|r| r["runId"].as_str().unwrap().to_string()).collect();
        assert!(!runs.is_empty(), "killed at {needles:?}: {listed}");
        for id in &runs {
            ok(&run(&["restore", "-o", "json", "--url", &reg.url(), "--run", id]));
        }
        let client = reg.client().unwrap();
        assert_eq!(served(&client).await, before, "killed at {needles:?}, then rerun: every tag restores");
        verify_whole(&client).await;
    }
}

#[tokio::test]
async fn a_symlinked_quarantine_is_refused_before_anything_is_deleted_and_nothing_outside_is_touched() {
    let mut reg = registry().await;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let before = served(&reg.client().unwrap()).await;
    std::os::unix::fs::symlink(outside.path(), reg.layout().repository(regsweep::quarantine::NAMESPACE)).unwrap();
    reg.restart(true).await.unwrap();
    let out = run(&[
        "maintenance",
        "-f",
        policy(dir.path(), "7d").to_str().unwrap(),
        "--config",
        reg.config_path().to_str().unwrap(),
        "--url",
        &reg.url(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is a symlink") && stderr.contains("nothing was deleted"), "{stderr}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through the symlink");
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    assert_eq!(served(&client).await, before, "nothing deleted");
    verify_whole(&client).await;
}
