//! The planner's rules and their edges, on hand-built snapshots.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::policy::reference::ProtectedRef;
use crate::policy::{RegistryCleanupPolicySpec, Rule, UntaggedAction, compile};
use crate::storage::{Content, Manifest, Repository, Snapshot, Tag};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn days_ago(n: i64) -> Option<DateTime<Utc>> {
    Some(now() - Duration::days(n))
}

/// A tiny registry builder: images get a unique config and layer (plus an optional shared one).
#[derive(Default)]
struct Reg {
    snap: Snapshot,
}

impl Reg {
    fn new() -> Self {
        Reg { snap: Snapshot { source: "test".into(), sees_untagged: true, ..Default::default() } }
    }

    fn repo(&mut self, name: &str) -> &mut Repository {
        self.snap.repositories.entry(name.into()).or_insert_with(|| Repository { name: name.into(), ..Default::default() })
    }

    fn blob(&mut self, seed: &str, size: u64) -> Digest {
        let d = Digest::of(seed.as_bytes());
        self.snap.blobs.insert(d.clone(), size);
        d
    }

    fn image(&mut self, repo: &str, seed: &str, age_days: i64) -> Digest {
        let config = self.blob(&format!("{seed}-config"), 10);
        let layer = self.blob(&format!("{seed}-layer"), 1000);
        let shared = self.blob("shared-base-layer", 5000);
        let d = self.blob(&format!("{seed}-manifest"), 1);
        let m = Manifest {
            digest: d.clone(),
            media_type: crate::media::OCI_MANIFEST.into(),
            pushed: days_ago(age_days),
            content: Content::Image { config, layers: vec![shared, layer] },
            subject: None,
        };
        self.repo(repo).manifests.insert(d.clone(), m);
        d
    }

    fn index(&mut self, repo: &str, seed: &str, children: Vec<Digest>, age_days: i64) -> Digest {
        let d = self.blob(&format!("{seed}-index"), 1);
        let m = Manifest {
            digest: d.clone(),
            media_type: crate::media::OCI_INDEX.into(),
            pushed: days_ago(age_days),
            content: Content::Index { children },
            subject: None,
        };
        self.repo(repo).manifests.insert(d.clone(), m);
        d
    }

    fn tag(&mut self, repo: &str, tag: &str, digest: &Digest, age_days: i64) {
        let t = Tag { name: tag.into(), digest: digest.clone(), pushed: days_ago(age_days) };
        self.repo(repo).tags.insert(tag.into(), t);
    }

    fn tagged(&mut self, repo: &str, tag: &str, age_days: i64) -> Digest {
        let d = self.image(repo, &format!("{repo}:{tag}"), age_days);
        self.tag(repo, tag, &d, age_days);
        d
    }
}

fn rule(f: impl FnOnce(&mut Rule)) -> Rule {
    let mut r = Rule { repositories: vec!["**".into()], ..Default::default() };
    f(&mut r);
    r
}

fn run(reg: &Reg, rules: Vec<Rule>, protect: &[&str]) -> Plan {
    let policy = compile(&RegistryCleanupPolicySpec { rules, ..Default::default() }).unwrap();
    let protections: Vec<Protection> = protect.iter().map(|r| Protection::in_use(ProtectedRef::parse(r).unwrap())).collect();
    plan(&policy, &reg.snap, &protections, now())
}

fn tag_action(p: &Plan, repo: &str, tag: &str) -> (Action, String) {
    let t = p.repository(repo).unwrap().tag(tag).unwrap_or_else(|| panic!("no tag {repo}:{tag}"));
    (t.action, t.reason.clone())
}

fn manifest_action(p: &Plan, repo: &str, d: &Digest) -> (Action, String) {
    let m = p.repository(repo).unwrap().manifest(d).unwrap();
    (m.action, m.reason.clone())
}

#[test]
fn keep_latest_keeps_the_newest_by_push_time() {
    let mut reg = Reg::new();
    for (tag, age) in [("a", 5), ("b", 1), ("c", 3), ("d", 2), ("e", 4)] {
        reg.tagged("app", tag, age);
    }
    let p = run(&reg, vec![rule(|r| r.keep_latest = Some(2))], &[]);
    assert_eq!(tag_action(&p, "app", "b").0, Action::Keep);
    assert_eq!(tag_action(&p, "app", "d").0, Action::Keep);
    for t in ["a", "c", "e"] {
        let (a, why) = tag_action(&p, "app", t);
        assert_eq!(a, Action::Delete, "{t}");
        assert_eq!(why, "not among the newest 2");
    }
    assert_eq!(p.summary.tags_deleted, 3);
    assert_eq!(p.summary.manifests_deleted, 3);
}

