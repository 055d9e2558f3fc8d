//! The planner: policy + snapshot + protected references + now → every tag and manifest kept
//! or deleted, with the reason a person can read. Pure: no I/O, so every rule is unit-tested.

pub mod approval;
mod decide;
mod estimate;
pub mod limits;
pub mod quarantine;
pub mod render;
mod signature;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::digest::Digest;
use crate::policy::CompiledPolicy;
use crate::policy::reference::ProtectedRef;
use crate::storage::blobs::Blobs;
use crate::storage::snapshot::TimeSource;
use crate::storage::{Repository, Snapshot};

pub use estimate::Estimate;
pub use signature::signature_subject;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Delete,
}

/// An image reference that must survive, and why (`in use` for workloads, `protected` for the
/// policy's own list).
#[derive(Clone, Debug)]
pub struct Protection {
    pub reference: ProtectedRef,
    pub label: &'static str,
}

impl Protection {
    pub fn protected(reference: ProtectedRef) -> Self {
        Protection { reference, label: "protected" }
    }
    pub fn in_use(reference: ProtectedRef) -> Self {
        Protection { reference, label: "in use" }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// A content hash of what the plan deletes (every tag with its digest, every manifest):
    /// the id an approval names. Two plans with the same id delete exactly the same things.
    pub id: String,
    pub source: String,
    pub generated_at: DateTime<Utc>,
    /// What the ages the rules compared are: push times, or build times from the API.
    pub times: TimeSource,
    pub repositories: Vec<RepositoryPlan>,
    pub summary: Summary,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryPlan {
    pub name: String,
    /// Index of the rule that governs it; None when no rule matches (left alone).
    pub rule: Option<usize>,
    pub tags: Vec<TagDecision>,
    pub manifests: Vec<ManifestDecision>,
    /// Kept tags and manifests counted but not listed: see [`RepositoryPlan::only_deletions`].
    #[serde(skip)]
    pub left_out: LeftOut,
}

/// How many kept decisions a repository's plan counts without listing them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    pub tags: usize,
    pub manifests: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagDecision {
    pub tag: String,
    pub digest: Digest,
    pub pushed: Option<DateTime<Utc>>,
    pub action: Action,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDecision {
    pub digest: Digest,
    pub media_type: String,
    pub pushed: Option<DateTime<Utc>>,
    /// Tags pointing at it before the sweep.
    pub tags: Vec<String>,
    pub action: Action,
    pub reason: String,
    /// Deletion order: referrers first, then indexes, then the rest, so an interrupted run
    /// never leaves a kept-looking image with missing parts.
    #[serde(skip)]
    pub delete_rank: u8,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub repositories: usize,
    pub tags_kept: usize,
    pub tags_deleted: usize,
    pub manifests_kept: usize,
    pub manifests_deleted: usize,
    #[serde(flatten)]
    pub estimate: Estimate,
    /// What the quarantine holds, takes in and frees (absent when there is none and this run
    /// quarantines nothing). Its repositories are not counted above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<quarantine::QuarantineSummary>,
}

/// One manifest DELETE the executor performs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deletion {
    pub repository: String,
    pub digest: Digest,
    /// See [`ManifestDecision::delete_rank`]: a rank is finished before the next begins.
    pub rank: u8,
}

impl Plan {
    /// The manifests to delete, in a safe order (see [`ManifestDecision::delete_rank`]).
    pub fn deletions(&self) -> Vec<Deletion> {
        let mut list: Vec<(u8, Deletion)> = self
            .repositories
            .iter()
            .flat_map(|r| {
                r.manifests
                    .iter()
                    .filter(|m| m.action == Action::Delete)
                    .map(|m| (m.delete_rank, Deletion { repository: r.name.clone(), digest: m.digest.clone(), rank: m.delete_rank }))
            })
            .collect();
        list.sort_by_key(|(rank, _)| *rank);
        list.into_iter().map(|(_, d)| d).collect()
    }

    /// The `n` repositories with the most tags deleted, most first (name breaks ties).
    pub fn largest(&self, n: usize) -> Vec<(String, usize)> {
        let mut by_repo: Vec<(String, usize)> = self
            .repositories
            .iter()
            .filter(|r| !crate::quarantine::is_quarantine(&r.name))
            .map(|r| (r.name.clone(), r.tags.iter().filter(|t| t.action == Action::Delete).count()))
            .filter(|(_, deleted)| *deleted > 0)
            .collect();
        by_repo.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_repo.truncate(n);
        by_repo
    }

    pub fn repository(&self, name: &str) -> Option<&RepositoryPlan> {
        self.repositories.iter().find(|r| r.name == name)
    }
}

impl RepositoryPlan {
    /// The same decisions for a run that only carries them out: the deletions, and every kept
    /// tag on a deleted manifest's digest (the untag step refuses to remove those), while the
    /// other kept decisions are only counted. A sweep of 200,000 tags then holds its plan in a
    /// fraction of the memory; the summary, the id and the limits come out the same.
    pub fn only_deletions(mut self) -> RepositoryPlan {
        let deleted: BTreeSet<Digest> = self.manifests.iter().filter(|m| m.action == Action::Delete).map(|m| m.digest).collect();
        let (tags, manifests) = (self.tags.len(), self.manifests.len());
        self.tags.retain(|t| t.action == Action::Delete || deleted.contains(&t.digest));
        self.manifests.retain(|m| m.action == Action::Delete);
        self.tags.shrink_to_fit();
        self.manifests.shrink_to_fit();
        self.left_out.tags += tags - self.tags.len();
        self.left_out.manifests += manifests - self.manifests.len();
        self
    }

    /// Every tag of the repository, listed or not.
    pub fn tag_count(&self) -> usize {
        self.tags.len() + self.left_out.tags
    }

    pub fn tag(&self, tag: &str) -> Option<&TagDecision> {
        self.tags.iter().find(|t| t.tag == tag)
    }
    pub fn manifest(&self, digest: &Digest) -> Option<&ManifestDecision> {
        self.manifests.iter().find(|m| &m.digest == digest)
    }
}

/// Decides repositories one at a time, so a caller can read, decide and drop each in turn
/// (a sweep of 200,000 tags never holds the whole storage; see `maintenance`).
pub struct Planner<'a> {
    policy: &'a CompiledPolicy,
    /// The policy's own references and the caller's that name this registry.
    protections: Vec<Protection>,
    now: DateTime<Utc>,
    sees_untagged: bool,
}

impl<'a> Planner<'a> {
    /// `protections` are added to the policy's own references.
    pub fn new(policy: &'a CompiledPolicy, protections: &[Protection], now: DateTime<Utc>, sees_untagged: bool) -> Self {
        let mut all: Vec<Protection> = policy.protected.iter().cloned().map(Protection::protected).collect();
        all.extend(protections.iter().filter(|p| p.reference.names_registry(&policy.hosts)).cloned());
        Planner { policy, protections: all, now, sees_untagged }
    }

