//! The decisions for one repository. Three passes:
//! 1. every ordinary tag gets an intent from its rule (keepTags, deleteTags, keepLatest,
//!    keepWithin), rescued by protected references;
//! 2. keep spreads through the manifest graph from every kept root: an index keeps its
//!    children, an image keeps its signatures and other referrers;
//! 3. what nothing keeps is deleted; a tag goes only when its manifest goes (deleting by digest
//!    removes every tag on it), so a tag sharing its digest with a kept tag stays.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use super::signature::signature_subject;
use super::{Action, ManifestDecision, Protection, RepositoryPlan, TagDecision};
use crate::digest::Digest;
use crate::media;
use crate::policy::{CompiledRule, UntaggedAction};
use crate::storage::{Manifest, Repository};

/// Readable durations for reasons: `30d`, `12h`, `90m`.
pub fn fmt_duration(d: Duration) -> String {
    let m = d.num_minutes();
    if m != 0 && m % (24 * 60) == 0 {
        format!("{}d", m / (24 * 60))
    } else if m != 0 && m % 60 == 0 {
        format!("{}h", m / 60)
    } else if m != 0 {
        format!("{m}m")
    } else {
        format!("{}s", d.num_seconds())
    }
}

fn intent_of_ordinary_tags(
    rule: &CompiledRule,
    repo: &Repository,
    ordinary: &[&str],
    protections: &[Protection],
    now: DateTime<Utc>,
) -> HashMap<String, (Action, String)> {
    let mut intents = HashMap::new();
    let mut candidates = Vec::new();
    for &name in ordinary {
        let tag = &repo.tags[name];
        let reason = if let Some(p) = rule.keep_tags.iter().find(|p| p.is_match(name)) {
            Some(format!("matches keepTags {}", p.source()))
        } else if rule.delete_tags.as_ref().is_some_and(|list| !list.iter().any(|p| p.is_match(name))) {
            Some("not matched by deleteTags".to_string())
        } else if !rule.retains_tags() {
            Some(format!("rule {} sets neither keepLatest nor keepWithin", rule.index))
        } else if tag.pushed.is_none() {
            Some("push time unknown".to_string())
        } else {
            None
        };
        match reason {
            Some(r) => {
                intents.insert(name.to_string(), (Action::Keep, r));
            }
            None => candidates.push(tag),
        }
    }
    // Newest first; the name breaks ties so the plan is deterministic.
    candidates.sort_by(|a, b| b.pushed.cmp(&a.pushed).then_with(|| b.name.cmp(&a.name)));
    for (rank, tag) in candidates.iter().enumerate() {
        let age = now - tag.pushed.expect("candidates have a push time");
        let newest = rule.keep_latest.filter(|&n| rank < n);
        let within = rule.keep_within.filter(|&d| age <= d);
        let intent = match (newest, within, rule.keep_latest, rule.keep_within) {
            (Some(n), _, _, _) => (Action::Keep, format!("among the newest {n}")),
            (None, Some(d), _, _) => (Action::Keep, format!("pushed within {}", fmt_duration(d))),
            (None, None, Some(n), Some(d)) => {
                (Action::Delete, format!("not among the newest {n} and pushed more than {} ago", fmt_duration(d)))
            }
            (None, None, Some(n), None) => (Action::Delete, format!("not among the newest {n}")),
            (None, None, None, Some(d)) => (Action::Delete, format!("pushed more than {} ago", fmt_duration(d))),
            (None, None, None, None) => unreachable!("candidates exist only when retention is active"),
        };
        intents.insert(tag.name.clone(), intent);
    }
    // Protection overrides every rule, but does not take a keepLatest slot.
    for (name, intent) in intents.iter_mut() {
        if intent.0 == Action::Delete {
            let digest = &repo.tags[name].digest;
            if let Some(p) = protections.iter().find(|p| p.reference.matches(&repo.name, Some(name), digest)) {
                *intent = (Action::Keep, format!("{}: {}", p.label, p.reference.source));
            }
        }
    }
    intents
}

