//! What the README says must happen, computed from the generated model and policy — never
//! from the planner's code or output. Where the README leaves a choice open, the comment says
//! which reading is taken and where it was looked up (src/plan/decide.rs).
//!
//! The README's rules, as used here:
//! - the first rule whose `repositories` match and `exclude` does not governs a repository;
//!   a repository no rule matches is left alone;
//! - an ordinary tag matching `keepTags` is kept; with `deleteTags`, a tag matching none of
//!   them is kept; without keepLatest/keepWithin, tags are kept; otherwise a candidate is kept
//!   when among the newest `keepLatest` candidates (by push time) or pushed within `keepWithin`;
//! - a protected reference always wins (by tag, tag glob, digest, bare repository; cosign tags
//!   too — issue 9 §1.3);
//! - whatever the rules say, a manifest named by a kept tag stays (every tag on it stays:
//!   deleting a manifest deletes all its tags), a child of a kept index stays, a signature or
//!   referrer of a kept manifest stays; cosign tags follow their subject and are never counted
//!   by keepLatest;
//! - untagged manifests: deleted only with `untagged: Delete` and older than the grace period,
//!   except that children of a deleted index (and referrers of a deleted manifest) go with it
//!   unless younger than the grace period; a repository holding a manifest that cannot be read
//!   keeps all its untagged manifests;
//! - damaged storage (issue 9 §1.1): a repository whose tags cannot be proven deletes nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use regsweep::digest::Digest;

use super::matching::{cosign_subject, tag_pattern};
use super::model::{Kind, Model, RepoM};
use super::policygen::{GenPolicy, GenRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Keep,
    Delete,
    /// The README allows both (a tie in push times at the keepLatest cut).
    Either,
}

#[derive(Clone, Debug)]
pub struct Expected {
    pub want: Want,
    /// Why, in the checker's words, for failure messages.
    pub why: String,
}

#[derive(Clone, Debug, Default)]
pub struct RepoExpect {
    pub rule: Option<usize>,
    /// Storage damage in this repository: everything is kept with this reason prefix.
    pub damaged: bool,
    pub tags: BTreeMap<String, Expected>,
    pub manifests: BTreeMap<Digest, Expected>,
    /// Tags whose keep comes from a protected reference alone: any of these sources must be
    /// named in the reason.
    pub protected_tags: BTreeMap<String, Vec<String>>,
    /// Tags the rules delete whose manifest a kept sibling tag keeps: the reason must say
    /// it shares its digest.
    pub sharing: BTreeSet<String>,
}

/// The checker's verdict for a whole registry.
#[derive(Clone, Debug, Default)]
pub struct Expectation {
    pub repos: BTreeMap<String, RepoExpect>,
}

fn keep(why: impl Into<String>) -> Expected {
    Expected { want: Want::Keep, why: why.into() }
}

pub fn expect(model: &Model, policy: &GenPolicy, refs: &[GenRef], now: DateTime<Utc>, damaged: &BTreeSet<String>) -> Expectation {
    let mut out = Expectation::default();
    for repo in model.repos.values() {
        out.repos.insert(repo.name.clone(), expect_repo(repo, policy, refs, now, damaged.contains(&repo.name)));
    }
    out
}

