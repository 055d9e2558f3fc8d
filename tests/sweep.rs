//! The whole sweep against the real registry: fill it, freeze it, run maintenance, thaw it,
//! and verify from outside that every kept image is whole and exactly the planned ones are gone.

mod support;

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use regsweep::demo::{DemoRegistry, fill};
use regsweep::fixture::{Format, push_image, set_manifest_pushed, set_tag_pushed};
use regsweep::maintenance::run::{MaintenanceOptions, run_maintenance};
use regsweep::plan::{Action, Plan, Protection};
use regsweep::policy::RegistryCleanupPolicy;
use regsweep::policy::reference::ProtectedRef;
use regsweep::registry::RegistryClient;
use regsweep::storage::read_storage;

fn policy(yaml_rules: &str) -> RegistryCleanupPolicy {
    let doc = format!(
        "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: test}}\nspec:\n  registry: {{hosts: [\"registry.example.com\"]}}\n  rules:\n{yaml_rules}"
    );
    regsweep::policy::load::from_yaml(&doc, "test").unwrap()
}

fn options(reg: &DemoRegistry, policy: RegistryCleanupPolicy, protect: &[&str]) -> MaintenanceOptions {
    MaintenanceOptions {
        protections: protect.iter().map(|r| Protection::in_use(ProtectedRef::parse(r).unwrap())).collect(),
        concurrency: 8,
        ..reg.maintenance_options(policy)
    }
}

/// Every (repository, tag) the registry serves, from its API.
async fn served_tags(client: &RegistryClient) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for repo in client.catalog().await.unwrap() {
        for tag in client.tags(&repo).await.unwrap() {
            out.insert((repo.clone(), tag));
        }
    }
    out
}

fn planned(plan: &Plan, action: Action) -> BTreeSet<(String, String)> {
    plan.repositories
        .iter()
        .flat_map(|r| r.tags.iter().filter(move |t| t.action == action).map(move |t| (r.name.clone(), t.tag.clone())))
        .collect()
}

/// Freeze, sweep, thaw, then check from outside: the kept tags are exactly what is served,
/// each one's whole graph verifies, and GC freed exactly the bytes the plan estimated.
async fn sweep_and_check(reg: &mut DemoRegistry, opts: MaintenanceOptions) -> Plan {
    let layout = reg.layout();
    let blob_bytes_before = read_storage(&layout).unwrap().blob_bytes();
    reg.restart(true).await.unwrap();
    let outcome = run_maintenance(opts).await.expect("maintenance succeeds");
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    let served = served_tags(&client).await;
    assert_eq!(served, planned(&outcome.plan, Action::Keep), "exactly the kept tags are served");
    assert!(planned(&outcome.plan, Action::Delete).is_disjoint(&served));
    let verify = regsweep::verify::verify_registry(&client).await.unwrap();
    assert!(verify.is_ok(), "kept images are whole: {:?}", verify.problems);
    assert_eq!(verify.tags, served.len());
    let after = read_storage(&layout).unwrap();
    assert!(after.problems.is_empty(), "storage consistent after the sweep: {:?}", after.problems);
    assert_eq!(blob_bytes_before - after.blob_bytes(), outcome.plan.summary.estimate.bytes_freed, "GC freed exactly the plan's estimate");
    assert_eq!(outcome.report.gc.as_ref().unwrap().blobs_eligible, outcome.plan.summary.estimate.blobs_freed);
    outcome.plan
}

fn tag<'a>(plan: &'a Plan, repo: &str, tag: &str) -> &'a regsweep::plan::TagDecision {
    plan.repository(repo).and_then(|r| r.tag(tag)).unwrap_or_else(|| panic!("{repo}:{tag} in plan"))
}

#[tokio::test]
async fn demo_mix_is_swept_as_planned() {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    let layout = reg.layout();
    fill(&reg.client().unwrap(), &layout).await.unwrap();
    let policy = regsweep::policy::load::from_yaml(regsweep::demo::DEMO_POLICY, "demo").unwrap();
    let opts = options(&reg, policy, &[]);
    let plan = sweep_and_check(&mut reg, opts).await;

    // Two tags on one digest: build-103 is old, but `stable` keeps it, so both stay.
    assert_eq!(tag(&plan, "team-a/api", "build-103").action, Action::Keep);
    assert!(tag(&plan, "team-a/api", "build-103").reason.contains("shares its digest with kept tag stable"));
    // Retention: old CI builds go; releases and the protected hotfix stay.
    assert_eq!(tag(&plan, "team-a/api", "build-101").action, Action::Delete);
    assert_eq!(tag(&plan, "team-a/api", "v1.0.0").action, Action::Keep);
    assert_eq!(tag(&plan, "team-a/api", "v0.9.0-hotfix").reason, "protected: registry.example.com/team-a/api:v0.9.0-hotfix");
    // The signature follows its subject: build-100 goes, and its .sig with it.
    let signed = tag(&plan, "team-a/api", "build-100");
    assert_eq!(signed.action, Action::Delete);
    let sig = format!("sha256-{}.sig", signed.digest.hex());
    assert_eq!(tag(&plan, "team-a/api", &sig).action, Action::Delete);
    // Multi-arch: the kept indexes' untagged children survive while untagged deletion is on.
    let web = plan.repository("team-a/web").unwrap();
    let kept_children = web.manifests.iter().filter(|m| m.reason.starts_with("child of kept index")).count();
    assert_eq!(kept_children, 6, "three indexes × two platforms");
    // The oldest index goes, with its platform images and its signature.
    assert_eq!(tag(&plan, "team-a/web", "2023.9").action, Action::Delete);
    assert_eq!(web.manifests.iter().filter(|m| m.reason == "child of a deleted index" && m.action == Action::Delete).count(), 2);
    let old_index = &tag(&plan, "team-a/web", "2023.9").digest;
    assert_eq!(tag(&plan, "team-a/web", &format!("sha256-{}.sig", old_index.hex())).action, Action::Delete);
    // Tag history: the old digests of `latest` are deleted as untagged.
    let api = plan.repository("team-a/api").unwrap();
    assert_eq!(api.manifests.iter().filter(|m| m.reason.starts_with("untagged for more than")).count(), 2);
    // No rule: untouched.
    assert_eq!(tag(&plan, "legacy/tool", "0.1").reason, "no rule matches this repository");
    // team-b: only pr-* tags are candidates; the manifest list and its children stay.
    assert_eq!(tag(&plan, "team-b/worker", "1.0").action, Action::Keep);
    assert_eq!(tag(&plan, "team-b/worker", "pr-7").action, Action::Delete);
    assert_eq!(tag(&plan, "team-b/worker", "pr-9").action, Action::Keep);

    // The registry takes pushes again after the thaw; the new tag pushes build-105 out of the
    // newest three, so a second sweep deletes exactly that one.
    let client = reg.client().unwrap();
    push_image(&client, "team-a/api", Some("after-thaw"), Format::Oci, &[1024], &[]).await.unwrap();
    let policy = regsweep::policy::load::from_yaml(regsweep::demo::DEMO_POLICY, "demo").unwrap();
    let opts = options(&reg, policy, &[]);
    let again = sweep_and_check(&mut reg, opts).await;
    let deleted: Vec<&str> =
        again.repositories.iter().flat_map(|r| r.tags.iter()).filter(|t| t.action == Action::Delete).map(|t| t.tag.as_str()).collect();
    assert_eq!(deleted, vec!["build-105"]);
    assert_eq!(again.summary.manifests_deleted, 1);
}

