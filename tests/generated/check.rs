//! Compares a plan with what the README demands (the [`Expectation`]), and checks the plan's
//! own consistency: every tag and manifest decided once, a tag deleted exactly with its
//! manifest, the summary adding up, and the deletion order the README promises (signatures
//! and referrers, then indexes, then images, then index children).

use std::collections::{BTreeMap, BTreeSet};

use regsweep::digest::Digest;
use regsweep::plan::{Action, Plan};

use super::model::Model;
use super::oracle::{Expectation, Want};

pub const UNREADABLE_PREFIX: &str = "repository has unreadable entries: ";

fn verb(a: Action) -> &'static str {
    match a {
        Action::Keep => "kept",
        Action::Delete => "deleted",
    }
}

fn ok(want: Want, got: Action) -> bool {
    matches!((want, got), (Want::Either, _) | (Want::Keep, Action::Keep) | (Want::Delete, Action::Delete))
}

/// Every way the plan departs from the expectation, one line each.
pub fn check_plan(plan: &Plan, model: &Model, expect: &Expectation) -> Vec<String> {
    let mut v = Vec::new();
    let planned: BTreeSet<&str> = plan.repositories.iter().map(|r| r.name.as_str()).collect();
    let modelled: BTreeSet<&str> = model.repos.keys().map(String::as_str).collect();
    if planned != modelled {
        v.push(format!("the plan covers repositories {planned:?}, the registry has {modelled:?}"));
    }
    for rp in &plan.repositories {
        let (Some(repo), Some(ex)) = (model.repos.get(&rp.name), expect.repos.get(&rp.name)) else { continue };
        let name = &rp.name;
        // Coverage: each tag and manifest exactly once.
        let tag_names: Vec<&str> = rp.tags.iter().map(|t| t.tag.as_str()).collect();
        // (A damaged repository's unreadable tag cannot be in the plan.)
        if !ex.damaged
            && (tag_names.len() != tag_names.iter().collect::<BTreeSet<_>>().len()
                || tag_names.iter().copied().collect::<BTreeSet<_>>() != repo.tags.keys().map(String::as_str).collect())
        {
            v.push(format!("{name}: the plan's tags {tag_names:?} are not the repository's {:?}", repo.tags.keys().collect::<Vec<_>>()));
        }
        let digests: BTreeSet<&Digest> = rp.manifests.iter().map(|m| &m.digest).collect();
        if digests.len() != rp.manifests.len() || digests != repo.manifests.keys().collect() {
            v.push(format!(
                "{name}: the plan's manifests are not the repository's ({} planned, {} stored)",
                rp.manifests.len(),
                repo.manifests.len()
            ));
        }
        if ex.rule.is_none() && !ex.damaged && rp.rule.is_some() {
            v.push(format!("{name}: no rule matches it, but the plan applies rule {:?}", rp.rule));
        }
        if ex.rule.is_some() && !ex.damaged && rp.rule != ex.rule {
            v.push(format!("{name}: rule {:?} governs it (first match), the plan applies {:?}", ex.rule, rp.rule));
        }
        let by_digest: BTreeMap<&Digest, Action> = rp.manifests.iter().map(|m| (&m.digest, m.action)).collect();
        for t in &rp.tags {
            if t.reason.trim().is_empty() {
                v.push(format!("{name}:{} has an empty reason", t.tag));
            }
            if ex.damaged && (t.action != Action::Keep || !t.reason.starts_with(UNREADABLE_PREFIX)) {
                v.push(format!(
                    "{name}:{} {} with reason {:?}; a repository with unreadable entries keeps everything with reason \"{UNREADABLE_PREFIX}<path>\"",
                    t.tag,
                    verb(t.action),
                    t.reason
                ));
                continue;
            }
            if let Some(x) = ex.tags.get(&t.tag)
                && !ok(x.want, t.action)
            {
                v.push(format!(
                    "{name}:{} ({}) {} — must be {:?}: {}; plan says: {}",
                    t.tag,
                    t.digest.short(),
                    verb(t.action),
                    x.want,
                    x.why,
                    t.reason
                ));
            }
            if let Some(by) = ex.protected_tags.get(&t.tag)
                && t.action == Action::Keep
                && !by.iter().any(|src| t.reason.contains(src.as_str()))
            {
                v.push(format!("{name}:{} is kept by protected reference(s) {by:?}, but its reason does not say so: {}", t.tag, t.reason));
            }
            if ex.sharing.contains(&t.tag) && t.action == Action::Keep && !t.reason.contains("shares its digest") {
                v.push(format!(
                    "{name}:{} is kept because a kept tag shares its digest, but its reason does not say so: {}",
                    t.tag, t.reason
                ));
            }
            // Deleting by digest removes every tag on it: a tag and its manifest go together.
            if let Some(m) = by_digest.get(&t.digest)
                && *m != t.action
            {
                v.push(format!("{name}:{} is {} but its manifest {} is {}", t.tag, verb(t.action), t.digest.short(), verb(*m)));
            }
        }
        for m in &rp.manifests {
            if m.reason.trim().is_empty() {
                v.push(format!("{name}@{} has an empty reason", m.digest.short()));
            }
            if ex.damaged {
                if m.action != Action::Keep || !m.reason.starts_with(UNREADABLE_PREFIX) {
                    v.push(format!(
                        "{name}@{} {} with reason {:?}; a repository with unreadable entries keeps everything with reason \"{UNREADABLE_PREFIX}<path>\"",
                        m.digest.short(),
                        verb(m.action),
                        m.reason
                    ));
                }
                continue;
            }
            if let Some(x) = ex.manifests.get(&m.digest)
                && !ok(x.want, m.action)
            {
                v.push(format!(
                    "{name}@{} {} — must be {:?}: {}; plan says: {}",
                    m.digest.short(),
                    verb(m.action),
                    x.want,
                    x.why,
                    m.reason
                ));
            }
        }
        if ex.damaged {
            let reasons: Vec<&str> =
                rp.tags.iter().map(|t| t.reason.as_str()).chain(rp.manifests.iter().map(|m| m.reason.as_str())).collect();
            if let Some(r) = reasons.iter().find(|r| r.starts_with(UNREADABLE_PREFIX))
                && !r.contains(&format!("{name}/_manifests"))
            {
                v.push(format!("{name}: the unreadable-entries reason names no path in the repository: {r}"));
            }
        }
    }
    v.extend(check_order_and_summary(plan, model));
    v
}

