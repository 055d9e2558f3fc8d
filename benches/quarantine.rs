//! What quarantine costs (issue 11): the same storage of 200 repositories and 4,000 tags
//! (written by `regsweep::synth`) swept keeping 10 tags each, without and with
//! `spec.quarantine`, alternating (off, on, on, off) on fresh copies; then the expiry sweep
//! of the quarantined copy. Reports each run's wall time and its quarantine write, the disk
//! after (`du`: blocks and files), and checks that expiry frees exactly the blobs the sweep
//! without quarantine freed. Run: `cargo bench --bench quarantine`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use regsweep::demo::DemoRegistry;
use regsweep::storage::Layout;
use regsweep::synth::{RepoShape, write};

#[path = "results.rs"]
mod results;

const REPOSITORIES: usize = 200;
const TAGS_PER_REPOSITORY: usize = 20;
const KEEP_LATEST: usize = 10;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("quarantine: benchmark");
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(run())
}

/// Disk use of a storage: KiB of blocks and number of files (`du`).
fn disk(root: &Path) -> anyhow::Result<(u64, u64)> {
    let kib = String::from_utf8(Command::new("du").arg("-sk").arg(root).output()?.stdout)?;
    let files = String::from_utf8(Command::new("find").arg(root).args(["-type", "f"]).output()?.stdout)?;
    Ok((kib.split_whitespace().next().unwrap_or("0").parse()?, files.lines().count() as u64))
}

fn blob_set(root: &Path) -> anyhow::Result<Vec<String>> {
    let out = String::from_utf8(Command::new("find").arg(root.join("docker/registry/v2/blobs")).args(["-name", "data"]).output()?.stdout)?;
    let mut v: Vec<String> = out.lines().map(String::from).map(|l| l.rsplit('/').nth(1).unwrap_or("").to_string()).collect();
    v.sort();
    Ok(v)
}

struct Swept {
    wall: Duration,
    report: serde_json::Value,
    disk: (u64, u64),
    blobs: Vec<String>,
}

async fn sweep(reg: &DemoRegistry, policy: &Path) -> anyhow::Result<Swept> {
    let report_file = reg.dir.path().join("report.json");
    let t = Instant::now();
    let out = results::maintenance(&reg, policy, &report_file).output()?;
    let wall = t.elapsed();
    anyhow::ensure!(out.status.success(), "maintenance failed: {}", String::from_utf8_lossy(&out.stderr));
    let report = serde_json::from_slice(&std::fs::read(&report_file)?)?;
    let root = reg.layout().root().to_path_buf();
    Ok(Swept { wall, report, disk: disk(&root)?, blobs: blob_set(&root)? })
}

/// A frozen registry on a fresh copy of `base`.
async fn frozen_copy(base: &Path) -> anyhow::Result<DemoRegistry> {
    let mut reg = DemoRegistry::start(None).await?;
    if let Some(p) = reg.process.take() {
        p.stop().await;
    }
    let root = reg.layout().root().to_path_buf();
    std::fs::remove_dir_all(&root)?;
    std::fs::create_dir_all(&root)?;
    let out = Command::new("cp").arg("-a").arg(format!("{}/.", base.display())).arg(&root).output()?;
    anyhow::ensure!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    reg.restart(true).await?;
    Ok(reg)
}

fn ms(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

async fn run() -> anyhow::Result<()> {
    let base = tempfile::tempdir()?;
    let shapes: Vec<RepoShape> =
        (0..REPOSITORIES).map(|i| RepoShape::mixed(format!("bench/team-{}/app-{i}", i % 10), TAGS_PER_REPOSITORY)).collect();
    let written = write(&Layout::new(base.path()), &shapes, Utc::now())?;
    let before = disk(base.path())?;
    eprintln!("{} tags, {} manifests, {} blobs; {} KiB in {} files", written.tags, written.manifests, written.blobs, before.0, before.1);
    let dir = tempfile::tempdir()?;
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, results::keep_latest_policy("bench", "bench/**", KEEP_LATEST))?;
    let quarantined = dir.path().join("quarantined.yaml");
    std::fs::write(
        &quarantined,
        format!("{}  quarantine: {{keepFor: 2s}}\n", results::keep_latest_policy("bench", "bench/**", KEEP_LATEST)),
    )?;

    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut expiry = Vec::new();
    for quarantine in [false, true, true, false] {
        let mut reg = frozen_copy(base.path()).await?;
        if !quarantine {
            off.push(sweep(&reg, &plain).await?);
            continue;
        }
        let swept = sweep(&reg, &quarantined).await?;
        reg.restart(false).await?;
        let verify = regsweep::verify::verify_registry(&reg.client()?).await?;
        anyhow::ensure!(verify.is_ok(), "images broken after the quarantined sweep: {:?}", verify.problems);
        reg.restart(true).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        expiry.push(sweep(&reg, &plain).await?);
        on.push(swept);
    }
    let mean = |v: &[Swept], f: &dyn Fn(&Swept) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let wall = |s: &Swept| s.wall.as_secs_f64();
    let (wall_off, wall_on) = (mean(&off, &wall), mean(&on, &wall));
    let write_ms = mean(&on, &|s| ms(&s.report["timings"]["quarantineMs"]) as f64);
    let sync_ms = mean(&on, &|s| ms(&s.report["quarantine"]["syncMs"]) as f64);
    let deletions = ms(&on[0].report["delete"]["deleted"]);
    let held = on[0].report["plan"]["quarantine"]["enteringBytes"].as_u64().unwrap_or(0);
    let (disk_off, disk_on) = (off[0].disk, on[0].disk);
    let same_blobs = expiry.iter().all(|e| e.blobs == off[0].blobs);
    anyhow::ensure!(same_blobs, "expiry left other blobs than the sweep without quarantine");
    let expiry_wall = mean(&expiry, &wall);
    let row = format!(
        "| {} | {} | {REPOSITORIES}×{TAGS_PER_REPOSITORY} | {deletions} | {wall_off:.1} s | {wall_on:.1} s ({:+.0}%) | {write_ms:.0} ms (sync {sync_ms:.0} ms) | {} KiB / {} files | {} KiB / {} files (+{} KiB, +{} files; {} held) | {expiry_wall:.1} s, same blobs as without: {} |",
        Utc::now().format("%Y-%m-%d"),
        results::machine(),
        (wall_on / wall_off - 1.0) * 100.0,
        disk_off.0,
        disk_off.1,
        disk_on.0,
        disk_on.1,
        disk_on.0 as i64 - disk_off.0 as i64,
        disk_on.1 as i64 - disk_off.1 as i64,
        regsweep::units::bytes(held),
        if same_blobs { "yes" } else { "NO" },
    );
    println!("{row}");
    results::record(
        "Quarantine",
        "Command: `cargo bench --bench quarantine`: the same synthetic storage swept keeping 10 tags per repository, without and with `spec.quarantine` (alternating off, on, on, off; means), then the quarantined copy's expiry sweep. Disk is `du -sk` and the file count after the sweep.",
        "| date | machine | repos×tags | deletions | maintenance without | with quarantine | quarantine write | disk after, without | with quarantine | expiry sweep |",
        &row,
    )?;
    Ok(())
}
