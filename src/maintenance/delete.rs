//! Deleting the planned manifests through the private instance's API, so the registry keeps
//! its own link files consistent. Bounded concurrency; a manifest already gone counts as done,
//! so a rerun after an interruption converges. An interruption stops new deletes from
//! starting; the ones in flight finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;

use crate::plan::Deletion;
use crate::registry::{DeleteOutcome, RegistryClient, RegistryError};

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteStats {
    pub deleted: usize,
    pub already_gone: usize,
    /// Not started because the run was interrupted.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_started: usize,
    /// The delete loop's own time (not the private instance's start and stop).
    pub duration_ms: u64,
    pub per_second: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl DeleteStats {
    pub fn done(&self) -> usize {
        self.deleted + self.already_gone
    }
}

/// Deletes in plan order: a rank is finished before the next starts (signatures, then indexes,
/// then images, then index children), so an interruption never leaves a kept-looking image
/// with missing parts. Stops at the first failure, or when `stop` is set.
pub async fn delete_all(
    client: &RegistryClient,
    deletions: &[Deletion],
    concurrency: usize,
    stop: &AtomicBool,
) -> Result<DeleteStats, RegistryError> {
    let started = Instant::now();
    let mut stats = DeleteStats::default();
    let progress = super::progress::Progress::new("deleting manifests", deletions.len() as u64);
    for rank in deletions.chunk_by(|a, b| a.rank == b.rank) {
        let mut results = futures::stream::iter(rank.iter().map(|d| async move {
            if stop.load(Ordering::SeqCst) {
                return (d, None);
            }
            (d, Some(client.delete_manifest(&d.repository, &d.digest).await))
        }))
        .buffer_unordered(concurrency.max(1));
        while let Some((d, outcome)) = results.next().await {
            match outcome {
                None => stats.not_started += 1,
                Some(Ok(DeleteOutcome::Deleted)) => stats.deleted += 1,
                Some(Ok(DeleteOutcome::AlreadyGone)) => stats.already_gone += 1,
                Some(Err(e)) => {
                    tracing::error!(repository = %d.repository, digest = %d.digest, error = %e, "manifest delete failed");
                    return Err(e);
                }
            }
            progress.inc();
        }
        if stop.load(Ordering::SeqCst) {
            stats.not_started = deletions.len() - stats.done();
            break;
        }
    }
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    stats.duration_ms = (secs * 1000.0) as u64;
    stats.per_second = if secs > 0.0 { stats.done() as f64 / secs } else { 0.0 };
    tracing::info!(
        deleted = stats.deleted,
        already_gone = stats.already_gone,
        not_started = stats.not_started,
        ms = stats.duration_ms,
        "delete loop finished"
    );
    Ok(stats)
}