#[test]
fn keep_within_and_keep_latest_combine_as_either() {
    let mut reg = Reg::new();
    for (tag, age) in [("new", 1), ("mid", 10), ("old", 40), ("older", 50)] {
        reg.tagged("app", tag, age);
    }
    let p = run(
        &reg,
        vec![rule(|r| {
            r.keep_latest = Some(1);
            r.keep_within = Some("30d".into());
        })],
        &[],
    );
    assert_eq!(tag_action(&p, "app", "new"), (Action::Keep, "among the newest 1".into()));
    assert_eq!(tag_action(&p, "app", "mid"), (Action::Keep, "pushed within 30d".into()));
    assert_eq!(tag_action(&p, "app", "old"), (Action::Delete, "not among the newest 1 and pushed more than 30d ago".into()));
    assert_eq!(tag_action(&p, "app", "older").0, Action::Delete);
}

#[test]
fn keep_tags_and_delete_tags() {
    let mut reg = Reg::new();
    for (tag, age) in [("latest", 90), ("v1.0", 90), ("release-7", 90), ("release-7-rc", 90), ("pr-1", 90), ("main-abc", 90)] {
        reg.tagged("app", tag, age);
    }
    let p = run(
        &reg,
        vec![rule(|r| {
            r.keep_latest = Some(0);
            r.keep_tags = vec!["latest".into(), "v*".into(), "regex:release-[0-9]+".into()];
            r.delete_tags = Some(vec!["pr-*".into(), "release-*".into()]);
        })],
        &[],
    );
    assert_eq!(tag_action(&p, "app", "latest"), (Action::Keep, "matches keepTags latest".into()));
    assert_eq!(tag_action(&p, "app", "v1.0").1, "matches keepTags v*");
    assert_eq!(tag_action(&p, "app", "release-7").1, "matches keepTags regex:release-[0-9]+");
    assert_eq!(tag_action(&p, "app", "release-7-rc").0, Action::Delete, "regex is anchored");
    assert_eq!(tag_action(&p, "app", "pr-1"), (Action::Delete, "not among the newest 0".into()));
    assert_eq!(tag_action(&p, "app", "main-abc"), (Action::Keep, "not matched by deleteTags".into()));
}

#[test]
fn no_rule_and_no_retention_delete_nothing() {
    let mut reg = Reg::new();
    reg.tagged("other/app", "old", 400);
    reg.tagged("team-a/app", "old", 400);
    let p = run(&reg, vec![rule(|r| r.repositories = vec!["team-a/*".into()])], &[]);
    assert_eq!(tag_action(&p, "other/app", "old"), (Action::Keep, "no rule matches this repository".into()));
    assert_eq!(tag_action(&p, "team-a/app", "old").1, "rule 0 sets neither keepLatest nor keepWithin");
    assert_eq!(p.summary.manifests_deleted, 0);
    assert_eq!(p.summary.estimate.bytes_freed, 0);
}

#[test]
fn a_tag_sharing_its_digest_with_a_kept_tag_stays() {
    let mut reg = Reg::new();
    let d = reg.tagged("app", "v1.2", 100);
    reg.tag("app", "stable-old", &d, 100);
    let p = run(
        &reg,
        vec![rule(|r| {
            r.keep_latest = Some(0);
            r.keep_tags = vec!["v*".into()];
        })],
        &[],
    );
    assert_eq!(tag_action(&p, "app", "stable-old"), (Action::Keep, "shares its digest with kept tag v1.2".into()));
    assert_eq!(manifest_action(&p, "app", &d).0, Action::Keep);
    assert!(p.deletions().is_empty());
}

#[test]
fn index_children_follow_their_index() {
    let mut reg = Reg::new();
    let (a1, b1) = (reg.image("app", "amd64-1", 100), reg.image("app", "arm64-1", 100));
    let kept_index = reg.index("app", "idx-1", vec![a1.clone(), b1.clone()], 100);
    reg.tag("app", "v1", &kept_index, 100);
    let (a2, b2) = (reg.image("app", "amd64-2", 100), reg.image("app", "arm64-2", 100));
    let old_index = reg.index("app", "idx-2", vec![a2.clone(), b2.clone()], 100);
    reg.tag("app", "old", &old_index, 100);
    let p = run(
        &reg,
        vec![rule(|r| {
            r.keep_latest = Some(0);
            r.keep_tags = vec!["v1".into()];
            r.untagged = UntaggedAction::Delete;
        })],
        &[],
    );
    assert_eq!(manifest_action(&p, "app", &a1), (Action::Keep, format!("child of kept index {}", kept_index.short())));
    assert_eq!(manifest_action(&p, "app", &b1).0, Action::Keep);
    assert_eq!(manifest_action(&p, "app", &old_index).0, Action::Delete);
    assert_eq!(manifest_action(&p, "app", &a2), (Action::Delete, "child of a deleted index".into()));
    // The index goes before its children.
    assert_eq!(p.deletions()[0].digest, old_index);
}