pub(super) fn decide_repository(
    rule: Option<&CompiledRule>,
    repo: &Repository,
    protections: &[Protection],
    now: DateTime<Utc>,
    sees_untagged: bool,
) -> RepositoryPlan {
    let Some(rule) = rule else {
        return keep_everything(repo, "no rule matches this repository");
    };
    if let Some(path) = repo.unreadable.first() {
        // What the tags point at cannot be proven: a manifest that looks untagged may not be.
        let more = if repo.unreadable.len() > 1 { format!(" (and {} more)", repo.unreadable.len() - 1) } else { String::new() };
        let mut plan = keep_everything(repo, &format!("repository has unreadable entries: {path}{more}"));
        plan.rule = Some(rule.index);
        return plan;
    }
    let (signature_tags, ordinary): (Vec<&str>, Vec<&str>) =
        repo.tags.keys().map(String::as_str).partition(|t| signature_subject(t).is_some());
    let intents = intent_of_ordinary_tags(rule, repo, &ordinary, protections, now);

    // The manifest graph of this repository.
    let mut tags_on: HashMap<&Digest, Vec<&str>> = HashMap::new();
    for (name, tag) in &repo.tags {
        tags_on.entry(&tag.digest).or_default().push(name);
    }
    let mut parents: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for m in repo.manifests.values() {
        for child in m.children() {
            parents.entry(child).or_default().push(&m.digest);
        }
        if let Some(subject) = &m.subject {
            referrers.entry(subject).or_default().push(&m.digest);
        }
    }
    let mut signatures_of: HashMap<Digest, Vec<&Digest>> = HashMap::new();
    for name in &signature_tags {
        signatures_of.entry(signature_subject(name).expect("partitioned")).or_default().push(&repo.tags[*name].digest);
    }
    let unreadable = repo.manifests.values().find(|m| m.is_unknown()).map(|m| m.digest.clone());
    let grace = fmt_duration(rule.untagged_grace);
    let young = |m: &Manifest| m.pushed.is_none_or(|p| now - p < rule.untagged_grace);

    let mut kept: HashMap<&Digest, String> = HashMap::new();
    let mut deletable: HashMap<&Digest, String> = HashMap::new();
    let mut weak: Vec<(&Digest, String)> = Vec::new();
    for m in repo.manifests.values() {
        let d = &m.digest;
        let tags = tags_on.get(d).map(Vec::as_slice).unwrap_or(&[]);
        // A protected reference wins over every rule, by digest or by any tag on the manifest
        // (a signature tag included: it must not follow its subject out).
        let protected = protections
            .iter()
            .find(|p| p.reference.matches(&repo.name, None, d) || tags.iter().any(|t| p.reference.matches(&repo.name, Some(t), d)));
        if let Some(p) = protected {
            kept.insert(d, format!("{}: {}", p.label, p.reference.source));
        } else if let Some(t) = tags.iter().find(|t| intents.get(**t).is_some_and(|i| i.0 == Action::Keep)) {
            kept.insert(d, format!("tag {t} is kept ({})", intents[*t].1));
        } else if tags.iter().any(|t| intents.contains_key(*t)) {
            let list: Vec<&str> = tags.iter().copied().filter(|t| intents.contains_key(*t)).collect();
            deletable.insert(d, format!("every tag on it is deleted ({})", list.join(", ")));
        } else if !tags.is_empty() {
            // Only signature tags point at it: it follows its subject.
            let subject = signature_subject(tags[0]).expect("signature tag");
            if repo.manifests.contains_key(&subject) {
                deletable.insert(d, format!("signature of deleted image {}", subject.short()));
            } else {
                kept.insert(d, format!("signature of {}, which is not in this repository", subject.short()));
            }
        } else if parents.contains_key(d) || m.subject.as_ref().is_some_and(|s| repo.manifests.contains_key(s)) {
            // A child or referrer follows what refers to it; grace and caution still apply.
            let what = if parents.contains_key(d) { "child of a deleted index" } else { "refers to a deleted manifest" };
            if young(m) {
                weak.push((d, format!("untagged for less than {grace}")));
            } else if let Some(u) = &unreadable {
                weak.push((d, format!("untagged, and unreadable manifest {} may reference it", u.short())));
            }
            deletable.insert(d, what.to_string());
        } else if let (Some(run), None) = (repo.approved.get(d), &unreadable) {
            // Finishing an interrupted run: its approval stands, unless something above keeps it.
            deletable.insert(d, format!("approved for deletion by interrupted run {run}"));
        } else if !sees_untagged || rule.untagged == UntaggedAction::Keep {
            kept.insert(d, "untagged; the rule keeps untagged manifests".to_string());
        } else if let Some(u) = &unreadable {
            kept.insert(d, format!("untagged, and unreadable manifest {} may reference it", u.short()));
        } else if young(m) {
            kept.insert(d, format!("untagged for less than {grace}"));
        } else {
            deletable.insert(d, format!("untagged for more than {grace}"));
        }
    }

    // Spread keep through the graph: strong reasons first, then the weak ones.
    let roots: Vec<&Digest> = kept.keys().copied().collect();
    spread(repo, &referrers, &signatures_of, &mut kept, roots);
    let mut weak_roots = Vec::new();
    for (d, why) in weak {
        if !kept.contains_key(d) {
            kept.insert(d, why);
            weak_roots.push(d);
        }
    }
    spread(repo, &referrers, &signatures_of, &mut kept, weak_roots);

    let manifests: Vec<ManifestDecision> = repo
        .manifests
        .values()
        .map(|m| {
            let (action, reason) = match kept.get(&m.digest) {
                Some(r) => (Action::Keep, r.clone()),
                None => (Action::Delete, deletable.get(&m.digest).cloned().expect("every manifest is kept or deletable")),
            };
            let delete_rank = if tags_on.get(&m.digest).is_some_and(|t| t.iter().all(|t| signature_subject(t).is_some()))
                || (m.subject.is_some() && !parents.contains_key(&m.digest))
            {
                0
            } else if media::is_index(&m.media_type) {
                1
            } else if parents.contains_key(&m.digest) {
                3
            } else {
                2
            };
            ManifestDecision {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                pushed: m.pushed,
                tags: tags_on.get(&m.digest).map(|t| t.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
                action,
                reason,
                delete_rank,
            }
        })
        .collect();
    let by_digest: BTreeMap<&Digest, &ManifestDecision> = manifests.iter().map(|m| (&m.digest, m)).collect();
    let tags = repo
        .tags
        .values()
        .map(|tag| {
            let (action, reason) = match by_digest.get(&tag.digest) {
                None => (Action::Keep, format!("its manifest {} is missing from the repository", tag.digest.short())),
                Some(m) if m.action == Action::Delete => match intents.get(&tag.name) {
                    Some(intent) => intent.clone(),
                    None => (Action::Delete, m.reason.clone()),
                },
                Some(m) => match intents.get(&tag.name) {
                    Some((Action::Keep, why)) => (Action::Keep, why.clone()),
                    Some((Action::Delete, _)) => {
                        let sibling = m.tags.iter().find(|t| intents.get(t.as_str()).is_some_and(|i| i.0 == Action::Keep));
                        match sibling {
                            Some(s) => (Action::Keep, format!("shares its digest with kept tag {s}")),
                            None => (Action::Keep, format!("its manifest is kept: {}", m.reason)),
                        }
                    }
                    None => (Action::Keep, m.reason.clone()),
                },
            };
            TagDecision { tag: tag.name.clone(), digest: tag.digest.clone(), pushed: tag.pushed, action, reason }
        })
        .collect();
    RepositoryPlan { name: repo.name.clone(), rule: Some(rule.index), tags, manifests, left_out: Default::default() }
}

/// Keeps, transitively, what the manifests in `work` reference or what refers to them.
fn spread<'a>(
    repo: &'a Repository,
    referrers: &HashMap<&'a Digest, Vec<&'a Digest>>,
    signatures_of: &HashMap<Digest, Vec<&'a Digest>>,
    kept: &mut HashMap<&'a Digest, String>,
    mut work: Vec<&'a Digest>,
) {
    while let Some(d) = work.pop() {
        let Some(m) = repo.manifests.get(d) else { continue };
        let mut next: Vec<(&Digest, String)> = Vec::new();
        next.extend(m.children().iter().map(|c| (c, format!("child of kept index {}", d.short()))));
        next.extend(referrers.get(d).into_iter().flatten().map(|r| (*r, format!("refers to kept manifest {}", d.short()))));
        next.extend(signatures_of.get(d).into_iter().flatten().map(|s| (*s, format!("signature of kept image {}", d.short()))));
        for (digest, why) in next {
            if let Some((k, _)) = repo.manifests.get_key_value(digest)
                && !kept.contains_key(k)
            {
                kept.insert(k, why);
                work.push(k);
            }
        }
    }
}

pub(super) fn keep_everything(repo: &Repository, reason: &str) -> RepositoryPlan {
    let mut tags_on: HashMap<&Digest, Vec<String>> = HashMap::new();
    for tag in repo.tags.values() {
        tags_on.entry(&tag.digest).or_default().push(tag.name.clone());
    }
    RepositoryPlan {
        name: repo.name.clone(),
        rule: None,
        tags: repo
            .tags
            .values()
            .map(|t| TagDecision {
                tag: t.name.clone(),
                digest: t.digest.clone(),
                pushed: t.pushed,
                action: Action::Keep,
                reason: reason.to_string(),
            })
            .collect(),
        manifests: repo
            .manifests
            .values()
            .map(|m| ManifestDecision {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                pushed: m.pushed,
                tags: tags_on.remove(&m.digest).unwrap_or_default(),
                action: Action::Keep,
                reason: reason.to_string(),
                delete_rank: 0,
            })
            .collect(),
        left_out: Default::default(),
    }
}