    /// The same planner keeping `more` too.
    pub fn keeping(&self, more: &[Protection]) -> Planner<'a> {
        let mut all = self.protections.clone();
        all.extend(more.iter().filter(|p| p.reference.names_registry(&self.policy.hosts)).cloned());
        Planner { protections: all, ..*self }
    }

    /// The decisions for a repository outside the quarantine (quarantine repositories are
    /// decided by [`Planner::finish`], once every other repository is known).
    pub fn decide(&self, repo: &Repository) -> RepositoryPlan {
        decide::decide_repository(self.policy.rule_for(&repo.name), repo, &self.protections, self.now, self.sees_untagged)
    }

    /// Gathers a decided repository: its marks and what it moves into the quarantine. Safe
    /// from several readers at once; the plan does not depend on their order.
    pub fn gather(&self, gathered: &Gathered, blobs: &Blobs, repo: &Repository, decisions: RepositoryPlan) {
        gathered.marks.add(blobs, repo, &decisions);
        if self.policy.quarantine.is_some()
            && let Some((quarantine, linked)) = quarantine::incoming(repo, &decisions)
        {
            gathered.incoming.lock().expect("gathered incoming").insert(quarantine, linked);
        }
        gathered.repositories.lock().expect("gathered plans").push(decisions);
    }

