//! The maintenance pipeline on a frozen storage. In this order, so that everything that can
//! be known is checked before anything changes:
//!
//! 1. policy, registry configuration, storage root, registry binary (bad input: exit 2);
//! 2. the storage lock (one sweep at a time);
//! 3. proof that the public registry refuses writes, *then* the snapshot: the plan is made
//!    from storage nobody can change;
//! 4. the plan, including what an interrupted run's journal approved;
//! 5. `garbage-collect --dry-run`: proof the collector accepts this storage (started right
//!    after the freeze proof, beside the snapshot and the plan, and waited for before the
//!    first change);
//! 6. the journal, then the deletes through a private instance, then the collector, then
//!    the prune of its litter, then the report.
//!
//! Read-only mode refuses manifest DELETE too, so deletions go through a private instance on
//! 127.0.0.1 with delete enabled and auth, TLS, notifications and read-only stripped; clients
//! keep pulling from the frozen public registry meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};

use super::config::RegistryConfig;
use super::delete::delete_all;
use super::error::MaintenanceError;
use super::gc::{GcError, run_gc_with};
use super::instance::{RegistryProcess, find_registry_bin, free_port};
use super::interrupt::Interrupt;
use super::journal::Journal;
use super::lock::StorageLock;
use super::report::{MaintenanceReport, Resumed, Timings};
use super::untag::untag_planned;
use crate::plan::{self, Plan, Protection};
use crate::policy::RegistryCleanupPolicy;
use crate::registry::client::redact_url;
use crate::registry::{ClientOptions, RegistryClient, WriteProbe};
use crate::storage::Layout;
use crate::storage::entry::{self, Kind, Listing};
use crate::storage::layout::RESERVED_DIRS;
use crate::storage::prune::{Changed, PruneOptions, PruneScope, prune};
use crate::storage::read::check_root;
use crate::storage::read::read_each_measured;
use crate::storage::snapshot::TimeSource;
use crate::storage::trash::{Emptier, Trash, trash_root};
use crate::storage::usage::Usage;

/// How long the collector's dry run before the first delete may take: minutes at most on
/// the largest registries measured; a storage entry it cannot read makes it hang instead.
const GC_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Repositories the sweep did not touch that prune still visits, picked at random each run.
const LITTER_SWEEP_REPOSITORIES: usize = 64;

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
    /// SIGTERM/SIGINT (see [`Interrupt`]); none by default.
    pub interrupt: Interrupt,
    /// Sweep although the registry caches blob descriptors in Redis (the caller flushes it).
    pub allow_redis_cache: bool,
    /// Remove the planned tags on the frozen storage before the deletes (see
    /// [`super::untag`]); false leaves all untagging to the registry's DELETE (O(N²)).
    pub untag_on_storage: bool,
    /// A reviewed plan: the run deletes at most what it deletes (see [`plan::approval`]),
    /// and the limits do not hold it.
    pub approved: Option<plan::approval::Approval>,
    /// The plan saved on the storage by that run (see [`super::review`]) is the approved one
    /// (the operator's way to pass a reviewed plan to the run that executes it).
    pub approved_run: Option<String>,
    /// Save this run's plan on the storage for review (see [`super::review`]).
    pub save_plan: bool,
    /// The outcome's plan lists every decision. Without it (nothing shows or writes the
    /// plan, and no review saves it) it lists what is deleted and counts the
    /// rest, which holds a 200,000-tag sweep's memory down (see
    /// [`plan::RepositoryPlan::only_deletions`]); a saved plan is always whole.
    pub full_plan: bool,
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
            run_id: crate::policy::RunState::new_id(),
            interrupt: Interrupt::none(),
            allow_redis_cache: false,
            untag_on_storage: true,
            approved: None,
            approved_run: None,
            save_plan: false,
            full_plan: true,
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

fn interrupted(interrupt: &Interrupt, phase: &str, detail: impl Into<String>) -> MaintenanceError {
    let signal = interrupt.signal().map_or("a stop request", |s| s.as_str()).to_string();
    MaintenanceError::Interrupted { signal, phase: phase.into(), detail: detail.into() }
}

