//! The performance goals of the sweep engine, measured side by side in one run on one storage
//! of 200 repositories and 4,000 tags (run: `cargo bench --bench sweep`):
//! - snapshot + plan from storage in at most half the time of `garbage-collect --dry-run`;
//! - deletion through the private instance at 400 manifests/s or more;
//! - peak memory of `regsweep maintenance` under 100 MiB.
//!
//! Results are appended to `bench/RESULTS.md` with the machine and the command.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use regsweep::demo::DemoRegistry;
use regsweep::fixture::{Format, push_image};

#[path = "results.rs"]
mod results;

const REPOSITORIES: usize = 200;
const TAGS_PER_REPOSITORY: usize = 20;
const KEEP_LATEST: usize = 10;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("sweep: benchmark");
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mut reg = DemoRegistry::start(None).await?;
    let layout = reg.layout();
    let client = reg.client()?;
    let t = Instant::now();
    let jobs = (0..REPOSITORIES).flat_map(|r| (0..TAGS_PER_REPOSITORY).map(move |t| (r, t)));
    let mut pushes = futures::stream::iter(jobs.map(|(r, t)| {
        let client = client.clone();
        async move {
            push_image(&client, &format!("bench/team-{}/app-{r}", r % 10), Some(&format!("build-{t}")), Format::Docker, &[512], &[]).await
        }
    }))
    .buffer_unordered(16);
    while let Some(r) = pushes.next().await {
        r?;
    }
    let fill = t.elapsed();
    // Spread push times so keepLatest has an order to work with.
    let now = Utc::now();
    for r in 0..REPOSITORIES {
        for t in 0..TAGS_PER_REPOSITORY {
            let when = now - chrono::Duration::hours((TAGS_PER_REPOSITORY - t) as i64);
            regsweep::fixture::set_tag_pushed(&layout, &format!("bench/team-{}/app-{r}", r % 10), &format!("build-{t}"), when)?;
        }
    }
    reg.restart(true).await?;
    eprintln!("filled {REPOSITORIES} repositories with {} tags in {fill:?}", REPOSITORIES * TAGS_PER_REPOSITORY);

    let gc_dry_run = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let out = Command::new(&reg.bin)
                    .args(["garbage-collect", "--dry-run"])
                    .arg(reg.config_path())
                    .output()
                    .expect("garbage-collect runs");
                assert!(out.status.success(), "garbage-collect --dry-run failed: {}", String::from_utf8_lossy(&out.stderr));
                t.elapsed()
            })
            .collect(),
    );
    let policy_yaml = results::keep_latest_policy("bench", "bench/**", KEEP_LATEST);
    let policy = regsweep::policy::load::from_yaml(&policy_yaml, "bench")?;
    let compiled = regsweep::policy::compile(&policy.spec)?;
    let mut planned = 0;
    let snapshot_and_plan = median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let snap = regsweep::storage::read_storage(&layout).expect("snapshot");
                let plan = regsweep::plan::plan(&compiled, &snap, &[], Utc::now());
                planned = plan.summary.manifests_deleted;
                t.elapsed()
            })
            .collect(),
    );

    let dir = tempfile::tempdir()?;
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, &policy_yaml)?;
    let report_file = dir.path().join("report.json");
    let t = Instant::now();
    let out = results::maintenance(&reg, &policy_file, &report_file).output()?;
    let maintenance = t.elapsed();
    anyhow::ensure!(out.status.success(), "maintenance failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_file)?)?;
    let deleted = report["delete"]["deleted"].as_u64().unwrap_or(0);
    let per_second = report["delete"]["perSecond"].as_f64().unwrap_or(0.0);
    let peak_rss = report["peakRssBytes"].as_u64().unwrap_or(0);
    reg.restart(false).await?;
    let verify = regsweep::verify::verify_registry(&reg.client()?).await?;
    anyhow::ensure!(verify.is_ok(), "kept images broken after the benchmark sweep: {:?}", verify.problems);

    let ratio = snapshot_and_plan.as_secs_f64() / gc_dry_run.as_secs_f64();
    let mib = peak_rss as f64 / (1024.0 * 1024.0);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let row = format!(
        "| {} | {} | {REPOSITORIES}×{TAGS_PER_REPOSITORY} | {:.0} ms | {:.0} ms | {ratio:.2} ({}) | {deleted} of {planned} at {per_second:.0}/s ({}) | {mib:.1} MiB ({}) | {:.1} s |",
        Utc::now().format("%Y-%m-%d"),
        results::machine(),
        gc_dry_run.as_secs_f64() * 1000.0,
        snapshot_and_plan.as_secs_f64() * 1000.0,
        verdict(ratio <= 0.5),
        verdict(per_second >= 400.0),
        verdict(mib < 100.0),
        maintenance.as_secs_f64(),
    );
    println!("{row}");
    results::record(
        "Sweep",
        "Command: `cargo bench --bench sweep` (goals in `benches/sweep.rs`).",
        "| date | machine | repos×tags | gc --dry-run | snapshot+plan | ratio (goal ≤ 0.5) | deletes (goal ≥ 400/s) | maintenance peak RSS (goal < 100 MiB) | maintenance wall |",
        &row,
    )?;
    if let Some(p) = reg.process.take() {
        p.stop().await;
    }
    Ok(())
}
