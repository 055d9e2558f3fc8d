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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::digest::Digest;
use crate::plan::{Action, Plan};
use crate::storage::Layout;
use crate::storage::entry::{self, Kind};
use crate::storage::trash::Trash;

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

/// Threads removing tags at once: the work is file-system metadata, which waits on the disk
/// more than on a core (the registry's own DELETEs run 16 at a time too).
const THREADS: usize = 8;

/// Removes the planned tags' directories, checking each link first; stops between tags when
/// `stop` is set.
pub fn untag_planned(layout: &Layout, plan: &Plan, trash: Option<&Trash>, stop: &AtomicBool) -> std::io::Result<UntagStats> {
    let started = Instant::now();
    let (removed, skipped, interrupted) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicBool::new(false));
    let mut work: Vec<(String, String, Digest)> = Vec::new();
    for (repo, tags) in planned_untags(plan) {
        // Never through a symlink: what lies behind one is not this storage's to change (the
        // registry's DELETE then judges those tags itself).
        if !tags_dir_is_real(layout, &repo) {
            tracing::warn!(repository = %repo, "a directory on the way to its tags is not a real directory; its tags are left to the registry");
            skipped.fetch_add(tags.len(), Ordering::Relaxed);
            continue;
        }
        work.extend(tags.into_iter().map(|(t, d)| (repo.clone(), t, d)));
    }
    let chunk = work.len().div_ceil(THREADS).max(1);
    let failures: Vec<std::io::Error> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|part| {
                let (removed, skipped, interrupted) = (&removed, &skipped, &interrupted);
                s.spawn(move || -> std::io::Result<()> {
                    for (repo, tag, digest) in part {
                        if stop.load(Ordering::SeqCst) {
                            interrupted.store(true, Ordering::SeqCst);
                            return Ok(());
                        }
                        match untag_one(layout, trash, repo, tag, digest)? {
                            true => removed.fetch_add(1, Ordering::Relaxed),
                            false => skipped.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().expect("an untag thread panicked").err()).collect()
    });
    if let Some(e) = failures.into_iter().next() {
        return Err(e);
    }
    let mut stats = UntagStats {
        tags_removed: removed.into_inner(),
        skipped: skipped.into_inner(),
        interrupted: interrupted.into_inner(),
        ..Default::default()
    };
    stats.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        removed = stats.tags_removed,
        skipped = stats.skipped,
        ms = stats.duration_ms,
        "planned tags removed from the frozen storage"
    );
    Ok(stats)
}

/// Whether every directory from the storage's `repositories/` down to the repository's
/// `_manifests/tags` is a real directory (none a symlink).
pub fn tags_dir_is_real(layout: &Layout, repo: &str) -> bool {
    let mut dir = layout.repositories();
    let components = repo.split('/').chain(["_manifests", "tags"]);
    for c in components {
        if c.is_empty() || c == "." || c == ".." {
            return false;
        }
        dir.push(c);
        if !matches!(entry::kind_of(&dir), Ok(Some(Kind::Dir))) {
            return false;
        }
    }
    true
}

/// Moves one tag's directory into the trash (or removes it) if its link still names `digest`;
/// false when it did not (or was already gone).
fn untag_one(layout: &Layout, trash: Option<&Trash>, repo: &str, tag: &str, digest: &Digest) -> std::io::Result<bool> {
    let dir = layout.tags(repo).join(tag);
    let names_it = matches!(entry::kind_of(&dir), Ok(Some(Kind::Dir)))
        && matches!(entry::read_link(&layout.tag_current_link(repo, tag)), Ok(Some(d)) if d == *digest);
    if !names_it {
        return Ok(false);
    }
    // One rename takes the tag out of the registry's tree at once; in place, remove_dir_all
    // does not follow symlinks inside the directory.
    Trash::take_or_remove(trash, &dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot remove tag directory {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_behind_a_symlink_are_never_removed_on_storage() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("root"));
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(outside.join("tags/v1/current")).unwrap();
        std::fs::create_dir_all(layout.tags("real/app")).unwrap();
        assert!(tags_dir_is_real(&layout, "real/app"));
        // A symlinked `_manifests`, and a symlinked repository parent.
        std::fs::create_dir_all(layout.repository("linked")).unwrap();
        std::os::unix::fs::symlink(&outside, layout.repository("linked").join("_manifests")).unwrap();
        assert!(!tags_dir_is_real(&layout, "linked"));
        std::os::unix::fs::symlink(layout.repository("real"), layout.repositories().join("alias")).unwrap();
        assert!(!tags_dir_is_real(&layout, "alias/app"));
        assert!(!tags_dir_is_real(&layout, "real/../real/app"));
        assert!(!tags_dir_is_real(&layout, "missing"));
        assert!(outside.join("tags/v1/current").exists());
    }
}