/// Stops between phases when an interruption came in.
fn check(interrupt: &Interrupt, phase: &str) -> Result<(), MaintenanceError> {
    if interrupt.is_set() { Err(interrupted(interrupt, phase, "nothing was deleted yet; rerun to sweep")) } else { Ok(()) }
}

pub async fn run_maintenance(opts: MaintenanceOptions) -> Result<MaintenanceOutcome, MaintenanceError> {
    let started_at = Utc::now();
    let started = Instant::now();
    let policy_name = opts.policy.metadata.name.clone().unwrap_or_else(|| "unnamed".into());
    let span = tracing::info_span!("maintenance", policy = %policy_name, run = %opts.run_id);
    let _enter = span.enter();
    let interrupt = &opts.interrupt;

    // 1. Input.
    let compiled = crate::policy::compile(&opts.policy.spec)?;
    let dry_run = opts.dry_run || compiled.dry_run;
    let config = RegistryConfig::load(&opts.config, opts.env.clone())?;
    let layout = Layout::new(config.storage_root()?);
    check_root(&layout).map_err(MaintenanceError::StorageRoot)?;
    if !dry_run && config.uses_redis_cache() && !opts.allow_redis_cache {
        return Err(MaintenanceError::Refused(format!(
            "{} caches blob descriptors in Redis (storage.cache.blobdescriptor: redis), which outlives the registry's restart: after garbage collection it would still describe deleted blobs, and a re-push of one would \"succeed\" and be unpullable. Nothing was changed. Switch the cache to inmemory, or flush the registry's Redis database after the sweep and pass --allow-redis-cache",
            opts.config.display()
        )));
    }
    let public = opts.public_url.as_deref().map(|url| RegistryClient::new(url, opts.public_client.clone())).transpose()?;
    let bin = if dry_run { None } else { Some(find_registry_bin(opts.registry_bin.as_deref())?) };

    // 2. One sweep at a time; a dry run changes nothing and takes no lock.
    let _lock = if dry_run { None } else { Some(StorageLock::acquire(&layout, &opts.run_id)?) };
    let work = if dry_run {
        None
    } else {
        let dir = tempfile::Builder::new()
            .prefix("regsweep-")
            .tempdir()
            .map_err(|e| MaintenanceError::Refused(format!("cannot create a temporary directory (set TMPDIR to a writable one): {e}")))?;
        super::interrupt::register_temp_dir(dir.path().to_path_buf());
        Some(dir)
    };

    // 3. Freeze proven, then the snapshot.
    if !dry_run && let Some(client) = &public {
        ensure_frozen(client, first_repository(&layout).as_deref(), Some(&layout)).await?;
    }
    check(interrupt, "before the snapshot")?;
    // The private instance's configuration, and the collector's check beside the snapshot and
    // the plan: both only read the frozen storage, and the check is the longest step before
    // the first delete.
    let private = match (&bin, &work) {
        (Some(bin), Some(work)) => Some(Private::prepare(&config, bin, work.path(), interrupt)?),
        _ => None,
    };
    // 3–4. The snapshot and the plan together, repository by repository: each is decided as
    // soon as it is read, and only its decisions and what the sweep needs of it are kept (a
    // sweep of 200,000 tags never holds the whole storage).
    let journal = Journal::load(&layout).map_err(MaintenanceError::Storage)?;
    let approved = match (&opts.approved, &opts.approved_run) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(run)) => Some(super::review::load(&layout, run).map_err(MaintenanceError::Refused)?),
        (None, None) => None,
    };
    let now = Utc::now();
    let planner = plan::Planner::new(&compiled, &opts.protections, now, true);
    let run = compiled.quarantine.map(|keep_for| crate::quarantine::prepare::Quarantining {
        run_id: &opts.run_id,
        policy: &policy_name,
        now,
        keep_for,
    });
    let t = Instant::now();
    let resumed_approved = std::sync::atomic::AtomicUsize::new(0);
    let gathered = std::sync::OnceLock::new();
    // Disk usage is measured in the same walk; after the sweep it is what was measured minus
    // what the sweep removed.
    let read = read_each_measured(&layout, |mut repo, blobs| {
        if let Some(j) = &journal {
            resumed_approved.fetch_add(j.approve_repository(&mut repo), std::sync::atomic::Ordering::Relaxed);
        }
        if crate::quarantine::is_quarantine(&repo.name) {
            // Decided last, whole: what they keep depends on what the others delete.
            return Read::Held(repo);
        }
        let decisions = match &approved {
            Some(approval) => approval.restrict(&planner, &repo),
            None => planner.decide(&repo),
        };
        let decisions = if opts.full_plan || opts.save_plan { decisions } else { decisions.only_deletions() };
        let changed = changed_in(&decisions, Some(&repo));
        let batch = run.and_then(|run| crate::quarantine::prepare::prepare_repository(&decisions, &repo, blobs, run));
        planner.gather(gathered.get_or_init(|| plan::Gathered::new(blobs)), blobs, &repo, decisions);
        Read::Source { changed, batch }
    })
    .map_err(MaintenanceError::StorageRoot)?;
    let snapshot_ms = ms(t);
    let sizes = read.blobs;
    let (mut held, mut changed, mut quarantine) = (Vec::new(), BTreeMap::new(), Vec::new());
    for r in read.repositories {
        match r {
            Read::Held(repo) => held.push(repo),
            Read::Source { changed: c, batch } => {
                changed.extend(c);
                quarantine.extend(batch);
            }
        }
    }
    tracing::info!(
        repositories = changed.len() + held.len(),
        problems = read.problems.len(),
        ms = snapshot_ms,
        "snapshot read and planned"
    );
    for p in &read.problems {
        tracing::warn!(path = %p.path, problem = %p.problem, blocks_gc = p.blocks_gc, "storage entry not understood");
    }
    let resumed = journal.as_ref().map(|j| {
        let approved = resumed_approved.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(interrupted_run = %j.run_id, approved, "finishing an interrupted run's approved deletions");
        Resumed { run_id: j.run_id.clone(), approved }
    });
    let blockers: Vec<String> = read.problems.iter().filter(|p| p.blocks_gc).map(|p| format!("  {}: {}", p.path, p.problem)).collect();
    if !dry_run && !blockers.is_empty() {
        return Err(MaintenanceError::GcBlocked(blockers.join("\n")));
    }
    let usage_before = read.usage.clone().unwrap_or_default();

    let t = Instant::now();
    let held_refs: Vec<&crate::storage::Repository> = held.iter().collect();
    let gathered = gathered.into_inner().unwrap_or_else(|| plan::Gathered::new(&sizes));
    let plan = planner.finish(gathered, &held_refs, &sizes, layout.root().display().to_string(), TimeSource::PushTime);
    if let Some(approval) = &approved {
        approval.check_within(&plan).map_err(|e| MaintenanceError::Refused(format!("approved plan {}: {e}", approval.id)))?;
    }
    // The quarantine repositories' share of the prune, now that they are decided.
    for repo in &held {
        if let Some(decisions) = plan.repository(&repo.name) {
            changed.extend(changed_in(decisions, Some(repo)));
        }
    }
    extend_expired_sources(&mut changed);
    drop(held_refs);
    drop(held);
    super::memory::give_back_freed("snapshot");
    let plan_ms = ms(t);
    // The circuit breaker, before anything changes; an approved plan was reviewed instead.
    let mut over_limit = None;
    if approved.is_none()
        && let Err(over) = plan::limits::check(&compiled.limits, &plan)
    {
        if !dry_run {
            return Err(MaintenanceError::OverLimit(over));
        }
        over_limit = Some(over.to_string());
    }
    tracing::info!(
        tags_deleted = plan.summary.tags_deleted,
        manifests_deleted = plan.summary.manifests_deleted,
        bytes_estimated = plan.summary.estimate.bytes_freed,
        "plan made"
    );
    if opts.save_plan {
        let saved = super::review::save(&layout, &opts.run_id, &plan).map_err(MaintenanceError::Storage)?;
        tracing::info!(plan = %plan.id, path = %saved.display(), "plan saved for review");
    }
    let mut report = MaintenanceReport {
        run_id: opts.run_id.clone(),
        policy: policy_name,
        storage: layout.root().display().to_string(),
        started: started_at,
        finished: started_at,
        dry_run,
        plan_id: plan.id.clone(),
        plan: plan.summary.clone(),
        warnings: plan.warnings.iter().cloned().chain(over_limit.clone()).collect(),
        over_limit,
        largest: plan
            .largest(5)
            .into_iter()
            .map(|(repository, n)| crate::policy::RepositoryDeletions { repository, tags_deleted: n as u64 })
            .collect(),
        snapshot_problems: read.problems.len(),
        resumed,
        quarantine: None,
        untag: None,
        trash: None,
        delete: None,
        gc: None,
        prune: None,
        usage_before: usage_before.clone(),
        usage_after: usage_before,
        bytes_reclaimed: 0,
        timings: Timings { snapshot_ms, plan_ms, ..Default::default() },
        peak_rss_bytes: 0,
    };
    if let (Some(bin), Some(work), Some(private)) = (bin, work, private) {
        let sizes = BlobSizes(sizes);
        let ctx = SweepContext {
            layout: &layout,
            bin: &bin,
            work: work.path(),
            plan: &plan,
            changed,
            quarantine,
            sizes,
            had_journal: journal.is_some(),
        };
        sweep(&opts, ctx, private, &mut report).await?;
    }
    report.finished = Utc::now();
    report.timings.total_ms = ms(started);
    report.peak_rss_bytes = super::memory::peak_rss_bytes();
    tracing::info!(bytes_reclaimed = report.bytes_reclaimed, total_ms = report.timings.total_ms, "maintenance finished");
    Ok(MaintenanceOutcome { plan, report })
}

