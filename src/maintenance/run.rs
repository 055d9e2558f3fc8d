//! The maintenance pipeline on a frozen storage: snapshot → plan → delete through a private
//! registry instance → `registry garbage-collect` → prune its litter → report.
//!
//! Read-only mode refuses manifest DELETE too, so deletions go through a private instance on
//! 127.0.0.1 with delete enabled and auth, TLS, notifications and read-only stripped; clients
//! keep pulling from the frozen public registry meanwhile.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{Duration, Utc};

use super::config::RegistryConfig;
use super::delete::delete_all;
use super::error::MaintenanceError;
use super::instance::{RegistryProcess, find_registry_bin, free_port};
use super::report::{MaintenanceReport, Timings};
use crate::plan::{self, Plan, Protection};
use crate::policy::RegistryCleanupPolicy;
use crate::registry::{ClientOptions, RegistryClient, WriteProbe};
use crate::storage::prune::{PruneOptions, prune};
use crate::storage::usage::measure;
use crate::storage::{Layout, read_storage};

pub struct MaintenanceOptions {
    pub policy: RegistryCleanupPolicy,
    /// The registry's own configuration file.
    pub config: PathBuf,
    pub registry_bin: Option<PathBuf>,
    /// The environment the registry runs with (its `REGISTRY_*` overrides).
    pub env: Vec<(String, String)>,
    pub protections: Vec<Protection>,
    /// The public registry: when given, it must refuse writes before anything is changed.
    pub public_url: Option<String>,
    pub public_client: ClientOptions,
    pub dry_run: bool,
    pub upload_max_age: Duration,
    pub concurrency: usize,
    pub run_id: String,
}

impl MaintenanceOptions {
    /// The defaults: no public URL to probe, nothing extra protected, 16 concurrent deletes,
    /// uploads abandoned after 24h, a generated run id.
    pub fn new(policy: RegistryCleanupPolicy, config: PathBuf) -> Self {
        MaintenanceOptions {
            policy,
            config,
            registry_bin: None,
            env: Vec::new(),
            protections: Vec::new(),
            public_url: None,
            public_client: ClientOptions::default(),
            dry_run: false,
            upload_max_age: Duration::hours(24),
            concurrency: 16,
            run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        }
    }
}

