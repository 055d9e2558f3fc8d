//! What a run quarantines, from each repository's decisions (pure): per source repository with
//! deletions, the record and every manifest and blob the quarantine repository must link.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};

use super::{Entry, Record};
use crate::digest::Digest;
use crate::plan::{Action, RepositoryPlan, quarantine::closure};
use crate::storage::blobs::Blobs;
use crate::storage::{Content, Repository};

/// One quarantine repository's share of a run.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The quarantine repository.
    pub repository: String,
    pub record: Record,
    /// Every manifest to link as a revision (and tag `m-<hex>`): the entries and their children.
    pub manifests: Vec<Digest>,
    /// Every config and layer those reference, to link under `_layers`.
    pub blobs: Vec<Digest>,
}

/// What the quarantine of one run records and links.
#[derive(Clone, Copy, Debug)]
pub struct Quarantining<'a> {
    pub run_id: &'a str,
    pub policy: &'a str,
    pub now: DateTime<Utc>,
    pub keep_for: Duration,
}

/// The batch of one repository outside the quarantine (None when it deletes nothing).
pub fn prepare_repository(r: &RepositoryPlan, repo: &Repository, sizes: &Blobs, run: Quarantining) -> Option<Batch> {
    let Quarantining { run_id, policy, now, keep_for } = run;
    {
        if super::is_quarantine(&r.name) {
            return None;
        }
        let deleted: Vec<_> = r.manifests.iter().filter(|m| m.action == Action::Delete).collect();
        if deleted.is_empty() {
            return None;
        }
        let children: BTreeSet<&Digest> = deleted.iter().filter_map(|m| repo.manifests.get(&m.digest)).flat_map(|m| m.children()).collect();
        let size = |d: &Digest| sizes.get(d).unwrap_or(0);
        let graph_blobs = |m: &Digest| -> BTreeSet<Digest> {
            let manifests = closure(repo, [m]);
            let mut all: BTreeSet<Digest> = manifests.iter().map(|d| (*d).clone()).collect();
            all.extend(
                manifests
                    .iter()
                    .filter_map(|d| repo.manifests.get(*d))
                    .filter(|m| matches!(m.content, Content::Image { .. }))
                    .flat_map(|m| m.references().cloned()),
            );
            all
        };
        let entries = deleted
            .iter()
            // A tagged child is an entry of its own: its tags come back with it.
            .filter(|m| !m.tags.is_empty() || !children.contains(&m.digest))
            .map(|m| {
                let subject = repo
                    .manifests
                    .get(&m.digest)
                    .and_then(|x| x.subject.clone())
                    .or_else(|| m.tags.iter().find_map(|t| crate::plan::signature_subject(t)));
                Entry {
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                    size: size(&m.digest),
                    tags: m.tags.clone(),
                    subject,
                    bytes: graph_blobs(&m.digest).iter().map(size).sum(),
                }
            })
            .collect();
        let manifests: Vec<Digest> =
            closure(repo, deleted.iter().map(|m| &m.digest)).into_iter().filter(|d| repo.manifests.contains_key(*d)).cloned().collect();
        let blobs: BTreeSet<Digest> = manifests
            .iter()
            .filter_map(|d| repo.manifests.get(d))
            .filter(|m| matches!(m.content, Content::Image { .. }))
            .flat_map(|m| m.references().cloned())
            .collect();
        Some(Batch {
            repository: super::repository_for(&r.name),
            record: Record {
                run_id: run_id.to_string(),
                policy: policy.to_string(),
                repository: r.name.clone(),
                deleted_at: now,
                expires_at: now + keep_for,
                entries,
            },
            manifests,
            blobs: blobs.into_iter().collect(),
        })
    }
}