#[test]
fn young_children_of_a_deleted_index_wait_for_the_grace_period() {
    let mut reg = Reg::new();
    let child = reg.image("app", "child", 0);
    let index = reg.index("app", "idx", vec![child.clone()], 100);
    reg.tag("app", "old", &index, 100);
    let p = run(&reg, vec![rule(|r| r.keep_latest = Some(0))], &[]);
    assert_eq!(manifest_action(&p, "app", &index).0, Action::Delete);
    assert_eq!(manifest_action(&p, "app", &child), (Action::Keep, "untagged for less than 1d".into()));
}

#[test]
fn untagged_manifests_and_the_grace_period() {
    let mut reg = Reg::new();
    reg.tagged("app", "v1", 10);
    let old = reg.image("app", "untagged-old", 3);
    let young = reg.image("app", "untagged-young", 0);
    let p = run(
        &reg,
        vec![rule(|r| {
            r.untagged = UntaggedAction::Delete;
            r.untagged_grace_period = Some("48h".into());
        })],
        &[],
    );
    assert_eq!(manifest_action(&p, "app", &old), (Action::Delete, "untagged for more than 2d".into()));
    assert_eq!(manifest_action(&p, "app", &young), (Action::Keep, "untagged for less than 2d".into()));
    let keep = run(&reg, vec![rule(|_| {})], &[]);
    assert_eq!(manifest_action(&keep, "app", &old).0, Action::Keep);
}

#[test]
fn an_unreadable_manifest_protects_untagged_ones() {
    let mut reg = Reg::new();
    let old = reg.image("app", "untagged", 30);
    let broken = Digest::of(b"broken");
    reg.repo("app").manifests.insert(
        broken.clone(),
        Manifest {
            digest: broken.clone(),
            media_type: String::new(),
            pushed: days_ago(30),
            content: Content::Unknown { why: "schema1".into() },
            subject: None,
        },
    );
    reg.tag("app", "legacy", &broken, 30);
    let p = run(&reg, vec![rule(|r| r.untagged = UntaggedAction::Delete)], &[]);
    let (a, why) = manifest_action(&p, "app", &old);
    assert_eq!(a, Action::Keep);
    assert!(why.contains("unreadable manifest"), "{why}");
}

#[test]
fn signature_tags_follow_their_subject_and_are_not_counted() {
    let mut reg = Reg::new();
    let kept = reg.tagged("app", "new", 1);
    let gone = reg.tagged("app", "old", 50);
    let sig_kept = reg.image("app", "sig-of-new", 1);
    reg.tag("app", &format!("sha256-{}.sig", kept.hex()), &sig_kept, 1);
    let sig_gone = reg.image("app", "sig-of-old", 50);
    reg.tag("app", &format!("sha256-{}.att", gone.hex()), &sig_gone, 0);
    let p = run(&reg, vec![rule(|r| r.keep_latest = Some(1))], &[]);
    assert_eq!(tag_action(&p, "app", "new").0, Action::Keep, "the newer signature tag did not take the slot");
    assert_eq!(
        tag_action(&p, "app", &format!("sha256-{}.sig", kept.hex())),
        (Action::Keep, format!("signature of kept image {}", kept.short()))
    );
    assert_eq!(
        tag_action(&p, "app", &format!("sha256-{}.att", gone.hex())),
        (Action::Delete, format!("signature of deleted image {}", gone.short()))
    );
    assert_eq!(manifest_action(&p, "app", &sig_gone).0, Action::Delete);
    // Signatures are deleted first.
    assert_eq!(p.deletions()[0].digest, sig_gone);
}

