//! The bytes a sweep frees, by simulating `registry garbage-collect` (without
//! `--delete-untagged`) over the snapshot: it marks every manifest that keeps a revision link
//! and everything that manifest references (config and layers, or an index's children), and
//! deletes every blob left unmarked.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::{Action, RepositoryPlan};
use crate::digest::Digest;
use crate::quarantine::is_quarantine;
use crate::storage::Repository;
use crate::storage::blobs::Blobs;

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

/// The quarantine's bytes (see [`super::quarantine::QuarantineSummary`]).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct QuarantineBytes {
    pub entering: u64,
    pub held: u64,
    pub expiring: u64,
}

/// What the collector would mark, as bitsets over the blob table, under the four deletion
/// sets the estimate compares. Built repository by repository (a repository's decisions and
/// manifests are all it needs), by several readers at once, so the planner never holds the
/// whole graph.
#[derive(Debug, Default)]
pub struct Marks {
    /// Marked by every manifest: what stays when nothing is deleted.
    all: Vec<AtomicU64>,
    /// Marked by every manifest this plan keeps.
    kept: Vec<AtomicU64>,
    /// Marked by every manifest but the expired quarantine's.
    unexpired: Vec<AtomicU64>,
    /// Marked by the manifests outside the quarantine.
    outside_quarantine: Vec<AtomicU64>,
}

impl Marks {
    pub fn new(blobs: &Blobs) -> Marks {
        let words = || (0..blobs.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Marks { all: words(), kept: words(), unexpired: words(), outside_quarantine: words() }
    }

    /// Marks what `repo`'s manifests reference, given its decisions.
    pub fn add(&self, blobs: &Blobs, repo: &Repository, decisions: &RepositoryPlan) {
        let quarantine = is_quarantine(&repo.name);
        let deleted: HashSet<&Digest> = decisions.manifests.iter().filter(|m| m.action == Action::Delete).map(|m| &m.digest).collect();
        let set = |bits: &[AtomicU64], at: usize| {
            bits[at / 64].fetch_or(1 << (at % 64), Ordering::Relaxed);
        };
        for m in repo.manifests.values() {
            let kept = !deleted.contains(&m.digest);
            for at in std::iter::once(&m.digest).chain(m.references()).filter_map(|d| blobs.index(d)) {
                set(&self.all, at);
                if kept {
                    set(&self.kept, at);
                }
                if kept || !quarantine {
                    set(&self.unexpired, at);
                }
                if !quarantine {
                    set(&self.outside_quarantine, at);
                }
            }
        }
    }
}

/// The blobs left unmarked: how many, and their bytes.
fn freed(blobs: &Blobs, marked: &[AtomicU64]) -> (usize, u64) {
    blobs
        .iter()
        .enumerate()
        .filter(|(at, _)| marked.get(at / 64).is_none_or(|w| w.load(Ordering::Relaxed) & (1 << (at % 64)) == 0))
        .fold((0, 0), |(n, b), (_, (_, s))| (n + 1, b + s))
}

/// With `quarantining`, what this plan deletes outside the quarantine stays marked (the
/// quarantine links it before the collector runs): only expiry frees bytes.
pub(super) fn estimate(blobs: &Blobs, marks: &Marks, quarantining: bool, has_quarantine: bool) -> (Estimate, QuarantineBytes) {
    let effective = if quarantining { &marks.unexpired } else { &marks.kept };
    let (blobs_freed, bytes_freed) = freed(blobs, effective);
    let bytes_already_unreferenced = freed(blobs, &marks.all).1;
    let mut bytes = QuarantineBytes::default();
    if quarantining {
        bytes.entering = freed(blobs, &marks.kept).1.saturating_sub(bytes_freed);
    }
    if has_quarantine {
        bytes.expiring = freed(blobs, &marks.unexpired).1.saturating_sub(bytes_already_unreferenced);
        bytes.held = freed(blobs, &marks.outside_quarantine).1.saturating_sub(bytes_already_unreferenced);
    }
    (Estimate { blob_bytes_before: blobs.total_bytes(), bytes_freed, blobs_freed, bytes_already_unreferenced }, bytes)
}
