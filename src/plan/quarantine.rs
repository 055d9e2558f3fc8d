//! Decisions for quarantine repositories (see [`crate::quarantine`]): no rule applies there.
//! A manifest stays while a live record needs it (the record's entries and, through indexes,
//! their children) or while this run quarantines it again; an expired record and whatever
//! only expired records needed are deleted. A tag that regsweep did not write keeps what it
//! points at. Anything unreadable keeps the whole repository.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Action, ManifestDecision, RepositoryPlan, TagDecision};
use crate::digest::Digest;
use crate::media;
use crate::quarantine::{self, Record};
use crate::storage::Repository;

/// What the quarantine holds and what this run changes in it, in the plan's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineSummary {
    /// How long this run's deletions stay restorable (`spec.quarantine.keepFor`); absent when
    /// quarantine is off (earlier runs' records still expire).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_for: Option<String>,
    /// When this run's deletions expire: the first sweep after frees them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Manifests this run moves into quarantine (children of deleted indexes included).
    pub entering_manifests: usize,
    /// Bytes those keep on disk until `expiresAt` (what the sweep would free without quarantine).
    pub entering_bytes: u64,
    /// Live records before this run (one per run and source repository).
    pub held_records: usize,
    /// Bytes only the quarantine keeps on disk before this run.
    pub held_bytes: u64,
    /// The earliest expiry among the live records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_expiry: Option<DateTime<Utc>>,
    /// Expired records this run deletes, the manifests that go with them, and the bytes freed.
    pub expiring_records: usize,
    pub expiring_manifests: usize,
    pub expiring_bytes: u64,
}

impl QuarantineSummary {
    /// One line for people: what this run takes in, what is held, what expiry frees now.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let (Some(keep_for), Some(at)) = (&self.keep_for, &self.expires_at) {
            parts.push(format!(
                "this run keeps {} deleted manifest(s) ({}) restorable for {keep_for}, until {}",
                self.entering_manifests,
                crate::units::bytes(self.entering_bytes),
                when(at)
            ));
        }
        if self.held_records > 0 {
            let next = self.next_expiry.map(|t| format!(", next expiry {}", when(&t))).unwrap_or_default();
            parts.push(format!("{} record(s) of earlier runs hold {}{next}", self.held_records, crate::units::bytes(self.held_bytes)));
        }
        if self.expiring_records > 0 {
            parts.push(format!(
                "{} expired record(s) and {} manifest(s) go now, freeing {}",
                self.expiring_records,
                self.expiring_manifests,
                crate::units::bytes(self.expiring_bytes)
            ));
        }
        format!("quarantine: {}", parts.join("; "))
    }
}

/// Every manifest a quarantine of `roots` links: the roots and, through indexes, their children.
pub fn closure<'a>(repo: &'a Repository, roots: impl IntoIterator<Item = &'a Digest>) -> BTreeSet<&'a Digest> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&Digest> = roots.into_iter().collect();
    while let Some(d) = todo.pop() {
        if !seen.insert(d) {
            continue;
        }
        if let Some(m) = repo.manifests.get(d) {
            todo.extend(m.children());
        }
    }
    seen
}

/// The quarantine repository of a source repository, and the manifests this plan moves
/// there (its deleted manifests with their children); None when it deletes nothing.
pub(super) fn incoming(repo: &Repository, decisions: &RepositoryPlan) -> Option<(String, BTreeSet<Digest>)> {
    let deleted = decisions.manifests.iter().filter(|m| m.action == Action::Delete).map(|m| &m.digest);
    let linked: BTreeSet<Digest> = closure(repo, deleted).into_iter().cloned().collect();
    (!linked.is_empty()).then(|| (quarantine::repository_for(&repo.name), linked))
}

fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(super) fn decide(repo: &Repository, incoming: Option<&BTreeSet<Digest>>, now: DateTime<Utc>) -> RepositoryPlan {
    if let Some(path) = repo.unreadable.first() {
        return super::decide::keep_everything(repo, &format!("quarantine repository with unreadable entries ({path}): kept whole"));
    }
    if let Some(m) = repo.manifests.values().find(|m| m.is_unknown()) {
        return super::decide::keep_everything(
            repo,
            &format!("quarantine repository with an unreadable manifest ({}): kept whole", m.digest.short()),
        );
    }
    // Why each needed manifest stays: the latest expiry among the records needing it.
    let mut held: HashMap<&Digest, (DateTime<Utc>, &str)> = HashMap::new();
    let mut roots: Vec<(&Digest, String)> = Vec::new();
    let mut expired: HashMap<&Digest, &Record> = HashMap::new();
    for tag in repo.tags.values() {
        match repo.records.get(&tag.digest) {
            Some(record) if record.is_expired(now) => {
                expired.insert(&tag.digest, record);
            }
            Some(record) => {
                for d in closure(repo, [&tag.digest]) {
                    let slot = held.entry(d).or_insert((record.expires_at, &record.run_id));
                    if record.expires_at > slot.0 {
                        *slot = (record.expires_at, &record.run_id);
                    }
                }
            }
            None if quarantine::is_manifest_tag(&tag.name, &tag.digest) => {}
            None => roots.push((
                &tag.digest,
                format!("tag {} is not a quarantine record regsweep can read here: kept with what it references", tag.name),
            )),
        }
    }
    let mut kept: HashMap<&Digest, String> =
        held.iter().map(|(d, (at, run))| (*d, format!("in quarantine until {} (run {run})", when(at)))).collect();
    for (root, reason) in roots {
        for d in closure(repo, [root]) {
            kept.entry(d).or_insert_with(|| reason.clone());
        }
    }
    for d in incoming.into_iter().flatten() {
        kept.entry(d).or_insert_with(|| "quarantined again by this run".into());
    }
    let has_parent: BTreeSet<&Digest> = repo.manifests.values().flat_map(|m| m.children()).collect();
    let mut tags_on: HashMap<&Digest, Vec<String>> = HashMap::new();
    for tag in repo.tags.values() {
        tags_on.entry(&tag.digest).or_default().push(tag.name.clone());
    }
    let manifests: Vec<ManifestDecision> = repo
        .manifests
        .values()
        .map(|m| {
            let (action, reason) = match (kept.get(&m.digest), expired.get(&m.digest)) {
                (_, Some(record)) => {
                    (Action::Delete, format!("quarantine record of run {} expired at {}", record.run_id, when(&record.expires_at)))
                }
                (Some(reason), None) => (Action::Keep, reason.clone()),
                (None, None) => (Action::Delete, "no live quarantine record holds it".to_string()),
            };
            // The record goes first, so an interrupted expiry never leaves one naming a
            // manifest that is gone; then indexes, then images, then index children.
            let delete_rank = if expired.contains_key(&m.digest) {
                0
            } else if media::is_index(&m.media_type) {
                1
            } else if has_parent.contains(&m.digest) {
                3
            } else {
                2
            };
            ManifestDecision {
                digest: m.digest.clone(),
                media_type: m.media_type.clone(),
                pushed: m.pushed,
                tags: tags_on.remove(&m.digest).unwrap_or_default(),
                action,
                reason,
                delete_rank,
            }
        })
        .collect();
    let by_digest: HashMap<&Digest, &ManifestDecision> = manifests.iter().map(|m| (&m.digest, m)).collect();
    let tags = repo
        .tags
        .values()
        .map(|t| {
            let (action, reason) = match by_digest.get(&t.digest) {
                Some(m) => (m.action, m.reason.clone()),
                None => (Action::Keep, format!("its manifest {} is missing from the repository", t.digest.short())),
            };
            TagDecision { tag: t.name.clone(), digest: t.digest.clone(), pushed: t.pushed, action, reason }
        })
        .collect();
    RepositoryPlan { name: repo.name.clone(), rule: None, tags, manifests, left_out: Default::default() }
}

/// The summary's quarantine part, from the decisions and the estimate's byte counts.
pub(super) fn summarize(
    held_repositories: &[&Repository],
    repositories: &[RepositoryPlan],
    incoming: &BTreeMap<String, BTreeSet<Digest>>,
    keep_for: Option<(chrono::Duration, DateTime<Utc>)>,
    bytes: super::estimate::QuarantineBytes,
    now: DateTime<Utc>,
) -> Option<QuarantineSummary> {
    let live: Vec<&Record> = held_repositories.iter().flat_map(|r| r.tags.values().filter_map(|t| r.records.get(&t.digest))).collect();
    let (expired, held): (Vec<&Record>, Vec<&Record>) = live.into_iter().partition(|r| r.is_expired(now));
    if keep_for.is_none() && expired.is_empty() && held.is_empty() {
        return None;
    }
    let expiring_manifests = repositories
        .iter()
        .filter(|r| quarantine::is_quarantine(&r.name))
        .flat_map(|r| &r.manifests)
        .filter(|m| m.action == Action::Delete)
        .count();
    Some(QuarantineSummary {
        keep_for: keep_for.map(|(d, _)| super::decide::fmt_duration(d)),
        expires_at: keep_for.map(|(_, at)| at),
        entering_manifests: if keep_for.is_some() { incoming.values().map(BTreeSet::len).sum() } else { 0 },
        entering_bytes: bytes.entering,
        held_records: held.len(),
        held_bytes: bytes.held,
        next_expiry: held.iter().map(|r| r.expires_at).min(),
        expiring_records: expired.len(),
        expiring_manifests,
        expiring_bytes: bytes.expiring,
    })
}