#[test]
fn referrers_follow_their_subject() {
    let mut reg = Reg::new();
    let kept = reg.tagged("app", "new", 1);
    let gone = reg.tagged("app", "old", 50);
    let referrer = |reg: &mut Reg, seed: &str, subject: &Digest| {
        let d = reg.image("app", seed, 50);
        reg.repo("app").manifests.get_mut(&d).unwrap().subject = Some(subject.clone());
        d
    };
    let sbom_kept = referrer(&mut reg, "sbom-new", &kept);
    let sbom_gone = referrer(&mut reg, "sbom-old", &gone);
    let p = run(&reg, vec![rule(|r| r.keep_latest = Some(1))], &[]);
    assert_eq!(manifest_action(&p, "app", &sbom_kept), (Action::Keep, format!("refers to kept manifest {}", kept.short())));
    assert_eq!(manifest_action(&p, "app", &sbom_gone), (Action::Delete, "refers to a deleted manifest".into()));
}

#[test]
fn protected_references_override_every_rule() {
    let mut reg = Reg::new();
    let by_digest = reg.tagged("app", "a", 90);
    reg.tagged("app", "b", 90);
    reg.tagged("base/alpine", "stable", 90);
    let untagged = reg.image("app", "pinned", 90);
    let p = run(
        &reg,
        vec![rule(|r| {
            r.keep_latest = Some(0);
            r.untagged = UntaggedAction::Delete;
        })],
        &[&format!("app@{by_digest}"), "registry.example.com/app:b", "base/*:stable", &format!("app@{untagged}")],
    );
    assert_eq!(manifest_action(&p, "app", &by_digest), (Action::Keep, format!("in use: app@{by_digest}")));
    assert_eq!(tag_action(&p, "app", "a"), (Action::Keep, format!("in use: app@{by_digest}")));
    assert_eq!(tag_action(&p, "app", "b"), (Action::Keep, "in use: registry.example.com/app:b".into()));
    assert_eq!(tag_action(&p, "base/alpine", "stable"), (Action::Keep, "in use: base/*:stable".into()));
    assert_eq!(manifest_action(&p, "app", &untagged).0, Action::Keep);
    assert_eq!(p.summary.manifests_deleted, 0);
}

#[test]
fn estimate_counts_only_blobs_no_surviving_manifest_references() {
    let mut reg = Reg::new();
    reg.tagged("app", "new", 1);
    let old = reg.tagged("app", "old", 50);
    let orphan = reg.blob("orphan", 7);
    let p = run(&reg, vec![rule(|r| r.keep_latest = Some(1))], &[]);
    // The old image's manifest, config and own layer go; the shared base layer stays.
    assert_eq!(p.summary.estimate.bytes_freed, 1 + 10 + 1000 + 7);
    assert_eq!(p.summary.estimate.blobs_freed, 4);
    assert_eq!(p.summary.estimate.bytes_already_unreferenced, 7);
    assert!(!p.deletions().is_empty() && p.deletions()[0].digest == old);
    let _ = orphan;
}

#[test]
fn nested_indexes_and_manifest_lists_keep_their_whole_tree() {
    let mut reg = Reg::new();
    let leaf = reg.image("app", "leaf", 100);
    let inner = reg.index("app", "inner", vec![leaf.clone()], 100);
    let outer = reg.index("app", "outer", vec![inner.clone()], 100);
    reg.repo("app").manifests.get_mut(&outer).unwrap().media_type = crate::media::DOCKER_MANIFEST_LIST.into();
    reg.tag("app", "v1", &outer, 100);
    let p = run(
        &reg,
        vec![rule(|r| {
            r.keep_tags = vec!["v1".into()];
            r.keep_latest = Some(0);
            r.untagged = UntaggedAction::Delete;
        })],
        &[],
    );
    assert_eq!(manifest_action(&p, "app", &inner).0, Action::Keep);
    assert_eq!(manifest_action(&p, "app", &leaf), (Action::Keep, format!("child of kept index {}", inner.short())));
}

#[test]
fn a_tag_whose_manifest_is_missing_is_left_alone() {
    let mut reg = Reg::new();
    let ghost = Digest::of(b"ghost");
    reg.tag("app", "broken", &ghost, 100);
    reg.tagged("app", "new", 1);
    let p = run(&reg, vec![rule(|r| r.keep_latest = Some(0))], &[]);
    let (a, why) = tag_action(&p, "app", "broken");
    assert_eq!(a, Action::Keep);
    assert!(why.contains("missing"), "{why}");
    assert!(p.deletions().iter().all(|d| d.digest != ghost));
}

#[test]
fn an_api_snapshot_never_deletes_untagged_manifests() {
    let mut reg = Reg::new();
    reg.snap.sees_untagged = false;
    let old = reg.image("app", "untagged", 100);
    let p = run(&reg, vec![rule(|r| r.untagged = UntaggedAction::Delete)], &[]);
    assert_eq!(manifest_action(&p, "app", &old).0, Action::Keep);
    assert!(p.warnings.iter().any(|w| w.contains("untagged")));
}

