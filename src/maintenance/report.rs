//! What a maintenance run did, as JSON for machines (the Job's termination message, the
//! operator's status) and as a few lines for people.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::plan::Summary;
use crate::storage::prune::PruneReport;
use crate::storage::usage::Usage;
use crate::units;

use super::delete::DeleteStats;
use super::gc::GcOutcome;
use super::untag::UntagStats;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceReport {
    pub run_id: String,
    pub policy: String,
    pub storage: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub dry_run: bool,
    /// The plan's id (what an approval names).
    pub plan_id: String,
    pub plan: Summary,
    /// The plan exceeds `spec.limits` (a dry run reports it; a real run stops before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_limit: Option<String>,
    /// The repositories with the most tags deleted (at most 5).
    pub largest: Vec<crate::policy::RepositoryDeletions>,
    pub warnings: Vec<String>,
    pub snapshot_problems: usize,
    /// Deletions approved by an interrupted run's journal that this run finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<Resumed>,
    /// What was linked into quarantine before the deletes (`spec.quarantine`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<crate::quarantine::write::Written>,
    /// Planned tags removed on the frozen storage before the deletes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untag: Option<UntagStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneReport>,
    /// Entries moved out of the registry's tree (untagged tags) and unlinked in the background.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trash: Option<crate::storage::trash::Emptied>,
    /// Measured by one walk before the sweep, beside the snapshot.
    pub usage_before: Usage,
    /// `usage_before` minus the blobs the collector deleted (their sizes read on the frozen
    /// storage) and the files prune removed; the link files of deleted tags and revisions
    /// (71 bytes each) are not subtracted.
    pub usage_after: Usage,
    /// Storage bytes freed: the collected blobs and the upload data prune removed.
    pub bytes_reclaimed: u64,
    pub timings: Timings,
    /// This process's peak resident memory (VmHWM), for the memory goal.
    pub peak_rss_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resumed {
    pub run_id: String,
    /// In the journal, and still in the storage (the rest were done before the interruption).
    pub approved: usize,
}

/// Milliseconds per stage.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    pub snapshot_ms: u64,
    pub plan_ms: u64,
    /// `garbage-collect --dry-run` before the first delete: proof it accepts the storage.
    pub gc_check_ms: u64,
    /// Linking what the run deletes into quarantine, on the frozen storage.
    pub quarantine_ms: u64,
    /// Removing the planned tags on the frozen storage (see `untag`).
    pub untag_ms: u64,
    pub delete_ms: u64,
    pub gc_ms: u64,
    pub prune_ms: u64,
    /// Waiting, after the prune, for the trash's background emptying to finish.
    pub trash_ms: u64,
    pub total_ms: u64,
}

impl MaintenanceReport {
    /// The few numbers the operator needs, as the sweep Job's termination message.
    pub fn compact(&self) -> crate::policy::RunOutcome {
        crate::policy::RunOutcome {
            run_id: self.run_id.clone(),
            dry_run: self.dry_run,
            tags_deleted: self.plan.tags_deleted as u64,
            // A dry run reports what a real run would delete.
            manifests_deleted: if self.dry_run {
                self.plan.manifests_deleted as u64
            } else {
                self.delete.as_ref().map_or(0, |d| d.done() as u64)
            },
            bytes_reclaimed: self.bytes_reclaimed,
            bytes_estimated: self.plan.estimate.bytes_freed,
            plan_id: self.plan_id.clone(),
            over_limit: self.over_limit.clone(),
            largest: self.largest.clone(),
            // Only a run that wrote its quarantine has anything restorable.
            quarantined_until: self.quarantine.as_ref().and(self.plan.quarantine.as_ref()).and_then(|q| q.expires_at),
            quarantined_bytes: self.quarantine.as_ref().and(self.plan.quarantine.as_ref()).map_or(0, |q| q.entering_bytes),
        }
    }

    pub fn human(&self) -> String {
        let mut out = String::new();
        let p = &self.plan;
        let _ = writeln!(
            out,
            "run {} of policy {} on {}{}",
            self.run_id,
            self.policy,
            self.storage,
            if self.dry_run { " (dry run)" } else { "" }
        );
        let _ = writeln!(
            out,
            "  plan: {} tags and {} manifests to delete; {} tags and {} manifests kept",
            p.tags_deleted, p.manifests_deleted, p.tags_kept, p.manifests_kept
        );
        if let Some(q) = &p.quarantine {
            let _ = writeln!(out, "  {}", q.describe());
        }
        if let Some(d) = &self.delete {
            let _ = writeln!(
                out,
                "  deleted {} manifests ({} already gone) in {} ms, {:.0}/s",
                d.deleted, d.already_gone, d.duration_ms, d.per_second
            );
        }
        if let Some(gc) = &self.gc {
            let _ = writeln!(out, "  garbage-collect: {} blobs marked, {} blobs eligible for deletion", gc.marked, gc.blobs_eligible);
        }
        let _ = writeln!(
            out,
            "  storage: {} -> {} (reclaimed {}; estimated {})",
            units::bytes(self.usage_before.total_bytes),
            units::bytes(self.usage_after.total_bytes),
            units::bytes(self.bytes_reclaimed),
            units::bytes(p.estimate.bytes_freed)
        );
        out
    }
}
