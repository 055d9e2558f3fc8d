//! The read-only window at scale (issue 13), on storage written by `regsweep::synth`, side by
//! side in one run (`cargo bench --bench scale`; `REGSWEEP_SCALE_TAGS` changes the 20,000):
//! 1. linear deletes: all but 10 of N tags in one repository, against the same number of
//!    deletions spread over 1,000 repositories (goal: ≥ 0.8 × the spread rate); the old path
//!    (`--untag-via-api`) at N/10 shows the cliff it replaces;
//! 2. the ceiling: a plain concurrent DELETE loop (16 in flight) on the same storage and
//!    private instance, against the executor's delete rate (goal: ≥ 0.9 ×);
//! 3. every phase of `maintenance` from its report, and the collector's time beside it.
//!
//! Rows go to `bench/RESULTS.md` with the machine and the command.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use regsweep::demo::DemoRegistry;
use regsweep::synth::{RepoShape, write};

#[path = "results.rs"]
mod results;

const KEEP: usize = 10;
const SPREAD_REPOSITORIES: usize = 1000;

fn policy_yaml() -> String {
    results::keep_latest_policy("scale", "**", KEEP)
}

fn plain(name: String, tags: usize) -> RepoShape {
    RepoShape { name, tags, alias_every: 0, index_every: 0, untagged: 0 }
}

/// A frozen registry on freshly generated storage.
async fn registry_with(shapes: &[RepoShape]) -> anyhow::Result<DemoRegistry> {
    let mut reg = DemoRegistry::start(None).await?;
    if let Some(p) = reg.process.take() {
        p.stop().await;
    }
    let t = Instant::now();
    let written = write(&reg.layout(), shapes, Utc::now())?;
    eprintln!("generated {} tags, {} manifests, {} blobs in {:?}", written.tags, written.manifests, written.blobs, t.elapsed());
    reg.restart(true).await?;
    Ok(reg)
}

struct Run {
    report: serde_json::Value,
}

impl Run {
    fn ms(&self, phase: &str) -> f64 {
        self.report["timings"][phase].as_f64().unwrap_or(0.0)
    }
    fn deleted(&self) -> u64 {
        self.report["delete"]["deleted"].as_u64().unwrap_or(0)
    }
    fn rate(&self) -> f64 {
        self.report["delete"]["perSecond"].as_f64().unwrap_or(0.0)
    }
    fn phases(&self) -> String {
        format!(
            "snapshot {:.1} s, plan {:.1} s, gc check {:.1} s, untag {:.1} s, deletes {:.1} s, gc {:.1} s, prune {:.1} s, total {:.1} s, peak RSS {:.0} MiB",
            self.ms("snapshotMs") / 1000.0,
            self.ms("planMs") / 1000.0,
            self.ms("gcCheckMs") / 1000.0,
            self.ms("untagMs") / 1000.0,
            self.ms("deleteMs") / 1000.0,
            self.ms("gcMs") / 1000.0,
            self.ms("pruneMs") / 1000.0,
            self.ms("totalMs") / 1000.0,
            self.report["peakRssBytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0),
        )
    }
}

fn maintenance(reg: &DemoRegistry, extra: &[&str]) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_yaml())?;
    let report = dir.path().join("report.json");
    let out = results::maintenance(&reg, &policy, &report).args(extra).output()?;
    anyhow::ensure!(out.status.success(), "maintenance failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(Run { report: serde_json::from_slice(&std::fs::read(&report)?)? })
}

async fn verify(reg: &mut DemoRegistry, expected_tags: usize) -> anyhow::Result<()> {
    reg.restart(false).await?;
    let verify = regsweep::verify::verify_registry(&reg.client()?).await?;
    anyhow::ensure!(verify.is_ok() && verify.tags == expected_tags, "after the sweep: {} tags, {:?}", verify.tags, verify.problems);
    Ok(())
}