#[test]
fn a_digest_named_by_tags_in_two_repositories_is_decided_per_repository() {
    let mut reg = Reg::new();
    let d = reg.tagged("a", "old", 100);
    // The same manifest linked into a second repository (a cross-repository mount).
    let m = reg.repo("a").manifests[&d].clone();
    reg.repo("b").manifests.insert(d.clone(), m);
    reg.tag("b", "old", &d, 100);
    let p = run(
        &reg,
        vec![rule(|r| {
            r.repositories = vec!["a".into()];
            r.keep_latest = Some(0);
        })],
        &[],
    );
    assert_eq!(tag_action(&p, "a", "old").0, Action::Delete);
    assert_eq!(tag_action(&p, "b", "old").0, Action::Keep);
    // Its blobs stay: repository b still references them.
    assert_eq!(p.summary.estimate.bytes_freed, 0);
}

#[test]
fn deletion_order_is_signatures_indexes_images_children() {
    let mut reg = Reg::new();
    let child = reg.image("app", "child", 100);
    let index = reg.index("app", "idx", vec![child.clone()], 100);
    reg.tag("app", "old-index", &index, 100);
    let image = reg.tagged("app", "old-image", 100);
    let sig = reg.image("app", "sig", 100);
    reg.tag("app", &format!("sha256-{}.sig", image.hex()), &sig, 100);
    let p = run(&reg, vec![rule(|r| r.keep_latest = Some(0))], &[]);
    let order: Vec<Digest> = p.deletions().into_iter().map(|d| d.digest).collect();
    assert_eq!(order, vec![sig, index, image, child]);
}

#[test]
fn a_protected_signature_tag_survives_its_deleted_subject() {
    // Protected by exact tag, by tag glob, and by a tagless repository reference: the
    // signature tag stays although "signature of deleted image" would remove it.
    for protect in ["SIG", "app:sha256-*", "registry.example.com/app"] {
        let mut reg = Reg::new();
        reg.tagged("app", "new", 1);
        let gone = reg.tagged("app", "old", 9);
        let sig_tag = format!("sha256-{}.sig", gone.hex());
        let sig = reg.image("app", "sig-of-old", 9);
        reg.tag("app", &sig_tag, &sig, 9);
        let reference = if protect == "SIG" { format!("app:{sig_tag}") } else { protect.to_string() };
        let p = run(&reg, vec![rule(|r| r.keep_latest = Some(1))], &[reference.as_str()]);
        if protect != "registry.example.com/app" {
            assert_eq!(tag_action(&p, "app", "old").0, Action::Delete, "{protect}: the subject itself is not protected");
        }
        let (action, reason) = tag_action(&p, "app", &sig_tag);
        assert_eq!(action, Action::Keep, "{protect}: {reason}");
        assert_eq!(reason, format!("in use: {reference}"), "{protect}");
        assert_eq!(manifest_action(&p, "app", &sig).0, Action::Keep, "{protect}");
    }
}

#[test]
fn a_repository_with_unreadable_entries_deletes_nothing() {
    let mut reg = Reg::new();
    reg.tagged("app", "new", 1);
    reg.tagged("app", "old", 9);
    let untagged = reg.image("app", "untagged", 30);
    reg.tagged("other", "new", 1);
    reg.tagged("other", "old", 9);
    reg.repo("app").unreadable = vec!["/s/app/_manifests/tags/x/current/link".into(), "/s/app/y".into()];
    let p = run(
        &reg,
        vec![rule(|r| {
            r.keep_latest = Some(1);
            r.untagged = UntaggedAction::Delete;
            r.untagged_grace_period = Some("1h".into());
        })],
        &[],
    );
    let want = "repository has unreadable entries: /s/app/_manifests/tags/x/current/link (and 1 more)";
    assert_eq!(tag_action(&p, "app", "old"), (Action::Keep, want.to_string()));
    assert_eq!(manifest_action(&p, "app", &untagged), (Action::Keep, want.to_string()));
    assert_eq!(p.repository("app").unwrap().rule, Some(0));
    assert_eq!(tag_action(&p, "other", "old").0, Action::Delete, "the rest of the registry is swept");
}

mod approval {
    use super::*;
    use crate::plan::approval::{Approval, plan_within};

