//! The lean snapshot (issue 13, goal 4), on storage written by `regsweep::synth` with the
//! usual mix (aliases, indexes, untagged history) at 100 tags per repository, side by side in
//! one run (`cargo bench --bench lean`; `REGSWEEP_LEAN_TAGS=40000,200000` by default):
//! - `registry garbage-collect --dry-run` against `regsweep plan --storage` (the snapshot and
//!   the plan), both cold (page cache dropped first, when this runs as root) and warm; goal:
//!   ≤ 0.5 ×;
//! - the peak RSS of each, and of a whole `maintenance` (keep the newest 90 of each
//!   repository's 100, so the collector and the prune run on the whole storage); goal:
//!   ≤ 100 MiB at 200,000 tags.
//!
//! Rows go to `bench/RESULTS.md` with the machine and the command.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use regsweep::demo::DemoRegistry;
use regsweep::synth::{RepoShape, write};

#[path = "results.rs"]
mod results;

const TAGS_PER_REPOSITORY: usize = 100;
const KEEP: usize = 90;

fn policy_yaml() -> String {
    results::keep_latest_policy("lean", "**", KEEP)
}

/// A command's wall time and peak RSS (from `wait4`'s rusage: the largest of the command and
/// every descendant it waited for, so for `maintenance` that includes the registry's own
/// `garbage-collect`; `maintenance`'s own peak is in its report).
fn measured(cmd: &mut Command) -> anyhow::Result<(Duration, u64)> {
    // Its log goes to a file: a pipe nobody reads would fill and stall it.
    let log = tempfile::NamedTempFile::new()?;
    let t = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(log.reopen()?).spawn()?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and `pid` is our own child, waited for once here.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = t.elapsed();
    anyhow::ensure!(waited == pid, "wait4 failed");
    anyhow::ensure!(
        nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    Ok((took, usage.ru_maxrss as u64 * 1024))
}

/// Drops the page cache (root only); false when it could not.
fn drop_caches() -> bool {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn gc_dry_run(reg: &DemoRegistry) -> anyhow::Result<(Duration, u64)> {
    measured(Command::new(&reg.bin).args(["garbage-collect", "--dry-run"]).arg(reg.config_path()))
}

fn plan(policy: &Path, root: &Path) -> anyhow::Result<(Duration, u64)> {
    measured(Command::new(env!("CARGO_BIN_EXE_regsweep")).args(["plan", "-o", "json", "-f"]).arg(policy).arg("--storage").arg(root))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn one_size(tags: usize) -> anyhow::Result<String> {
    let repos = tags.div_ceil(TAGS_PER_REPOSITORY);
    let shapes: Vec<RepoShape> = (0..repos).map(|i| RepoShape::mixed(format!("team-{}/app-{i}", i % 50), TAGS_PER_REPOSITORY)).collect();
    let mut reg = DemoRegistry::start(None).await?;
    if let Some(p) = reg.process.take() {
        p.stop().await;
    }
    let t = Instant::now();
    let written = write(&reg.layout(), &shapes, Utc::now())?;
    eprintln!("generated {} tags, {} manifests, {} blobs in {:?}", written.tags, written.manifests, written.blobs, t.elapsed());
    reg.restart(true).await?;
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_yaml())?;
    let root = reg.layout().root().to_path_buf();

    let cold = drop_caches();
    let (gc_cold, gc_rss) = gc_dry_run(&reg)?;
    drop_caches();
    let (plan_cold, plan_rss) = plan(&policy, &root)?;
    let (gc_warm, _) = gc_dry_run(&reg)?;
    let (plan_warm, _) = plan(&policy, &root)?;
    eprintln!(
        "gc --dry-run {gc_cold:?} cold, {gc_warm:?} warm, {:.0} MiB; plan {plan_cold:?} cold, {plan_warm:?} warm, {:.0} MiB",
        mib(gc_rss),
        mib(plan_rss)
    );

    let report = dir.path().join("report.json");
    let (sweep_took, sweep_rss) = measured(&mut results::maintenance(&reg, &policy, &report))?;
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let phase = |p: &str| report["timings"][p].as_f64().unwrap_or(0.0) / 1000.0;
    let own_rss = report["peakRssBytes"].as_u64().unwrap_or(0);
    eprintln!(
        "maintenance {sweep_took:?}, {:.0} MiB (with the collector and the private registry: {:.0} MiB)",
        mib(own_rss),
        mib(sweep_rss)
    );
    reg.restart(false).await?;
    let verify = regsweep::verify::verify_registry(&reg.client()?).await?;
    anyhow::ensure!(verify.is_ok(), "after the sweep: {:?}", verify.problems);

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let (ratio_cold, ratio_warm) = (plan_cold.as_secs_f64() / gc_cold.as_secs_f64(), plan_warm.as_secs_f64() / gc_warm.as_secs_f64());
    let rss_goal = if tags >= 200_000 { format!(" ({})", verdict(mib(own_rss) <= 100.0)) } else { String::new() };
    Ok(format!(
        "| {} | {} | {} tags in {repos} repositories | {:.1} s / {:.1} s, {:.0} MiB | {:.1} s / {:.1} s, {:.0} MiB | {ratio_cold:.2} / {ratio_warm:.2} ({}){} | {:.0} MiB{rss_goal}; with its registry processes {:.0} MiB | {} deleted; snapshot {:.1} s, plan {:.1} s, gc check {:.1} s, untag {:.1} s, deletes {:.1} s, gc {:.1} s, prune {:.1} s, trash wait {:.1} s, total {:.1} s |",
        Utc::now().format("%Y-%m-%d"),
        results::machine(),
        written.tags,
        gc_cold.as_secs_f64(),
        gc_warm.as_secs_f64(),
        mib(gc_rss),
        plan_cold.as_secs_f64(),
        plan_warm.as_secs_f64(),
        mib(plan_rss),
        verdict(ratio_cold <= 0.5 && ratio_warm <= 0.5),
        if cold { "" } else { " (cache not dropped: not root)" },
        mib(own_rss),
        mib(sweep_rss),
        report["delete"]["deleted"].as_u64().unwrap_or(0),
        phase("snapshotMs"),
        phase("planMs"),
        phase("gcCheckMs"),
        phase("untagMs"),
        phase("deleteMs"),
        phase("gcMs"),
        phase("pruneMs"),
        phase("trashMs"),
        phase("totalMs"),
    ))
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("lean: benchmark");
        return Ok(());
    }
    let sizes: Vec<usize> = std::env::var("REGSWEEP_LEAN_TAGS")
        .unwrap_or_else(|_| "40000,200000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Runtime::new()?;
    for tags in sizes {
        let row = runtime.block_on(one_size(tags))?;
        println!("{row}");
        results::record(
            "Lean snapshot (issue 13)",
            "Command: `cargo bench --bench lean` (storage written by `regsweep::synth`, 100 tags per repository with aliases, indexes and untagged history; goals in `benches/lean.rs`). Times are cold / warm page cache; RSS is the peak of each process (for maintenance: its own, from its report, and with the registry processes it runs, from wait4).",
            "| date | machine | storage | gc --dry-run | plan --storage | ratio cold / warm (goal ≤ 0.5) | maintenance peak RSS (goal ≤ 100 MiB at 200k) | maintenance phases |",
            &row,
        )?;
    }
    Ok(())
}
