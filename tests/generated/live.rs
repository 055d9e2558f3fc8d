//! Maintenance cases against the real registry: the generated registry is pushed through the
//! API (push times then set on disk), optionally one repository is damaged, the registry is
//! frozen (read-only), `run_maintenance` sweeps it, the registry is thawed, and everything is
//! checked from outside: the plan against the README's invariants, every tag that must stay
//! is served and its whole graph verifies, every deleted tag and manifest is gone, and no blob
//! is left on disk that no remaining manifest revision references. With quarantine on, the
//! run is then restored (`restore --run`) and every tag must be back with its digest, every
//! deleted manifest pullable again, and every image whole.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{TimeZone, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use regsweep::demo::DemoRegistry;
use regsweep::digest::Digest;
use regsweep::maintenance::run::{MaintenanceOptions, run_maintenance};
use regsweep::plan::Action;
use regsweep::registry::RegistryClient;
use regsweep::storage::Layout;

use super::matching::cosign_subject;
use super::model::{LIVE_SIZE, Model};
use super::oracle::{self, Want};
use super::storage::{self, DAMAGES, Damage};
use super::{Case, check, damageable_case, first_lines, generate_case};

/// How many cases run at once (each has its own registry processes; most of a case is spent
/// waiting on them, so three fit on two cores).
const WORKERS: usize = 3;
/// A maintenance run longer than this on a damaged storage with a FIFO is taken as hung; the
/// FIFO is then fed end-of-file so the run can finish and be checked.
const FIFO_LIMIT: StdDuration = StdDuration::from_secs(15);

/// The tag to damage: in a repository a rule governs, preferring a rule that deletes
/// untagged manifests and a tag alone on its manifest — where taking the damaged tag as
/// absent would make its manifest untagged and delete it.
pub fn damage_target(case: &Case) -> Option<(String, String, Digest)> {
    let mut rng = StdRng::seed_from_u64(case.seed ^ 0xda3a9e);
    let mut scored: Vec<(u8, &super::model::RepoM, &super::model::TagM)> = Vec::new();
    for r in case.model.repos.values() {
        let Some(rule) = case.policy.rule_for(&r.name) else { continue };
        for t in r.tags.values().filter(|t| cosign_subject(&t.name).is_none()) {
            let score = 2 * u8::from(case.policy.rules[rule].untagged_delete()) + u8::from(r.tags_on(&t.digest).len() == 1);
            scored.push((score, r, t));
        }
    }
    let top = scored.iter().map(|s| s.0).max()?;
    let best: Vec<&(u8, &super::model::RepoM, &super::model::TagM)> = scored.iter().filter(|s| s.0 == top).collect();
    let (_, repo, tag) = **best.choose(&mut rng)?;
    Some((repo.name.clone(), tag.name.clone(), tag.digest.clone()))
}