    fn policy() -> crate::policy::CompiledPolicy {
        let rules = vec![rule(|r| {
            r.keep_latest = Some(1);
            r.untagged = UntaggedAction::Delete;
            r.untagged_grace_period = Some("1h".into());
        })];
        compile(&RegistryCleanupPolicySpec { rules, ..Default::default() }).unwrap()
    }

    fn deleted(p: &Plan) -> Vec<String> {
        let mut out: Vec<String> = p
            .repositories
            .iter()
            .flat_map(|r| r.tags.iter().filter(|t| t.action == Action::Delete).map(move |t| format!("{}:{}", r.name, t.tag)))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_id_names_what_is_deleted_and_nothing_else() {
        let mut reg = Reg::new();
        for (t, age) in [("a", 3), ("b", 2), ("c", 1)] {
            reg.tagged("app", t, age);
        }
        let first = plan(&policy(), &reg.snap, &[], now());
        let later = plan(&policy(), &reg.snap, &[], now() + Duration::minutes(5));
        assert_eq!(first.id, later.id, "the same deletions, another time: the same id");
        assert!(first.id.starts_with("plan-") && first.id.len() == 25, "{}", first.id);
        reg.tagged("app", "d", 4);
        assert_ne!(plan(&policy(), &reg.snap, &[], now()).id, first.id, "one more deletion: another id");
    }

    #[test]
    fn an_approved_run_deletes_at_most_what_was_approved() {
        let mut reg = Reg::new();
        let old_a = reg.tagged("app", "a", 5);
        for (t, age) in [("b", 4), ("c", 3), ("keep", 1)] {
            reg.tagged("app", t, age);
        }
        let child = reg.image("multi", "arm", 6);
        let other = reg.image("multi", "amd", 6);
        let idx = reg.index("multi", "list", vec![child.clone(), other.clone()], 6);
        reg.tag("multi", "old", &idx, 6);
        reg.tagged("multi", "new", 1);
        let reviewed = plan(&policy(), &reg.snap, &[], now());
        assert_eq!(deleted(&reviewed), ["app:a", "app:b", "app:c", "multi:old"]);
        let approval = Approval::from_json(&serde_json::to_string(&reviewed).unwrap()).unwrap();
        assert_eq!(approval, Approval::of(&reviewed), "the JSON round trip approves the same");

        // Since the review: `a` moved to a new (old-looking) image, `z` appeared, `b` is
        // protected; the index's tag is unchanged.
        let moved = reg.image("app", "a-again", 5);
        reg.tag("app", "a", &moved, 5);
        reg.tagged("app", "z", 9);
        let protections = [Protection::in_use(ProtectedRef::parse("app:b").unwrap())];
        let unrestricted = plan(&policy(), &reg.snap, &protections, now());
        assert_eq!(deleted(&unrestricted), ["app:a", "app:c", "app:z", "multi:old"]);
        let within = plan_within(&policy(), &reg.snap, &protections, &approval, now()).unwrap();
        assert_eq!(deleted(&within), ["app:c", "multi:old"]);
        assert!(approval.beyond(&within).is_empty());
        let (action, reason) = tag_action(&within, "app", "a");
        assert_eq!(action, Action::Keep);
        assert!(reason.contains("not in the approved plan"), "{reason}");
        // The approved index goes with both its children; the old `a` image (untagged now,
        // approved with its tag) goes too, the new one stays.
        for d in [&idx, &child, &other] {
            assert_eq!(manifest_action(&within, "multi", d).0, Action::Delete);
        }
        assert_eq!(manifest_action(&within, "app", &moved).0, Action::Keep);
        assert_eq!(manifest_action(&within, "app", &old_a).0, Action::Delete);
    }

    #[test]
    fn a_changed_plan_file_is_refused() {
        let mut reg = Reg::new();
        reg.tagged("app", "a", 3);
        reg.tagged("app", "b", 1);
        let text = serde_json::to_string(&plan(&policy(), &reg.snap, &[], now())).unwrap();
        assert!(Approval::from_json(&text).is_ok());
        let widened = text.replacen("\"keep\"", "\"delete\"", 1);
        assert_ne!(widened, text);
        let e = Approval::from_json(&widened).unwrap_err();
        assert!(e.contains("changed after it was made"), "{e}");
        assert!(Approval::from_json("{\"not\": \"a plan\"}").unwrap_err().contains("is not a plan"));
    }
}

mod quarantine {
    use super::*;
    use crate::quarantine::{Entry, Record, manifest_tag, repository_for};

    const Q: &str = "regsweep-quarantine/app";