    /// The plan: the quarantine repositories (`held`, whole) decided last, the estimate and
    /// the summary.
    pub fn finish(&self, gathered: Gathered, held: &[&Repository], blobs: &Blobs, source: String, times: TimeSource) -> Plan {
        let (policy, now) = (self.policy, self.now);
        let mut warnings = policy.warnings.clone();
        match times {
            TimeSource::PushTime => {}
            TimeSource::ConfigCreated => warnings.push(
                "ages are the images' build times (each config's `created`), read through the registry API, which cannot tell push times: an image built long ago and pushed today counts as old".into(),
            ),
            TimeSource::Unknown => {
                warnings.push("no ages are known (--ages unknown): keepLatest and olderThan keep every tag".into())
            }
        }
        if !self.sees_untagged {
            warnings.push(
                "this snapshot comes from the registry API, which cannot list untagged manifests; untagged rules are not applied".into(),
            );
        }
        let Gathered { repositories, marks, incoming } = gathered;
        let (mut repositories, incoming) = (repositories.into_inner().expect("gathered plans"), incoming.into_inner().expect("gathered"));
        for repo in held {
            let decisions = quarantine::decide(repo, incoming.get(&repo.name), now);
            marks.add(blobs, repo, &decisions);
            repositories.push(decisions);
        }
        repositories.sort_by(|a, b| a.name.cmp(&b.name));
        let (estimate, held_bytes) = estimate::estimate(blobs, &marks, policy.quarantine.is_some(), !held.is_empty());
        let keep_for = policy.quarantine.map(|d| (d, now + d));
        let quarantine = quarantine::summarize(held, &repositories, &incoming, keep_for, held_bytes, now);
        let mut summary = Summary { repositories: repositories.len(), estimate, quarantine, ..Default::default() };
        for r in repositories.iter().filter(|r| !crate::quarantine::is_quarantine(&r.name)) {
            summary.tags_kept += r.left_out.tags;
            summary.manifests_kept += r.left_out.manifests;
            for t in &r.tags {
                match t.action {
                    Action::Keep => summary.tags_kept += 1,
                    Action::Delete => summary.tags_deleted += 1,
                }
            }
            for m in &r.manifests {
                match m.action {
                    Action::Keep => summary.manifests_kept += 1,
                    Action::Delete => summary.manifests_deleted += 1,
                }
            }
        }
        let id = approval::plan_id(&repositories);
        Plan { id, source, generated_at: now, times, repositories, summary, warnings }
    }
}

/// What the planner has gathered from the repositories decided so far.
#[derive(Debug, Default)]
pub struct Gathered {
    repositories: Mutex<Vec<RepositoryPlan>>,
    marks: estimate::Marks,
    incoming: Mutex<BTreeMap<String, BTreeSet<Digest>>>,
}

impl Gathered {
    pub fn new(blobs: &Blobs) -> Gathered {
        Gathered { marks: estimate::Marks::new(blobs), ..Default::default() }
    }
}

/// Makes the plan of a whole snapshot. `protections` are added to the policy's own references.
pub fn plan(policy: &CompiledPolicy, snapshot: &Snapshot, protections: &[Protection], now: DateTime<Utc>) -> Plan {
    let planner = Planner::new(policy, protections, now, snapshot.sees_untagged);
    plan_with(&planner, snapshot, |repo| planner.decide(repo))
}

/// The plan of a snapshot, each repository outside the quarantine decided by `decide`.
fn plan_with(planner: &Planner, snapshot: &Snapshot, decide: impl Fn(&Repository) -> RepositoryPlan) -> Plan {
    let gathered = Gathered::new(&snapshot.blobs);
    // Quarantine repositories last: what they keep depends on what the others delete.
    let (held, sources): (Vec<_>, Vec<_>) = snapshot.repositories.values().partition(|r| crate::quarantine::is_quarantine(&r.name));
    for repo in sources {
        planner.gather(&gathered, &snapshot.blobs, repo, decide(repo));
    }
    planner.finish(gathered, &held, &snapshot.blobs, snapshot.source.clone(), snapshot.times)
}
