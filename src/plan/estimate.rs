//! The bytes a sweep frees, by simulating `registry garbage-collect` (without
//! `--delete-untagged`) over the snapshot: it marks every manifest that keeps a revision link
//! and everything that manifest references (config and layers, or an index's children), and
//! deletes every blob left unmarked.

use std::collections::HashSet;

use serde::Serialize;

use super::{Action, RepositoryPlan};
use crate::digest::Digest;
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

pub(super) fn estimate(snapshot: &Snapshot, repositories: &[RepositoryPlan]) -> Estimate {
    let deleted: HashSet<(&str, &Digest)> = repositories
        .iter()
        .flat_map(|r| r.manifests.iter().filter(|m| m.action == Action::Delete).map(move |m| (r.name.as_str(), &m.digest)))
        .collect();
    let (blobs_freed, bytes_freed) = unmarked(snapshot, &deleted).fold((0, 0), |(n, b), (_, s)| (n + 1, b + s));
    let bytes_already_unreferenced = unmarked(snapshot, &HashSet::new()).map(|(_, s)| s).sum();
    Estimate { blob_bytes_before: snapshot.blob_bytes(), bytes_freed, blobs_freed, bytes_already_unreferenced }
}
