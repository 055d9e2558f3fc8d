//! Deleting the planned manifests through the private instance's API, so the registry keeps
//! its own link files consistent. Bounded concurrency; a manifest already gone counts as done,
//! so a rerun after an interruption converges.

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
    pub per_second: f64,
}

/// Deletes in plan order: a rank is finished before the next starts (signatures, then indexes,
/// then images, then index children), so an interruption never leaves a kept-looking image
/// with missing parts. Stops at the first failure.
pub async fn delete_all(client: &RegistryClient, deletions: &[Deletion], concurrency: usize) -> Result<DeleteStats, RegistryError> {
    let started = Instant::now();
    let mut stats = DeleteStats::default();
    let progress = super::progress::Progress::new("deleting manifests", deletions.len() as u64);
    for rank in deletions.chunk_by(|a, b| a.rank == b.rank) {
        let mut results = futures::stream::iter(rank.iter().map(|d| async move {
            let outcome = client.delete_manifest(&d.repository, &d.digest).await;
            (d, outcome)
        }))
        .buffer_unordered(concurrency.max(1));
        while let Some((d, outcome)) = results.next().await {
            match outcome {
                Ok(DeleteOutcome::Deleted) => stats.deleted += 1,
                Ok(DeleteOutcome::AlreadyGone) => stats.already_gone += 1,
                Err(e) => {
                    tracing::error!(repository = %d.repository, digest = %d.digest, error = %e, "manifest delete failed");
                    return Err(e);
                }
            }
            progress.inc();
            tracing::debug!(repository = %d.repository, digest = %d.digest, "manifest deleted");
        }
    }
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    stats.per_second = if secs > 0.0 { (stats.deleted + stats.already_gone) as f64 / secs } else { 0.0 };
    Ok(stats)
}