/// The private instance's files, and the collector's check running in the background.
struct Private {
    addr: SocketAddr,
    config: super::config::PrivateConfig,
    serve_config: PathBuf,
    gc_config: PathBuf,
    check: GcCheck,
}

impl Private {
    fn prepare(config: &RegistryConfig, bin: &Path, work: &Path, interrupt: &Interrupt) -> Result<Private, MaintenanceError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let private = config.private_instance(addr);
        let serve_config = private.write_to(work)?;
        let gc_config = private.write_gc_to(work)?;
        let check = GcCheck::start(bin, &gc_config, &private.env, interrupt);
        Ok(Private { addr, config: private, serve_config, gc_config, check })
    }
}

/// `garbage-collect --dry-run` as a task; aborted (its process killed) when dropped unawaited.
struct GcCheck(tokio::task::JoinHandle<Result<super::gc::GcOutcome, GcError>>);

impl GcCheck {
    fn start(bin: &Path, config: &Path, env: &[(String, String)], interrupt: &Interrupt) -> GcCheck {
        let (bin, config, env, interrupt) = (bin.to_path_buf(), config.to_path_buf(), env.to_vec(), interrupt.clone());
        GcCheck(tokio::spawn(async move { run_gc_with(&bin, &config, &env, true, &interrupt, Some(GC_CHECK_TIMEOUT)).await }))
    }