#[tokio::test]
async fn protected_references_and_the_grace_period() {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    let (client, layout) = (reg.client().unwrap(), reg.layout());
    let old = Utc::now() - Duration::days(30);
    let mut digests = Vec::new();
    for t in ["a", "b", "c"] {
        let img = push_image(&client, "app", Some(t), Format::Oci, &[2048], &[]).await.unwrap();
        set_tag_pushed(&layout, "app", t, old).unwrap();
        digests.push(img.digest);
    }
    let young = push_image(&client, "app", None, Format::Docker, &[2048], &[]).await.unwrap();
    let stale = push_image(&client, "app", None, Format::Docker, &[2048], &[]).await.unwrap();
    set_manifest_pushed(&layout, "app", &stale.digest, old).unwrap();
    let p = policy("    - repositories: [\"app\"]\n      keepLatest: 0\n      deleteTags: [\"*\"]\n      untagged: Delete\n");
    let opts = options(&reg, p, &["registry.example.com/app:a", &format!("app@{}", digests[1])]);
    let plan = sweep_and_check(&mut reg, opts).await;
    assert_eq!(tag(&plan, "app", "a").reason, "in use: registry.example.com/app:a");
    assert_eq!(tag(&plan, "app", "b").action, Action::Keep);
    assert_eq!(tag(&plan, "app", "c").action, Action::Delete);
    let app = plan.repository("app").unwrap();
    assert_eq!(app.manifest(&young.digest).unwrap().action, Action::Keep, "younger than the grace period");
    assert_eq!(app.manifest(&stale.digest).unwrap().action, Action::Delete);
}

/// Pushes a one-layer image with fixed content, so it can be pushed again byte for byte.
async fn push_fixed(client: &RegistryClient, repo: &str, tag: &str, layer: &[u8]) -> regsweep::digest::Digest {
    let layer_digest = client.push_blob(repo, layer).await.unwrap();
    let config = format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#);
    let config_digest = client.push_blob(repo, config.as_bytes()).await.unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"{}","size":{},"digest":"{layer_digest}"}}]}}"#,
        regsweep::media::OCI_MANIFEST,
        regsweep::media::OCI_CONFIG,
        config.len(),
        regsweep::media::OCI_LAYER,
        layer.len()
    );
    client.put_manifest(repo, tag, regsweep::media::OCI_MANIFEST, manifest.as_bytes()).await.unwrap()
}

#[tokio::test]
async fn an_emptied_repository_leaves_the_catalog_and_its_content_can_be_pushed_again() {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    let (client, layout) = (reg.client().unwrap(), reg.layout());
    let old = Utc::now() - Duration::days(30);
    push_fixed(&client, "scratch/tmp", "t1", b"the same layer, twice").await;
    set_tag_pushed(&layout, "scratch/tmp", "t1", old).unwrap();
    push_image(&client, "keep/app", Some("v1"), Format::Docker, &[1024], &[]).await.unwrap();
    let p = policy("    - repositories: [\"scratch/**\"]\n      keepWithin: 7d\n");
    let opts = options(&reg, p, &[]);
    sweep_and_check(&mut reg, opts).await;
    let client = reg.client().unwrap();
    assert_eq!(client.catalog().await.unwrap(), vec!["keep/app".to_string()], "the emptied repository is gone from _catalog");
    assert!(!layout.repository("scratch").exists(), "and from disk");

    // After GC and the restart, the very same content pushes and pulls again: the restart
    // dropped the blob cache that would otherwise claim the deleted blobs still exist.
    let digest = push_fixed(&client, "scratch/tmp", "t1", b"the same layer, twice").await;
    let verify = regsweep::verify::verify_tags(&client, &[("scratch/tmp".into(), "t1".into())]).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
    assert_eq!(client.get_manifest("scratch/tmp", "t1").await.unwrap().digest, digest);
}