fn check_order_and_summary(plan: &Plan, model: &Model) -> Vec<String> {
    let mut v = Vec::new();
    let deletions = plan.deletions();
    let planned_deletes: usize = plan.repositories.iter().map(|r| r.manifests.iter().filter(|m| m.action == Action::Delete).count()).sum();
    if deletions.len() != planned_deletes {
        v.push(format!("deletions() lists {} manifests, the plan deletes {planned_deletes}", deletions.len()));
    }
    if deletions.windows(2).any(|w| w[0].rank > w[1].rank) {
        v.push("deletions() is not in rank order".into());
    }
    let rank: BTreeMap<(&str, &Digest), u8> = deletions.iter().map(|d| ((d.repository.as_str(), &d.digest), d.rank)).collect();
    for d in &deletions {
        let Some(m) = model.repos.get(&d.repository).and_then(|r| r.manifests.get(&d.digest)) else { continue };
        let repo = &model.repos[&d.repository];
        // README: "signatures and referrers, then indexes, then images, then index children".
        // Within one of those groups (a signature of a signature, an index of indexes) the
        // README promises no order, so only a strictly earlier group is required.
        let is_referrer = |d: &Digest| {
            repo.manifests.get(d).is_some_and(|x| x.subject.is_some())
                || repo.tags_on(d).iter().any(|t| super::matching::cosign_subject(t).is_some())
        };
        for c in m.children().iter().filter(|c| !repo.manifests.get(*c).is_some_and(|x| x.is_index())) {
            if let Some(rc) = rank.get(&(d.repository.as_str(), c))
                && *rc <= d.rank
            {
                v.push(format!(
                    "{}: index {} (rank {}) is not deleted before its child {} (rank {rc})",
                    d.repository,
                    d.digest.short(),
                    d.rank,
                    c.short()
                ));
            }
        }
        // A referrer or signature goes before its subject.
        let subjects: Vec<Digest> = m
            .subject
            .iter()
            .cloned()
            .chain(
                repo.tags_on(&m.digest).iter().filter_map(|t| super::matching::cosign_subject(t)).filter_map(|h| Digest::from_hex(h).ok()),
            )
            .collect();
        for s in subjects.into_iter().filter(|s| !is_referrer(s)) {
            if let Some(rs) = rank.get(&(d.repository.as_str(), &s))
                && *rs <= d.rank
            {
                v.push(format!(
                    "{}: referrer {} (rank {}) is not deleted before its subject {} (rank {rs})",
                    d.repository,
                    d.digest.short(),
                    d.rank,
                    s.short()
                ));
            }
        }
    }
    let count = |f: &dyn Fn(&regsweep::plan::RepositoryPlan) -> usize| plan.repositories.iter().map(f).sum::<usize>();
    let s = &plan.summary;
    let tags_kept = count(&|r| r.tags.iter().filter(|t| t.action == Action::Keep).count());
    let tags_deleted = count(&|r| r.tags.iter().filter(|t| t.action == Action::Delete).count());
    let manifests_kept = count(&|r| r.manifests.iter().filter(|m| m.action == Action::Keep).count());
    if (s.tags_kept, s.tags_deleted, s.manifests_kept, s.manifests_deleted) != (tags_kept, tags_deleted, manifests_kept, planned_deletes) {
        v.push(format!("the summary does not add up: {s:?}"));
    }
    v
}