    async fn wait(&mut self) -> Result<super::gc::GcOutcome, GcError> {
        (&mut self.0)
            .await
            .unwrap_or_else(|e| Err(GcError::Spawn { bin: "garbage-collect".into(), cause: format!("the check's task failed: {e}") }))
    }
}

impl Drop for GcCheck {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a repository's decisions tell the prune (None when it deletes nothing): the
/// revisions deleted and what they referenced.
fn changed_in(decisions: &plan::RepositoryPlan, seen: Option<&crate::storage::Repository>) -> Option<(String, Changed)> {
    let deleted: Vec<_> = decisions.manifests.iter().filter(|m| m.action == plan::Action::Delete).map(|m| m.digest).collect();
    if deleted.is_empty() {
        return None;
    }
    let referenced = deleted
        .iter()
        .filter_map(|d| seen.and_then(|r| r.manifests.get(d)))
        .flat_map(|m| m.references().cloned())
        .chain(deleted.iter().cloned())
        .collect();
    let emptied = seen.is_none_or(|r| r.manifests.len() == deleted.len());
    let gone: HashSet<&crate::digest::Digest> = deleted.iter().collect();
    let stale_history = seen.map_or_else(Vec::new, |r| r.history.iter().filter(|(_, d)| gone.contains(d)).cloned().collect());
    Some((decisions.name.clone(), Changed { revisions: deleted, referenced, emptied, stale_history }))
}

/// What an expired quarantine frees was linked in its source repository too: those
/// `_layers` links dangle once the collector deletes the blobs.
fn extend_expired_sources(changed: &mut BTreeMap<String, Changed>) {
    let expired: Vec<(String, BTreeSet<crate::digest::Digest>)> = changed
        .iter()
        .filter_map(|(name, c)| crate::quarantine::source_of(name).map(|source| (source.to_string(), c.referenced.clone())))
        .collect();
    for (source, referenced) in expired {
        changed.entry(source).or_default().referenced.extend(referenced);
    }
}

/// What the reading of one repository leaves for the sweep.
enum Read {
    /// A quarantine repository, kept whole until the plan is finished.
    Held(crate::storage::Repository),
    /// Another repository: its decisions went to the planner; its share of the prune and of
    /// the quarantine stay.
    Source { changed: Option<(String, Changed)>, batch: Option<crate::quarantine::prepare::Batch> },
}

/// Blob sizes read by the snapshot on the frozen storage: what the collector's deletions free.
struct BlobSizes(crate::storage::blobs::Blobs);

impl BlobSizes {
    /// The usage after the collector deleted `collected` and prune removed `pruned_bytes`.
    fn after(&self, before: &Usage, collected: &[crate::digest::Digest], pruned_bytes: u64) -> Usage {
        let unique: HashSet<_> = collected.iter().collect();
        let (bytes, count) = unique.iter().filter_map(|d| self.0.get(d)).fold((0u64, 0usize), |(b, n), s| (b + s, n + 1));
        Usage {
            total_bytes: before.total_bytes.saturating_sub(bytes + pruned_bytes),
            blob_bytes: before.blob_bytes.saturating_sub(bytes),
            blobs: before.blobs.saturating_sub(count),
            files: before.files.saturating_sub(count),
        }
    }
}

/// What the sweep works from.
struct SweepContext<'a> {
    layout: &'a Layout,
    bin: &'a Path,
    work: &'a Path,
    plan: &'a Plan,
    changed: BTreeMap<String, Changed>,
    /// What the quarantine links before the first delete (empty: deletions are final).
    quarantine: Vec<crate::quarantine::prepare::Batch>,
    sizes: BlobSizes,
    had_journal: bool,
}