    /// A record of `run` in the quarantine repository, naming `entries`, tagged `run-<run>`.
    fn record(reg: &mut Reg, run: &str, entries: &[&Digest], expires_in_hours: i64) -> Digest {
        let d = reg.index(Q, &format!("record-{run}"), entries.iter().map(|d| (*d).clone()).collect(), 1);
        reg.tag(Q, &format!("run-{run}"), &d, 1);
        let entries = entries
            .iter()
            .map(|e| Entry {
                digest: (*e).clone(),
                media_type: crate::media::OCI_MANIFEST.into(),
                size: 1,
                tags: vec![],
                subject: None,
                bytes: 0,
            })
            .collect();
        let r = Record {
            run_id: run.into(),
            policy: "p".into(),
            repository: "app".into(),
            deleted_at: now() - Duration::days(1),
            expires_at: now() + Duration::hours(expires_in_hours),
            entries,
        };
        reg.repo(Q).records.insert(d.clone(), r);
        d
    }

    fn held(reg: &mut Reg, seed: &str) -> Digest {
        let d = reg.image(Q, seed, 3);
        reg.tag(Q, &manifest_tag(&d), &d, 3);
        d
    }

    /// A registry whose quarantine holds an expired and a live record sharing one image, an
    /// image a hand-pushed tag names, and an image no record names (an interrupted write).
    fn registry() -> (Reg, [Digest; 7]) {
        let mut reg = Reg::new();
        reg.tagged("app", "v1", 3);
        reg.tagged("app", "v2", 2);
        let only_expired = held(&mut reg, "x");
        let shared = held(&mut reg, "s");
        let orphan = held(&mut reg, "o");
        let hand = reg.image(Q, "h", 3);
        reg.tag(Q, "hand-pushed", &hand, 3);
        let expired = record(&mut reg, "a", &[&only_expired, &shared], -1);
        let live = record(&mut reg, "b", &[&shared], 24);
        let v1 = reg.snap.repositories["app"].tags["v1"].digest.clone();
        (reg, [only_expired, shared, orphan, hand, expired, live, v1])
    }

    fn policy(quarantine: bool) -> crate::policy::CompiledPolicy {
        // Every repository, everything but the newest tag: it must never reach the quarantine.
        let rules = vec![rule(|r| {
            r.keep_latest = Some(1);
            r.untagged = UntaggedAction::Delete;
            r.untagged_grace_period = Some("1s".into());
        })];
        let quarantine = quarantine.then(|| crate::policy::spec::QuarantineSpec { keep_for: "7d".into() });
        compile(&RegistryCleanupPolicySpec { rules, quarantine, ..Default::default() }).unwrap()
    }

    #[test]
    fn only_expiry_deletes_in_a_quarantine_and_no_rule_reaches_it() {
        let (reg, [only_expired, shared, orphan, hand, expired, live, _]) = registry();
        let p = plan(&policy(false), &reg.snap, &[], now());
        assert_eq!(p.repository(Q).unwrap().rule, None, "no rule governs a quarantine repository");
        assert_eq!(manifest_action(&p, Q, &expired).0, Action::Delete, "the expired record");
        assert_eq!(manifest_action(&p, Q, &only_expired).0, Action::Delete, "what only the expired record held");
        assert_eq!(manifest_action(&p, Q, &orphan).0, Action::Delete, "what no record holds");
        let (action, reason) = manifest_action(&p, Q, &shared);
        assert_eq!(action, Action::Keep, "the live record still holds it");
        assert!(reason.contains("run b"), "{reason}");
        assert_eq!(manifest_action(&p, Q, &live).0, Action::Keep);
        assert_eq!(manifest_action(&p, Q, &hand).0, Action::Keep, "a tag regsweep did not write keeps its image");
        assert_eq!(tag_action(&p, Q, "hand-pushed").0, Action::Keep);
        assert_eq!(tag_action(&p, Q, &manifest_tag(&shared)).0, Action::Keep);
        assert_eq!(tag_action(&p, Q, "run-a").0, Action::Delete);
        // Counted apart from the policy's own deletions, and out of the limits.
        assert_eq!(p.summary.tags_deleted, 1, "app:v1 only");
        let q = p.summary.quarantine.as_ref().unwrap();
        assert_eq!((q.expiring_records, q.expiring_manifests, q.held_records), (1, 3, 1), "{q:?}");
        assert!(q.expiring_bytes > 0 && q.keep_for.is_none());
        assert_eq!(p.largest(5), vec![("app".to_string(), 1)]);
        // The record goes before what it names.
        let deletions = p.deletions();
        let first_q = deletions.iter().find(|d| d.repository == Q).unwrap();
        assert_eq!(first_q.digest, expired);
    }