pub struct MaintenanceOutcome {
    pub plan: Plan,
    pub report: MaintenanceReport,
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

pub async fn run_maintenance(opts: MaintenanceOptions) -> Result<MaintenanceOutcome, MaintenanceError> {
    let started_at = Utc::now();
    let started = Instant::now();
    let policy_name = opts.policy.metadata.name.clone().unwrap_or_else(|| "unnamed".into());
    let span = tracing::info_span!("maintenance", policy = %policy_name, run = %opts.run_id);
    let _enter = span.enter();
    let compiled = crate::policy::compile(&opts.policy.spec)?;
    let dry_run = opts.dry_run || compiled.dry_run;
    let config = RegistryConfig::load(&opts.config, opts.env.clone()).map_err(|e| MaintenanceError::Config(e.to_string()))?;
    let layout = Layout::new(config.storage_root().map_err(|e| MaintenanceError::Config(e.to_string()))?);
    let bin = if dry_run {
        None
    } else {
        Some(find_registry_bin(opts.registry_bin.as_deref()).map_err(|e| MaintenanceError::Config(e.to_string()))?)
    };

    let t = Instant::now();
    let snapshot = read_storage(&layout).map_err(MaintenanceError::Storage)?;
    let snapshot_ms = ms(t);
    for p in &snapshot.problems {
        tracing::warn!(path = %p.path, problem = %p.problem, "storage entry skipped");
    }
    if !dry_run && let Some(url) = &opts.public_url {
        ensure_frozen(url, &opts.public_client, snapshot.repositories.keys().next().map(String::as_str), Some(&layout)).await?;
    }
    let usage_before = measure(&layout).map_err(|e| MaintenanceError::Storage(e.to_string()))?;
    let t = Instant::now();
    let plan = plan::plan(&compiled, &snapshot, &opts.protections, Utc::now());
    let plan_ms = ms(t);
    tracing::info!(
        tags_deleted = plan.summary.tags_deleted,
        manifests_deleted = plan.summary.manifests_deleted,
        bytes_estimated = plan.summary.estimate.bytes_freed,
        "plan made"
    );
    let mut report = MaintenanceReport {
        run_id: opts.run_id.clone(),
        policy: policy_name,
        storage: layout.root().display().to_string(),
        started: started_at,
        finished: started_at,
        dry_run,
        plan: plan.summary.clone(),
        warnings: plan.warnings.clone(),
        snapshot_problems: snapshot.problems.len(),
        delete: None,
        gc: None,
        prune: None,
        usage_before: usage_before.clone(),
        usage_after: usage_before,
        bytes_reclaimed: 0,
        timings: Timings { snapshot_ms, plan_ms, ..Default::default() },
        peak_rss_bytes: 0,
    };
    if let Some(bin) = bin.filter(|_| !dry_run) {
        let deletions = plan.deletions();
        let work = tempfile::tempdir().map_err(|e| MaintenanceError::Storage(e.to_string()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let private = config.private_instance(addr);
        let private_config = private.write_to(work.path()).map_err(|e| MaintenanceError::Config(e.to_string()))?;
        if !deletions.is_empty() {
            let t = Instant::now();
            let instance =
                RegistryProcess::start(&bin, &private_config, private.env.clone(), addr, Some(work.path().join("private-registry.log")))
                    .await
                    .map_err(|e| MaintenanceError::Instance(e.to_string()))?;
            let client = RegistryClient::new(&instance.url(), ClientOptions::default())?;
            let deleted = delete_all(&client, &deletions, opts.concurrency).await;
            instance.stop().await;
            report.delete = Some(deleted?);
            report.timings.delete_ms = ms(t);
        }
        let t = Instant::now();
        report.gc =
            Some(super::gc::run_gc(&bin, &private_config, &private.env, false).await.map_err(|e| MaintenanceError::Gc(e.to_string()))?);
        report.timings.gc_ms = ms(t);
        let t = Instant::now();
        let upload_max_age = opts.upload_max_age.to_std().unwrap_or_default();
        report.prune = Some(prune(&layout, &PruneOptions { upload_max_age, dry_run: false, stop: None }));
        report.timings.prune_ms = ms(t);
        report.usage_after = measure(&layout).map_err(|e| MaintenanceError::Storage(e.to_string()))?;
        report.bytes_reclaimed = report.usage_before.total_bytes.saturating_sub(report.usage_after.total_bytes);
    }
    report.finished = Utc::now();
    report.timings.total_ms = ms(started);
    report.peak_rss_bytes = super::report::peak_rss_bytes();
    tracing::info!(bytes_reclaimed = report.bytes_reclaimed, total_ms = report.timings.total_ms, "maintenance finished");
    Ok(MaintenanceOutcome { plan, report })
}

/// Proves the public registry refuses writes: deleting or collecting while it accepts pushes
/// can lose the blobs of an image pushed meanwhile. When it accepts the probe upload, the
/// cancelled session's leftovers are removed from `layout`, so a refusal changes nothing.
pub async fn ensure_frozen(
    url: &str,
    client: &ClientOptions,
    repository: Option<&str>,
    layout: Option<&Layout>,
) -> Result<(), MaintenanceError> {
    let client = RegistryClient::new(url, client.clone())?;
    let repository = repository.unwrap_or("regsweep-probe");
    match client.probe_write(repository).await? {
        WriteProbe::Refused { status } => {
            tracing::info!(url, status, "public registry refuses writes");
            Ok(())
        }
        WriteProbe::Accepted { upload_uuid } => {
            if let (Some(layout), Some(uuid)) = (layout, upload_uuid.filter(|u| !u.contains('/') && !u.contains(".."))) {
                let uploads = layout.uploads(repository);
                let _ = std::fs::remove_dir_all(uploads.join(uuid));
                // Only directories the probe itself created, and only when empty.
                for dir in [uploads.clone(), layout.repository(repository)] {
                    let _ = std::fs::remove_dir(dir);
                }
            }
            Err(MaintenanceError::NotFrozen(url.to_string()))
        }
    }
}
