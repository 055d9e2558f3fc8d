//! The bytes a sweep frees, by simulating `registry garbage-collect` (without
//! `--delete-untagged`) over the snapshot: it marks every manifest that keeps a revision link
//! and everything that manifest references (config and layers, or an index's children), and
//! deletes every blob left unmarked.

use std::collections::HashSet;

use serde::Serialize;

use super::{Action, RepositoryPlan};
use crate::digest::Digest;
use crate::quarantine::is_quarantine;
use crate::storage::Snapshot;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// Bytes in the blob store now.
    pub blob_bytes_before: u64,
    /// Bytes GC will delete after this plan's deletions (includes the already unreferenced).
    pub bytes_freed: u64,
    pub blobs_freed: usize,
    /// Bytes no manifest references even before the sweep (left by earlier deletes or uploads).
    pub bytes_already_unreferenced: u64,
}

fn unmarked<'a>(snapshot: &'a Snapshot, deleted: &HashSet<(&str, &Digest)>) -> impl Iterator<Item = (&'a Digest, u64)> {
    let mut marked: HashSet<&Digest> = HashSet::new();
    for repo in snapshot.repositories.values() {
        for m in repo.manifests.values() {
            if !deleted.contains(&(repo.name.as_str(), &m.digest)) {
                marked.insert(&m.digest);
                marked.extend(m.references());
            }
        }
    }
    snapshot.blobs.iter().filter(move |(d, _)| !marked.contains(d)).map(|(d, s)| (d, *s))
}

/// The quarantine's bytes (see [`super::quarantine::QuarantineSummary`]).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct QuarantineBytes {
    pub entering: u64,
    pub held: u64,
    pub expiring: u64,
}

fn freed(snapshot: &Snapshot, deleted: &HashSet<(&str, &Digest)>) -> (usize, u64) {
    unmarked(snapshot, deleted).fold((0, 0), |(n, b), (_, s)| (n + 1, b + s))
}

/// With `quarantining`, what this plan deletes outside the quarantine stays marked (the
/// quarantine links it before the collector runs): only expiry frees bytes.
pub(super) fn estimate(snapshot: &Snapshot, repositories: &[RepositoryPlan], quarantining: bool) -> (Estimate, QuarantineBytes) {
    let deleted_in = |in_quarantine: Option<bool>| -> HashSet<(&str, &Digest)> {
        repositories
            .iter()
            .filter(|r| in_quarantine.is_none_or(|q| q == is_quarantine(&r.name)))
            .flat_map(|r| r.manifests.iter().filter(|m| m.action == Action::Delete).map(move |m| (r.name.as_str(), &m.digest)))
            .collect()
    };
    let all = deleted_in(None);
    let expiring = deleted_in(Some(true));
    let effective = if quarantining { &expiring } else { &all };
    let (blobs_freed, bytes_freed) = freed(snapshot, effective);
    let bytes_already_unreferenced = freed(snapshot, &HashSet::new()).1;
    let mut bytes = QuarantineBytes::default();
    let has_quarantine = snapshot.repositories.keys().any(|r| is_quarantine(r));
    if quarantining {
        bytes.entering = freed(snapshot, &all).1.saturating_sub(bytes_freed);
    }
    if has_quarantine {
        bytes.expiring = freed(snapshot, &expiring).1.saturating_sub(bytes_already_unreferenced);
        let everything_quarantined: HashSet<(&str, &Digest)> = snapshot
            .repositories
            .values()
            .filter(|r| is_quarantine(&r.name))
            .flat_map(|r| r.manifests.keys().map(move |d| (r.name.as_str(), d)))
            .collect();
        bytes.held = freed(snapshot, &everything_quarantined).1.saturating_sub(bytes_already_unreferenced);
    }
    (Estimate { blob_bytes_before: snapshot.blob_bytes(), bytes_freed, blobs_freed, bytes_already_unreferenced }, bytes)
}