/// `registry garbage-collect --dry-run` on the storage, timed.
fn gc_dry_run(reg: &DemoRegistry) -> Duration {
    let t = Instant::now();
    let out = Command::new(&reg.bin).args(["garbage-collect", "--dry-run"]).arg(reg.config_path()).output().expect("garbage-collect runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

/// The registry's own ceiling: the plan's deletions as a plain loop of DELETEs, 16 in
/// flight, against a delete-enabled instance on the storage (planned tags removed first, as
/// the executor does).
async fn ceiling(reg: &DemoRegistry) -> anyhow::Result<(usize, Duration)> {
    let layout = reg.layout();
    let policy = regsweep::policy::load::from_yaml(&policy_yaml(), "scale")?;
    let compiled = regsweep::policy::compile(&policy.spec)?;
    let snapshot = regsweep::storage::read_storage(&layout).map_err(anyhow::Error::msg)?;
    let plan = regsweep::plan::plan(&compiled, &snapshot, &[], Utc::now());
    regsweep::maintenance::untag::untag_planned(&layout, &plan, None, &std::sync::atomic::AtomicBool::new(false))?;
    let deletions = plan.deletions();
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, regsweep::maintenance::instance::free_port()));
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: \"{addr}\"}}\n",
            layout.root().display()
        ),
    )?;
    let instance = regsweep::maintenance::instance::RegistryProcess::start(&reg.bin, &config, Vec::new(), addr, None).await?;
    let http = reqwest::Client::new();
    let url = instance.url();
    let t = Instant::now();
    let mut results = futures::stream::iter(deletions.iter().map(|d| {
        let (http, url) = (http.clone(), url.clone());
        async move { http.delete(format!("{url}/v2/{}/manifests/{}", d.repository, d.digest)).send().await.map(|r| r.status()) }
    }))
    .buffer_unordered(16);
    let mut ok = 0;
    while let Some(r) = results.next().await {
        if r?.is_success() {
            ok += 1;
        }
    }
    let took = t.elapsed();
    instance.stop().await;
    Ok((ok, took))
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("scale: benchmark");
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let tags: usize = std::env::var("REGSWEEP_SCALE_TAGS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let per_repo = (tags - KEEP) / SPREAD_REPOSITORIES + KEEP;
    let spread_shapes: Vec<RepoShape> =
        (0..SPREAD_REPOSITORIES).map(|i| plain(format!("spread/team-{}/app-{i}", i % 20), per_repo)).collect();

    // Deletions spread over 1,000 repositories, and the ceiling on the same storage.
    let mut spread = registry_with(&spread_shapes).await?;
    let gc_spread = gc_dry_run(&spread);
    let spread_run = maintenance(&spread, &[])?;
    verify(&mut spread, SPREAD_REPOSITORIES * KEEP).await?;
    eprintln!("spread: {} deleted at {:.0}/s; {}", spread_run.deleted(), spread_run.rate(), spread_run.phases());
    drop(spread);
    let fresh = registry_with(&spread_shapes).await?;
    let (ceiling_n, ceiling_took) = ceiling(&fresh).await?;
    let ceiling_rate = ceiling_n as f64 / ceiling_took.as_secs_f64();
    eprintln!("ceiling: {ceiling_n} plain DELETEs in {ceiling_took:?} ({ceiling_rate:.0}/s)");
    drop(fresh);

    // One repository: the new path at N, the old one at N/10.
    let mut one = registry_with(&[plain("ci/app".into(), tags)]).await?;
    let gc_one = gc_dry_run(&one);
    let one_run = maintenance(&one, &[])?;
    verify(&mut one, KEEP).await?;
    eprintln!("one repository: {} deleted at {:.0}/s; {}", one_run.deleted(), one_run.rate(), one_run.phases());
    drop(one);
    let small = tags / 10;
    let mut old = registry_with(&[plain("ci/app".into(), small)]).await?;
    let old_run = maintenance(&old, &["--untag-via-api"])?;
    verify(&mut old, KEEP).await?;
    eprintln!("one repository, untag via API: {} deleted at {:.0}/s", old_run.deleted(), old_run.rate());
    drop(old);

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let linear = one_run.rate() / spread_run.rate();
    let at_ceiling = spread_run.rate() / ceiling_rate;
    let row = format!(
        "| {} | {} | {tags} tags | {:.0}/s | {:.0}/s | {linear:.2} ({}) | {small} tags via API: {:.0}/s | {ceiling_rate:.0}/s | {at_ceiling:.2} ({}) | gc --dry-run {:.1} s; {} | gc --dry-run {:.1} s; {} |",
        Utc::now().format("%Y-%m-%d"),
        results::machine(),
        one_run.rate(),
        spread_run.rate(),
        verdict(linear >= 0.8),
        old_run.rate(),
        verdict(at_ceiling >= 0.9),
        gc_one.as_secs_f64(),
        one_run.phases(),
        gc_spread.as_secs_f64(),
        spread_run.phases(),
    );
    println!("{row}");
    results::record(
        "Scale (issue 13)",
        "Command: `cargo bench --bench scale` (storage written by `regsweep::synth`; goals in `benches/scale.rs`). Rates are the executor's delete loop (manifests/s).",
        "| date | machine | deletions | one repository | 1,000 repositories | ratio (goal ≥ 0.8) | before (O(N²)) | plain DELETE loop | executor ÷ loop (goal ≥ 0.9) | one repository: phases | 1,000 repositories: phases |",
        &row,
    )?;
    Ok(())
}