fn expect_repo(repo: &RepoM, policy: &GenPolicy, refs: &[GenRef], now: DateTime<Utc>, damaged: bool) -> RepoExpect {
    let rule_index = policy.rule_for(&repo.name);
    let mut e = RepoExpect { rule: rule_index, damaged, ..Default::default() };
    let everything = |e: &mut RepoExpect, why: &str| {
        for t in repo.tags.keys() {
            e.tags.insert(t.clone(), keep(why));
        }
        for d in repo.manifests.keys() {
            e.manifests.insert(d.clone(), keep(why));
        }
    };
    if damaged {
        everything(&mut e, "its repository has unreadable entries");
        return e;
    }
    let Some(ri) = rule_index else {
        everything(&mut e, "no rule matches the repository");
        return e;
    };
    let rule = &policy.rules[ri];
    let hosts = &policy.hosts;
    let age_secs = |t: DateTime<Utc>| (now - t).num_milliseconds() as f64 / 1000.0;

    // 1. Ordinary tags: what the rule intends (Keep / Delete / Either), protection winning.
    // Cosign tags are left out: the README says they follow their subject and are never
    // counted by keepLatest, but not whether keepTags/deleteTags apply to them; decide.rs sets
    // them apart before any tag pattern is looked at, and so does the checker. (The generated
    // keepTags never match a cosign tag, so only deleteTags could tell the readings apart.)
    // Ties in push time at the keepLatest cut are `Either`: the README names no tie-break.
    let mut intent: BTreeMap<&str, (Want, String)> = BTreeMap::new();
    let mut candidates = Vec::new();
    for t in repo.tags.values().filter(|t| cosign_subject(&t.name).is_none()) {
        if let Some(p) = rule.keep_tags.iter().find(|p| tag_pattern(p, &t.name)) {
            intent.insert(&t.name, (Want::Keep, format!("keepTags {p}")));
        } else if rule.delete_tags.as_ref().is_some_and(|l| !l.iter().any(|p| tag_pattern(p, &t.name))) {
            intent.insert(&t.name, (Want::Keep, "not matched by deleteTags".into()));
        } else if !rule.retains() {
            intent.insert(&t.name, (Want::Keep, "the rule sets neither keepLatest nor keepWithin".into()));
        } else {
            candidates.push(t);
        }
    }
    for t in &candidates {
        let newer = candidates.iter().filter(|c| c.pushed > t.pushed).count();
        let ties = candidates.iter().filter(|c| c.name != t.name && c.pushed == t.pushed).count();
        let latest = match rule.keep_latest {
            Some(n) if newer + ties < n as usize => Want::Keep,
            Some(n) if newer < n as usize => Want::Either,
            _ => Want::Delete,
        };
        // "pushed within 30d": taken as inclusive (decide.rs keeps age <= keepWithin).
        let within = rule.keep_within.as_ref().is_some_and(|(_, s)| age_secs(t.pushed) <= *s as f64);
        let i = if within {
            (Want::Keep, "pushed within keepWithin".to_string())
        } else {
            (latest, format!("{newer} newer candidates, keepLatest {:?}", rule.keep_latest))
        };
        intent.insert(&t.name, i);
    }
    // Protection: any tag, ordinary or cosign, a reference names.
    let mut protected_tag: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for t in repo.tags.values() {
        let by: Vec<String> =
            refs.iter().filter(|r| r.protects_tag(hosts, &repo.name, &t.name, &t.digest)).map(|r| r.text.clone()).collect();
        if !by.is_empty() {
            protected_tag.insert(&t.name, by);
        }
    }

    // 2. Roots of what must stay (and of what may stay, for ties).
    let has_unknown = repo.has_unknown();
    let grace = rule.grace_secs() as f64;
    let child_of: BTreeSet<&Digest> = repo.manifests.values().flat_map(|m| m.children()).collect();
    let mut must: BTreeMap<Digest, String> = BTreeMap::new();
    let mut may: BTreeSet<Digest> = BTreeSet::new();
    for m in repo.manifests.values() {
        let d = &m.digest;
        let tags = repo.tags_on(d);
        let ordinary: Vec<&str> = tags.iter().copied().filter(|t| cosign_subject(t).is_none()).collect();
        let young = age_secs(m.pushed) < grace; // README: "untagged manifests younger than this stay"
        let mut root = |why: String, must_keep: bool| {
            if must_keep {
                must.entry(d.clone()).or_insert(why);
            } else {
                may.insert(d.clone());
            }
        };
        if let Some(r) = refs.iter().find(|r| r.protects_manifest(hosts, &repo.name, d)) {
            root(format!("protected by digest ({})", r.text), true);
        }
        if let Some(t) = tags.iter().find(|t| protected_tag.contains_key(**t)) {
            root(format!("tag {t} is protected"), true);
        }
        for t in &ordinary {
            match intent[t].0 {
                Want::Keep => root(format!("tag {t} is kept ({})", intent[t].1), true),
                Want::Either => root(format!("tag {t} may be kept"), false),
                Want::Delete => {}
            }
        }
        if !tags.is_empty() && ordinary.is_empty() {
            // Only cosign tags: they follow their subject. A subject not in the repository is
            // not being deleted, so the signature stays (README: "deleted with it"; decide.rs
            // keeps these as "not in this repository").
            let subjects_here = tags.iter().any(|t| repo.manifests.keys().any(|k| k.hex() == cosign_subject(t).unwrap()));
            if !subjects_here {
                root("signature of a manifest not in this repository".into(), true);
            }
        }
        if tags.is_empty() {
            // Untagged. Children of an index and referrers of a manifest here follow it
            // (README: "Children of a deleted index go with it (unless younger than the grace
            // period or otherwise kept)"; referrers are taken to follow their subject like
            // cosign signatures do, as DESIGN.md asks: "Delete a signature together with its
            // subject"); the rest are the rule's `untagged` business.
            let follower = child_of.contains(d) || m.subject.as_ref().is_some_and(|s| repo.manifests.contains_key(s));
            if has_unknown {
                root("untagged, in a repository with an unreadable manifest".into(), true);
            } else if young {
                root("untagged for less than the grace period".into(), true);
            } else if !follower && !rule.untagged_delete() {
                root("untagged, and the rule keeps untagged manifests".into(), true);
            }
        }
    }
    may.extend(must.keys().cloned());

    // 3. Keep spreads: index -> children, manifest -> referrers and cosign signatures.
    let spread = |roots: Vec<Digest>| -> BTreeSet<Digest> {
        let mut kept: BTreeSet<Digest> = BTreeSet::new();
        let mut work = roots;
        while let Some(d) = work.pop() {
            if !kept.insert(d.clone()) {
                continue;
            }
            let Some(m) = repo.manifests.get(&d) else { continue };
            work.extend(m.children().iter().filter(|c| repo.manifests.contains_key(*c)).cloned());
            work.extend(repo.manifests.values().filter(|r| r.subject.as_ref() == Some(&d)).map(|r| r.digest.clone()));
            work.extend(repo.tags.values().filter(|t| cosign_subject(&t.name) == Some(&*d.hex())).map(|t| t.digest.clone()));
        }
        kept
    };
    let must_set = spread(must.keys().cloned().collect());
    let may_set = spread(may.iter().cloned().collect());
    for m in repo.manifests.values() {
        let d = &m.digest;
        let x = if must_set.contains(d) {
            keep(must.get(d).cloned().unwrap_or_else(|| "reached from a kept manifest (child, referrer or signature)".into()))
        } else if may_set.contains(d) {
            Expected { want: Want::Either, why: "kept only if a tied keepLatest candidate is".into() }
        } else {
            Expected { want: Want::Delete, why: delete_why(repo, m, &intent) }
        };
        e.manifests.insert(d.clone(), x);
    }
    // 4. A tag goes exactly when its manifest goes.
    for t in repo.tags.values() {
        let m = &e.manifests[&t.digest];
        let why = match (m.want, intent.get(t.name.as_str())) {
            (Want::Keep, Some((Want::Keep, w))) => w.clone(),
            (_, _) => m.why.clone(),
        };
        e.tags.insert(t.name.clone(), Expected { want: m.want, why });
        let rules_delete = cosign_subject(&t.name).is_none() && intent.get(t.name.as_str()).is_some_and(|i| i.0 == Want::Delete);
        // The reason must name the protection when nothing else keeps the tag: the rules
        // delete it, or it is a cosign tag whose subject (here) is not kept.
        let cosign_orphaned =
            cosign_subject(&t.name).is_some_and(|hex| repo.manifests.keys().any(|k| k.hex() == hex && !must_set.contains(k)));
        if let Some(by) = protected_tag.get(t.name.as_str())
            && (rules_delete || cosign_orphaned)
            && m.want == Want::Keep
        {
            e.protected_tags.insert(t.name.clone(), by.clone());
        }
        let sibling_kept = repo.tags_on(&t.digest).iter().any(|s| *s != t.name && intent.get(s).is_some_and(|i| i.0 == Want::Keep));
        if rules_delete && !protected_tag.contains_key(t.name.as_str()) && sibling_kept {
            e.sharing.insert(t.name.clone());
        }
    }
    e
}

fn delete_why(repo: &RepoM, m: &super::model::Mf, intent: &BTreeMap<&str, (Want, String)>) -> String {
    let tags = repo.tags_on(&m.digest);
    if let Some(t) = tags.first() {
        match intent.get(t) {
            Some((_, w)) => format!("every tag on it is deleted ({t}: {w})"),
            None => "signature of a deleted manifest".into(),
        }
    } else if m.kind == Kind::Unknown {
        "untagged unreadable manifest".into()
    } else {
        "untagged (child/referrer of a deleted manifest, or old and untagged: Delete)".into()
    }
}