/// Steps 5 and 6: everything that changes the storage.
async fn sweep(
    opts: &MaintenanceOptions,
    ctx: SweepContext<'_>,
    mut private: Private,
    report: &mut MaintenanceReport,
) -> Result<(), MaintenanceError> {
    let SweepContext { layout, bin, work, plan, changed, quarantine, sizes, had_journal } = ctx;
    let interrupt = &opts.interrupt;
    let deletions = plan.deletions();
    let addr = private.addr;
    let (private_config, gc_config) = (private.serve_config.clone(), private.gc_config.clone());
    let gc_error = |e: GcError, phase: &str, done: &str| match e {
        GcError::Interrupted => interrupted(interrupt, phase, format!("{done}; rerun to finish")),
        other => MaintenanceError::Gc(other),
    };
    // 5. Would the collector accept this storage? Asked before the first delete, so a storage
    // it fails on is refused with nothing changed. (Started beside the snapshot; with nothing
    // to delete its answer is not needed, and dropping it stops it.)
    if !deletions.is_empty() {
        let checked = private.check.wait().await.map_err(|e| match e {
            GcError::Interrupted => interrupted(interrupt, "during the garbage-collect check", "nothing was deleted; rerun to sweep"),
            other => MaintenanceError::GcBlocked(format!("  {other}")),
        })?;
        report.timings.gc_check_ms = checked.duration.as_millis() as u64;
    }
    let Private { config: private, check: gc_check, .. } = private;
    drop(gc_check);
    // Untagged tags are moved into the trash, emptied in the background while the registry
    // collects (it also empties what an interrupted run left there).
    // Prune moves what it removes there too. A run that deletes nothing still empties what an
    // earlier run left.
    let trash = if deletions.is_empty() && !matches!(entry::kind_of(&trash_root(layout)), Ok(Some(Kind::Dir))) {
        None
    } else {
        Trash::open(layout, &opts.run_id).map(Arc::new)
    };
    if !deletions.is_empty() {
        // 6. The quarantine (durable before anything is deleted), the intent, then the deletes.
        if !quarantine.is_empty() {
            check(interrupt, "before the quarantine")?;
            let written = crate::quarantine::write::write(layout, &quarantine)
                .map_err(|e| MaintenanceError::Storage(format!("{e}; nothing was deleted")))?;
            report.timings.quarantine_ms = written.duration_ms;
            report.quarantine = Some(written);
        }
        Journal::new(&opts.run_id, &deletions)
            .write(layout)
            .map_err(|e| MaintenanceError::Storage(format!("cannot write the sweep journal under {}: {e}", layout.root().display())))?;
        tracing::info!(deletions = deletions.len(), "journal of approved deletions written");
        check(interrupt, "before the deletes")?;
        if opts.untag_on_storage {
            let t = Instant::now();
            let untagged = untag_planned(layout, plan, trash.as_deref(), &interrupt.flag())
                .map_err(|e| MaintenanceError::Storage(format!("{e}; rerun to finish (the journal approves the deletions)")))?;
            report.timings.untag_ms = ms(t);
            let interrupted_here = untagged.interrupted;
            report.untag = Some(untagged);
            if interrupted_here {
                return Err(interrupted(
                    interrupt,
                    "while untagging",
                    "some planned tags were removed, no manifest deleted; rerun to finish (the journal approves them)",
                ));
            }
        }
        let t = Instant::now();
        let log = work.join("private-registry.log");
        let instance = RegistryProcess::start(bin, &private_config, private.env.clone(), addr, Some(log)).await?;
        let client = RegistryClient::new(&instance.url(), ClientOptions::default())?;
        let deleted = delete_all(&client, &deletions, opts.concurrency, &interrupt.flag()).await;
        // No idle connection may hold up the instance's graceful drain.
        drop(client);
        instance.stop().await;
        report.timings.delete_ms = ms(t);
        let stats = deleted?;
        if stats.not_started > 0 {
            let detail = format!(
                "{} of {} deletions done, none half-done; the private registry was stopped; rerun to finish them (the journal in the storage approves them)",
                stats.done(),
                deletions.len()
            );
            return Err(interrupted(interrupt, "while deleting", detail));
        }
        report.delete = Some(stats);
    }
    // The trash is emptied in the background of the collector, not of the deletes: its
    // unlinks took the disk and a core from the registry's DELETEs (measured: the executor at
    // 0.68–0.79 × a plain DELETE loop). What the collector's time does not cover is left for
    // the next run.
    let emptier = trash.as_ref().map(|_| Emptier::start(layout, &opts.run_id));
    let done = format!("all {} deletions done", deletions.len());
    if interrupt.is_set() {
        return Err(interrupted(interrupt, "before garbage-collect", format!("{done}; rerun to collect")));
    }
    let t = Instant::now();
    let gc = run_gc_with(bin, &gc_config, &private.env, false, interrupt, None).await;
    report.gc = Some(gc.map_err(|e| gc_error(e, "during garbage-collect", &done))?);
    report.timings.gc_ms = ms(t);
    let upload_max_age = opts.upload_max_age.to_std().unwrap_or_default();
    let scope = match &report.gc {
        // The collector named every blob it deleted, and no interrupted run left litter in
        // repositories this one did not touch: visit what this run changed.
        Some(gc) if gc.eligible_blobs.len() == gc.blobs_eligible && !had_journal => {
            PruneScope::Targeted { repositories: changed, blobs: gc.eligible_blobs.clone(), litter_budget: LITTER_SWEEP_REPOSITORIES }
        }
        _ => PruneScope::Everything,
    };
    // The emptier stops before the prune moves its litter into the trash: unlinking from the
    // directory the prune renames into would contend for it (measured: a rename took twice as
    // long). Not waited for: the rest is emptied by the next run, outside this one's window.
    if let Some(emptier) = emptier {
        let (emptied, waited) = emptier.leave();
        report.trash = Some(emptied);
        report.timings.trash_ms = waited.as_millis() as u64;
    }
    let t = Instant::now();
    let pruned = prune(layout, &PruneOptions { upload_max_age, dry_run: false, stop: Some(interrupt.flag()), scope, trash: trash.clone() });
    if pruned.interrupted {
        return Err(interrupted(interrupt, "while pruning", format!("{done} and collected; rerun to finish pruning")));
    }
    let pruned_bytes = pruned.bytes_removed;
    report.prune = Some(pruned);
    report.timings.prune_ms = ms(t);
    if let Some(emptied) = report.trash.as_mut() {
        emptied.left_for_next_run = crate::storage::trash::settle(layout, &opts.run_id);
    }
    // Kept until now, so a run interrupted in the collector or the prune is followed by one
    // that knows to prune everywhere this one deleted.
    if had_journal || !deletions.is_empty() {
        Journal::remove(layout).map_err(|e| MaintenanceError::Storage(format!("cannot remove the sweep journal: {e}")))?;
    }
    let collected = report.gc.as_ref().map_or(&[][..], |gc| &gc.eligible_blobs[..]);
    report.usage_after = sizes.after(&report.usage_before, collected, pruned_bytes);
    report.bytes_reclaimed = report.usage_before.total_bytes.saturating_sub(report.usage_after.total_bytes);
    Ok(())
}