    #[test]
    fn quarantining_frees_nothing_now_and_keeps_what_it_takes_in_again() {
        let (mut reg, [only_expired, ..]) = registry();
        // app deletes the very image the expired record held: it enters the quarantine again.
        let again = reg.snap.repositories[Q].manifests[&only_expired].clone();
        reg.repo("app").manifests.insert(only_expired.clone(), again);
        let off = plan(&policy(false), &reg.snap, &[], now());
        let on = plan(&policy(true), &reg.snap, &[], now());
        assert_eq!(manifest_action(&off, Q, &only_expired).0, Action::Delete);
        let (action, reason) = manifest_action(&on, Q, &only_expired);
        assert_eq!((action, reason.as_str()), (Action::Keep, "quarantined again by this run"));
        let q = on.summary.quarantine.as_ref().unwrap();
        assert_eq!(q.keep_for.as_deref(), Some("7d"));
        assert_eq!(q.expires_at, Some(now() + Duration::days(7)));
        assert_eq!(q.entering_manifests, 2, "app:v1 and the untagged image");
        assert!(q.entering_bytes > 0);
        assert!(on.summary.estimate.bytes_freed < off.summary.estimate.bytes_freed, "what enters the quarantine is not freed");
        assert_eq!(on.summary.estimate.bytes_freed, q.expiring_bytes + on.summary.estimate.bytes_already_unreferenced, "only expiry frees");
        assert_eq!(repository_for("app"), Q);
    }

    #[test]
    fn an_unreadable_quarantine_is_kept_whole() {
        let (mut reg, [only_expired, ..]) = registry();
        reg.repo(Q).unreadable.push("_manifests/tags/run-c".into());
        let p = plan(&policy(false), &reg.snap, &[], now());
        assert!(p.repository(Q).unwrap().manifests.iter().all(|m| m.action == Action::Keep));
        assert!(manifest_action(&p, Q, &only_expired).1.contains("unreadable"));
    }
}

#[test]
fn a_plan_listing_only_its_deletions_counts_ids_and_limits_the_same() {
    let mut reg = Reg::new();
    for repo in ["app", "tools/cli", "untouched/x"] {
        for (i, age) in [1, 5, 9, 20, 40, 80].into_iter().enumerate() {
            reg.tagged(repo, &format!("v{i}"), age);
        }
        let shared = reg.tagged(repo, "stable", 100);
        reg.tag(repo, "old-alias", &shared, 100);
        reg.image(repo, &format!("{repo}-untagged"), 60);
    }
    let rules = vec![rule(|r| {
        r.repositories = vec!["app".into(), "tools/**".into()];
        r.keep_latest = Some(3);
        r.untagged = UntaggedAction::Delete;
    })];
    let policy = compile(&RegistryCleanupPolicySpec { rules: rules.clone(), ..Default::default() }).unwrap();
    let full = run(&reg, rules, &["app:v4"]);
    let protections = vec![Protection::in_use(ProtectedRef::parse("app:v4").unwrap())];
    let planner = Planner::new(&policy, &protections, now(), true);
    let slim = plan_with(&planner, &reg.snap, |r| planner.decide(r).only_deletions());

    assert!(full.summary.tags_deleted > 0 && full.summary.manifests_deleted > 0, "the case deletes something");
    let listed = |p: &Plan| p.repositories.iter().map(|r| r.tags.len() + r.manifests.len()).sum::<usize>();
    assert!(listed(&slim) < listed(&full), "kept decisions are left out");
    assert_eq!(slim.id, full.id);
    assert_eq!(serde_json::to_value(&slim.summary).unwrap(), serde_json::to_value(&full.summary).unwrap());
    assert_eq!(slim.deletions(), full.deletions());
    assert_eq!(slim.largest(5), full.largest(5));
    for percent in [10, 40, 90] {
        let limits = crate::policy::spec::Limits { max_deleted_percent: Some(percent), ..Default::default() };
        let (a, b) = (limits::check(&limits, &slim).err(), limits::check(&limits, &full).err());
        assert_eq!(a.map(|o| o.to_string()), b.map(|o| o.to_string()), "maxDeletedPercent {percent}");
    }
    for r in &slim.repositories {
        assert!(r.manifests.iter().all(|m| m.action == Action::Delete));
        assert_eq!(r.tag_count(), full.repository(&r.name).unwrap().tags.len());
    }
}