async fn push_model(client: &RegistryClient, layout: &Layout, model: &Model) -> Result<(), String> {
    let e = |what: String| move |err: regsweep::registry::RegistryError| format!("{what}: {err}");
    for repo in model.repos.values() {
        let mut blobs_done = BTreeSet::new();
        // Images (signatures and referrers included) before the indexes that list them.
        let mut order: Vec<&super::model::Mf> = repo.manifests.values().collect();
        order.sort_by_key(|m| m.is_index());
        for m in order {
            for b in m.blobs() {
                if blobs_done.insert(b.clone()) {
                    let got = client.push_blob(&repo.name, &model.blobs[&b]).await.map_err(e(format!("push blob {b} to {}", repo.name)))?;
                    assert_eq!(got, b);
                }
            }
            let got = client
                .put_manifest(&repo.name, &m.digest.as_str(), &m.media_type, &m.body)
                .await
                .map_err(e(format!("push manifest {} to {}", m.digest, repo.name)))?;
            if got != m.digest {
                return Err(format!("{}: the registry reports {got} for {}", repo.name, m.digest));
            }
        }
        for (tag, d) in &repo.tag_pushes {
            let m = &repo.manifests[d];
            client.put_manifest(&repo.name, tag, &m.media_type, &m.body).await.map_err(e(format!("tag {}:{tag}", repo.name)))?;
        }
    }
    for repo in model.repos.values() {
        for m in repo.manifests.values() {
            regsweep::fixture::set_manifest_pushed(layout, &repo.name, &m.digest, m.pushed).map_err(|e| e.to_string())?;
        }
        for t in repo.tags.values() {
            regsweep::fixture::set_tag_pushed(layout, &repo.name, &t.name, t.pushed).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn blob_bytes_on_disk(root: &Path) -> u64 {
    let mut total = 0;
    for prefix in std::fs::read_dir(root.join("docker/registry/v2/blobs/sha256")).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
            total += std::fs::metadata(b.path().join("data")).map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

async fn served_tags(client: &RegistryClient) -> Result<BTreeSet<(String, String)>, String> {
    let mut out = BTreeSet::new();
    for repo in client.catalog().await.map_err(|e| e.to_string())?.into_iter().filter(|r| !regsweep::quarantine::is_quarantine(r)) {
        match client.tags(&repo).await {
            Ok(tags) => out.extend(tags.into_iter().map(|t| (repo.clone(), t))),
            Err(regsweep::registry::RegistryError::RepositoryUnknown { .. }) => {}
            Err(e) => return Err(format!("tags of {repo}: {e}")),
        }
    }
    Ok(out)
}

struct Outcome {
    violations: Vec<String>,
    dump: String,
    /// Tags and manifests the sweep deleted, bytes GC freed: shows the case did something.
    deleted: (usize, usize, u64),
}

/// What a case adds to the plain sweep.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Plain,
    /// One repository damaged on disk.
    Damaged,
    /// `spec.quarantine` on, and the run restored afterwards.
    Quarantine,
}

async fn one(seed: u64, mode: Mode) -> Outcome {
    let damaged = mode == Mode::Damaged;
    let now = Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap();
    let case = if damaged { damageable_case(seed, LIVE_SIZE, now, true) } else { generate_case(seed, LIVE_SIZE, now, true) };
    let dump = case.dump();
    let mut deleted = (0, 0, 0);
    let violations = match sweep(&case, mode, &mut deleted).await {
        Ok(v) => v,
        Err(e) => vec![format!("the case could not run: {e}")],
    };
    Outcome { violations, dump, deleted }
}

async fn sweep(case: &Case, mode: Mode, deleted: &mut (usize, usize, u64)) -> Result<Vec<String>, String> {
    let damaged = mode == Mode::Damaged;
    let mut v = Vec::new();
    // The free port can be taken between choosing and binding it (cases run side by side).
    let mut started = Err(anyhow::anyhow!("not tried"));
    for _ in 0..3 {
        started = DemoRegistry::start(None).await;
        if started.is_ok() {
            break;
        }
    }
    let mut reg = started.map_err(|e| format!("start the registry: {e}"))?;
    let layout = reg.layout();
    let root = layout.root().to_path_buf();
    push_model(&reg.client().map_err(|e| e.to_string())?, &layout, &case.model).await?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut damaged_repos = BTreeSet::new();
    let damage = if damaged {
        let kind = DAMAGES[case.seed as usize % DAMAGES.len()];
        let (repo, tag, digest) = damage_target(case).ok_or("no tagged repository governed by a rule to damage")?;
        damaged_repos.insert(repo.clone());
        Some(storage::damage(&layout, &repo, &tag, &digest, kind, scratch.path()))
    } else {
        None
    };
    let bytes_before = blob_bytes_on_disk(&root);
    // What a restore must give back (a damaged tag cannot be read, so only with quarantine).
    let digests_before =
        if mode == Mode::Quarantine { served_digests(&reg.client().map_err(|e| e.to_string())?).await? } else { BTreeMap::new() };
    reg.restart(true).await.map_err(|e| format!("freeze: {e}"))?;

    let mut document = case.document.clone();
    if mode == Mode::Quarantine {
        document.spec.quarantine = Some(regsweep::policy::spec::QuarantineSpec { keep_for: "1h".into() });
    }
    let opts = MaintenanceOptions { protections: case.protections(), concurrency: 8, ..reg.maintenance_options(document) };
    // A FIFO can hang the run: after FIFO_LIMIT, feed it end-of-file until the run returns.
    let done = Arc::new(AtomicBool::new(false));
    let overran = Arc::new(AtomicBool::new(false));
    let watchdog = damage.as_ref().filter(|d| d.kind == Damage::LinkIsFifo).map(|d| {
        let (done, overran, fifo) = (done.clone(), overran.clone(), d.path.clone());
        std::thread::spawn(move || watch_fifo(&fifo, &done, &overran))
    });
    let started = Instant::now();
    let outcome = run_maintenance(opts).await;
    done.store(true, Ordering::SeqCst);
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    if overran.load(Ordering::SeqCst) {
        v.push(format!(
            "maintenance hung on the FIFO {} (more than {}s; fed end-of-file to finish)",
            damage.as_ref().unwrap().path.display(),
            FIFO_LIMIT.as_secs()
        ));
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            v.push(format!("maintenance failed after {:.1}s: {e}", started.elapsed().as_secs_f64()));
            return Ok(v);
        }
    };
    let plan = &outcome.plan;
    let expect = oracle::expect(&case.model, &case.policy, &case.all_refs(), plan.generated_at, &damaged_repos);
    v.extend(check::check_plan(plan, &case.model, &expect));
    if let Some(d) = &damage {
        if outcome.report.snapshot_problems == 0 {
            v.push(format!("the damage in {} ({:?}) is not reported (report.snapshotProblems is 0)", d.repo, d.kind));
        }
        if let Err(e) = d.still_there() {
            v.push(format!("the damaged entry was changed by the sweep: {e}"));
        }
        // Put the tag back, so the checks below see whether what it names survived.
        d.repair();
    }
    reg.restart(false).await.map_err(|e| format!("thaw: {e}"))?;
    let client = reg.client().map_err(|e| e.to_string())?;

    // Tags: what must stay is served, what must go is not, and the plan's Either is what
    // the registry shows.
    let served = served_tags(&client).await?;
    let planned_kept: BTreeSet<(String, String)> = plan
        .repositories
        .iter()
        .flat_map(|r| r.tags.iter().filter(|t| t.action == Action::Keep).map(move |t| (r.name.clone(), t.tag.clone())))
        .collect();
    for (r, e) in &expect.repos {
        for (t, x) in &e.tags {
            let pair = (r.clone(), t.clone());
            let is_served = served.contains(&pair);
            match x.want {
                Want::Keep if !is_served => v.push(format!("{r}:{t} must stay ({}) but is not served after the sweep", x.why)),
                Want::Delete if is_served => v.push(format!("{r}:{t} must go ({}) but is still served", x.why)),
                Want::Either if is_served != planned_kept.contains(&pair) => v.push(format!("{r}:{t}: the plan and the registry disagree")),
                _ => {}
            }
        }
    }
    for (r, t) in &served {
        if !expect.repos.get(r).is_some_and(|e| e.tags.contains_key(t)) {
            v.push(format!("{r}:{t} is served but was never pushed"));
        }
    }
    // Every served tag pulls whole, with correct digests, from the fresh registry.
    match regsweep::verify::verify_registry(&client).await {
        Ok(report) => v.extend(report.problems.iter().map(|p| format!("verify: {}:{} {:?}: {}", p.repository, p.tag, p.digest, p.problem))),
        Err(e) => v.push(format!("verify failed: {e}")),
    }
    // Manifests: the untagged ones that must stay are whole; the deleted ones are gone.
    for (r, e) in &expect.repos {
        let repo = &case.model.repos[r];
        for (d, x) in &e.manifests {
            let head = client.head_manifest(r, &d.as_str()).await.map_err(|e| format!("HEAD {r}@{d}: {e}"))?;
            match (x.want, head) {
                (Want::Keep, None) => v.push(format!("{r}@{} must stay ({}) but is gone", d.short(), x.why)),
                (Want::Delete, Some(_)) => v.push(format!("{r}@{} must go ({}) but is still there", d.short(), x.why)),
                (Want::Keep, Some(_)) if repo.tags_on(d).is_empty() => {
                    for b in repo.manifests[d].blobs() {
                        if let Err(err) = client.fetch_blob_verified(r, &b).await {
                            v.push(format!("{r}@{}: kept untagged manifest's blob {}: {err}", d.short(), b.short()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // Disk: nothing unreferenced left, nothing referenced missing.
    let (unreferenced, missing) = storage::unreferenced_blobs(&root);
    if !unreferenced.is_empty() {
        v.push(format!("{} blob(s) left on disk that no remaining manifest references: {unreferenced:?}", unreferenced.len()));
    }
    v.extend(missing);
    let freed = bytes_before.saturating_sub(blob_bytes_on_disk(&root));
    *deleted = (plan.summary.tags_deleted, plan.summary.manifests_deleted, freed);
    if damage.is_none() && freed != plan.summary.estimate.bytes_freed {
        v.push(format!("garbage collection freed {freed} bytes, the plan estimated {}", plan.summary.estimate.bytes_freed));
    }
    if mode == Mode::Quarantine {
        v.extend(restore_all(&client, plan, &outcome.report.run_id, &digests_before).await?);
    }
    if let Some(p) = reg.process.take() {
        p.stop().await;
    }
    Ok(v)
}

/// Every (repository, tag) served outside the quarantine, with its digest.
async fn served_digests(client: &RegistryClient) -> Result<BTreeMap<(String, String), Digest>, String> {
    let mut out = BTreeMap::new();
    for (repo, tag) in served_tags(client).await? {
        let m = client.get_manifest(&repo, &tag).await.map_err(|e| format!("GET {repo}:{tag}: {e}"))?;
        out.insert((repo, tag), m.digest);
    }
    Ok(out)
}

/// Restores the run and checks that everything it deleted is back.
async fn restore_all(
    client: &RegistryClient,
    plan: &regsweep::plan::Plan,
    run_id: &str,
    before: &BTreeMap<(String, String), Digest>,
) -> Result<Vec<String>, String> {
    use regsweep::quarantine::restore::{Selector, restore};
    let mut v = Vec::new();
    if plan.summary.manifests_deleted == 0 {
        return Ok(v);
    }
    if let Err(e) = restore(client, &[Selector::Run(run_id.to_string())], false, Utc::now()).await {
        v.push(format!("restore --run {run_id}: {e}"));
        return Ok(v);
    }
    let after = served_digests(client).await?;
    if &after != before {
        let differ: Vec<_> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|k| format!("{}:{} was {:?}, is {:?}", k.0, k.1, before.get(k).map(|d| d.short()), after.get(k).map(|d| d.short())))
            .collect();
        v.push(format!("after the restore the served tags differ from before the sweep: {differ:?}"));
    }
    for r in &plan.repositories {
        for m in r.manifests.iter().filter(|m| m.action == Action::Delete) {
            match client.head_manifest(&r.name, &m.digest.as_str()).await {
                Ok(Some(_)) => {}
                Ok(None) => v.push(format!("{}@{} was deleted and is not back after the restore", r.name, m.digest.short())),
                Err(e) => v.push(format!("HEAD {}@{}: {e}", r.name, m.digest.short())),
            }
        }
    }
    match regsweep::verify::verify_registry(client).await {
        Ok(report) => v.extend(
            report.problems.iter().map(|p| format!("verify after restore: {}:{} {:?}: {}", p.repository, p.tag, p.digest, p.problem)),
        ),
        Err(e) => v.push(format!("verify after restore failed: {e}")),
    }
    Ok(v)
}

fn watch_fifo(fifo: &PathBuf, done: &AtomicBool, overran: &AtomicBool) {
    let started = Instant::now();
    while !done.load(Ordering::SeqCst) {
        if started.elapsed() > FIFO_LIMIT {
            overran.store(true, Ordering::SeqCst);
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new().read(true).write(true).custom_flags(nix::libc::O_NONBLOCK).open(fifo);
        }
        std::thread::sleep(StdDuration::from_millis(100));
    }
}

/// Runs the seeds on [`WORKERS`] threads, each case on its own single-threaded runtime.
pub fn run_all(seeds: &[u64], mode: Mode) -> Vec<(u64, String)> {
    let damaged = mode == Mode::Damaged;
    let queue = Arc::new(Mutex::new(seeds.iter().copied().collect::<VecDeque<u64>>()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let totals = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..WORKERS.min(seeds.len()))
        .map(|_| {
            let (queue, results, totals) = (queue.clone(), results.clone(), totals.clone());
            std::thread::spawn(move || {
                loop {
                    let Some(seed) = queue.lock().unwrap().pop_front() else { break };
                    let started = Instant::now();
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(one(seed, mode))));
                    let (line, stats) = match outcome {
                        Ok(o) if o.violations.is_empty() => (None, o.deleted),
                        Ok(o) => (Some(format!("{}{}", first_lines(&o.violations, 12), o.dump)), o.deleted),
                        Err(p) => (
                            Some(format!(
                                "panicked: {}",
                                p.downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default()
                            )),
                            (0, 0, 0),
                        ),
                    };
                    eprintln!(
                        "maintenance case {seed}{}: {:.1}s, {} tags and {} manifests deleted, {} blob bytes freed{}",
                        match mode {
                            Mode::Plain => "",
                            Mode::Damaged => " (damaged)",
                            Mode::Quarantine => " (quarantine)",
                        },
                        started.elapsed().as_secs_f64(),
                        stats.0,
                        stats.1,
                        stats.2,
                        if line.is_some() { " — FAILED" } else { "" }
                    );
                    totals.lock().unwrap().push(stats);
                    if let Some(l) = line {
                        results.lock().unwrap().push((seed, l));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let totals = totals.lock().unwrap();
    if !damaged && seeds.len() >= 10 {
        let manifests: usize = totals.iter().map(|t| t.1).sum();
        let with_deletes = totals.iter().filter(|t| t.1 > 0).count();
        assert!(with_deletes * 2 >= totals.len() && manifests > 0, "too few maintenance cases delete anything: {totals:?}");
    }
    let mut r = std::mem::take(&mut *results.lock().unwrap());
    r.sort_by_key(|x| x.0);
    r
}