/// The first repository in the storage (a name the write probe may use: with token auth,
/// pushing to an arbitrary name may be refused for another reason than read-only mode).
fn first_repository(layout: &Layout) -> Option<String> {
    fn walk(dir: &Path, prefix: &str, depth: usize) -> Option<String> {
        let Listing::Entries(children) = entry::list(dir) else { return None };
        if !prefix.is_empty() && children.iter().any(|c| RESERVED_DIRS.contains(&c.name.as_str())) {
            return Some(prefix.to_string());
        }
        if depth > 16 {
            return None;
        }
        children.iter().filter(|c| c.kind == Kind::Dir && !c.name.starts_with('_')).find_map(|c| {
            let name = if prefix.is_empty() { c.name.clone() } else { format!("{prefix}/{}", c.name) };
            walk(&c.path, &name, depth + 1)
        })
    }
    walk(&layout.repositories(), "", 0)
}

/// Proves the public registry refuses writes: deleting or collecting while it accepts pushes
/// can lose the blobs of an image pushed meanwhile. When it accepts the probe upload, the
/// cancelled session's leftovers are removed from `layout` — only what the probe created —
/// so a refusal changes nothing.
pub async fn ensure_frozen(client: &RegistryClient, repository: Option<&str>, layout: Option<&Layout>) -> Result<(), MaintenanceError> {
    let url = redact_url(client.url());
    let repository = repository.unwrap_or("regsweep-probe");
    let created_by_probe: Vec<PathBuf> = layout
        .map(|l| {
            let mut dirs = vec![l.uploads(repository), l.repository(repository)];
            dirs.retain(|d| matches!(entry::kind_of(d), Ok(None)));
            dirs
        })
        .unwrap_or_default();
    match client.probe_write(repository).await? {
        WriteProbe::Refused { status } => {
            tracing::info!(url, status, "public registry refuses writes");
            Ok(())
        }
        WriteProbe::Accepted { upload_uuid } => {
            if let (Some(layout), Some(uuid)) = (layout, upload_uuid.filter(|u| !u.contains('/') && !u.contains(".."))) {
                // The session directory is the probe's own (a fresh uuid); never through a symlink.
                let uploads = layout.uploads(repository);
                if matches!(entry::kind_of(&uploads), Ok(Some(Kind::Dir))) {
                    let _ = std::fs::remove_dir_all(uploads.join(uuid));
                }
                for dir in &created_by_probe {
                    let _ = std::fs::remove_dir(dir);
                }
            }
            Err(MaintenanceError::NotFrozen(url))
        }
    }
}
