//! Untagging on the frozen storage before the deletes. The registry's manifest DELETE finds
//! the tags naming the digest by reading *every* tag of the repository, so deleting most of a
//! repository's N tags through the API costs O(N²) (56 deletes/s at 2,000 tags, hours at
//! 50,000). Registry 2.8 has no tag delete, so the executor does first what the registry's tag
//! store does for each of those tags (`Untag`: remove `_manifests/tags/<tag>` whole); each
//! DELETE then reads only the tags that stay. The manifests themselves are still deleted
//! through the API.
//!
//! Only a tag that the plan deletes, whose manifest the plan deletes, that no kept tag shares,
//! and whose link on disk still names that manifest is removed; the journal is written first,
//! so a run interrupted here leaves untagged manifests that its rerun deletes as approved.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::digest::Digest;
use crate::plan::{Action, Plan};
use crate::storage::Layout;
use crate::storage::entry::{self, Kind};

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UntagStats {
    pub tags_removed: usize,
    /// Planned tags whose directory was already gone (a rerun) or whose link no longer named
    /// the planned manifest (left for the API delete to judge).
    pub skipped: usize,
    pub duration_ms: u64,
    /// Set when a stop request ended it early.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// The tags to remove, per repository: (tag, the manifest it must still name).
pub fn planned_untags(plan: &Plan) -> BTreeMap<String, Vec<(String, Digest)>> {
    let mut out = BTreeMap::new();
    for repo in &plan.repositories {
        let deleted: BTreeSet<&Digest> = repo.manifests.iter().filter(|m| m.action == Action::Delete).map(|m| &m.digest).collect();
        let kept: BTreeSet<&Digest> = repo.tags.iter().filter(|t| t.action == Action::Keep).map(|t| &t.digest).collect();
        let tags: Vec<(String, Digest)> = repo
            .tags
            .iter()
            .filter(|t| t.action == Action::Delete && deleted.contains(&t.digest) && !kept.contains(&t.digest))
            .map(|t| (t.tag.clone(), t.digest.clone()))
            .collect();
        if !tags.is_empty() {
            out.insert(repo.name.clone(), tags);
        }
    }
    out
}

/// Removes the planned tags' directories, checking each link first; stops between tags when
/// `stop` is set.
pub fn untag_planned(layout: &Layout, plan: &Plan, stop: &AtomicBool) -> std::io::Result<UntagStats> {
    let started = Instant::now();
    let mut stats = UntagStats::default();
    'repos: for (repo, tags) in planned_untags(plan) {
        for (tag, digest) in tags {
            if stop.load(Ordering::SeqCst) {
                stats.interrupted = true;
                break 'repos;
            }
            let dir = layout.tags(&repo).join(&tag);
            let names_it = matches!(entry::kind_of(&dir), Ok(Some(Kind::Dir)))
                && matches!(entry::read_link(&layout.tag_current_link(&repo, &tag)), Ok(Some(d)) if d == digest);
            if !names_it {
                stats.skipped += 1;
                continue;
            }
            // remove_dir_all does not follow symlinks inside the directory.
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => stats.tags_removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => stats.skipped += 1,
                Err(e) => {
                    return Err(std::io::Error::new(e.kind(), format!("cannot remove tag directory {}: {e}", dir.display())));
                }
            }
        }
    }
    stats.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        removed = stats.tags_removed,
        skipped = stats.skipped,
        ms = stats.duration_ms,
        "planned tags removed from the frozen storage"
    );
    Ok(stats)
}
