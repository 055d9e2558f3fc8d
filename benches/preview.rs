//! The API preview (issue 13, goal 6), on storage written by `regsweep::synth` (the usual mix,
//! 30 tags per repository, every config with its `created` time) served by the real registry,
//! side by side in one run (`cargo bench --bench preview`; `REGSWEEP_PREVIEW_TAGS`, default
//! 3,000):
//! - the registry's GET ceiling: exactly the requests `plan --url` makes (each tag's manifest,
//!   each index's children, each image's config once), as a plain loop 16 in flight;
//! - `regsweep plan --url` with `keepLatest: 10` (ages from the configs, the default): goal
//!   ≥ 0.8 × the ceiling's request rate, and it must order by those ages (it deletes);
//! - registry-cli (andrey-pohilko/registry-cli, not part of this repository) with
//!   `--delete --dry-run --num 10`, and with `--order-by-date`, when `REGSWEEP_REGISTRY_CLI`
//!   names its `registry.py`: goal, `plan --url` takes at most its time.
//!
//! Rows go to `bench/RESULTS.md` with the machine and the command.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use regsweep::demo::DemoRegistry;
use regsweep::storage::snapshot::Content;
use regsweep::synth::{RepoShape, write};

#[path = "results.rs"]
mod results;

const TAGS_PER_REPOSITORY: usize = 30;
const KEEP: usize = 10;
const IN_FLIGHT: usize = 16;

/// Every request `plan --url` makes after listing: paths under `/v2/`.
fn preview_requests(snapshot: &regsweep::storage::snapshot::Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (name, repo) in &snapshot.repositories {
        let mut configs = std::collections::BTreeSet::new();
        for (tag, t) in &repo.tags {
            out.push(format!("{name}/manifests/{tag}"));
            let Some(m) = repo.manifests.get(&t.digest) else { continue };
            let first_image = match &m.content {
                Content::Index { children } => {
                    for c in children {
                        out.push(format!("{name}/manifests/{c}"));
                    }
                    children.iter().filter_map(|c| repo.manifests.get(c)).find(|c| matches!(c.content, Content::Image { .. }))
                }
                _ => Some(m),
            };
            if let Some(Content::Image { config, .. }) = first_image.map(|m| &m.content)
                && configs.insert(config.clone())
            {
                out.push(format!("{name}/blobs/{config}"));
            }
        }
    }
    out
}

/// The plain loop: every request, `IN_FLIGHT` at a time, bodies read.
async fn ceiling(url: &str, requests: &[String]) -> anyhow::Result<Duration> {
    let http = reqwest::Client::new();
    let t = Instant::now();
    let mut results = futures::stream::iter(requests.iter().map(|path| {
        let http = http.clone();
        async move {
            let r = http.get(format!("{url}/v2/{path}")).header("Accept", regsweep::media::MANIFEST_ACCEPT).send().await?;
            anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
            r.bytes().await?;
            Ok(())
        }
    }))
    .buffer_unordered(IN_FLIGHT);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(t.elapsed())
}

fn timed(cmd: &mut Command) -> anyhow::Result<(Duration, Vec<u8>)> {
    let t = Instant::now();
    let out = cmd.stderr(Stdio::piped()).output()?;
    anyhow::ensure!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok((t.elapsed(), out.stdout))
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("preview: benchmark");
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let tags: usize = std::env::var("REGSWEEP_PREVIEW_TAGS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let repos = tags.div_ceil(TAGS_PER_REPOSITORY);
    let shapes: Vec<RepoShape> = (0..repos).map(|i| RepoShape::mixed(format!("team-{}/app-{i}", i % 20), TAGS_PER_REPOSITORY)).collect();
    let mut reg = DemoRegistry::start(None).await?;
    if let Some(p) = reg.process.take() {
        p.stop().await;
    }
    let written = write(&reg.layout(), &shapes, Utc::now())?;
    reg.restart(false).await?;
    let snapshot = regsweep::storage::read_storage(&reg.layout()).map_err(anyhow::Error::msg)?;
    let requests = preview_requests(&snapshot);
    let url = reg.url();
    eprintln!("{} tags in {repos} repositories; {} GETs per preview", written.tags, requests.len());

    // Warm the registry and the page cache alike for everyone.
    ceiling(&url, &requests).await?;
    let ceiling_took = ceiling(&url, &requests).await?;
    let ceiling_rate = requests.len() as f64 / ceiling_took.as_secs_f64();

    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, results::keep_latest_policy("preview", "**", KEEP))?;
    let (plan_took, out) =
        timed(Command::new(env!("CARGO_BIN_EXE_regsweep")).args(["plan", "-o", "json", "-f"]).arg(&policy).args(["--url", &url]))?;
    let plan: serde_json::Value = serde_json::from_slice(&out)?;
    let deleted = plan["summary"]["tagsDeleted"].as_u64().unwrap_or(0);
    let times = plan["times"].as_str().unwrap_or("?").to_string();
    // Every repository keeps its newest 10 of 30 builds (and their aliases): 20 builds go.
    anyhow::ensure!(
        deleted as usize >= repos * (TAGS_PER_REPOSITORY - KEEP),
        "plan --url ordered by no time: {deleted} tags deleted, times {times}"
    );
    let plan_rate = requests.len() as f64 / plan_took.as_secs_f64();
    let at_ceiling = plan_rate / ceiling_rate;
    eprintln!(
        "ceiling {ceiling_rate:.0} GET/s; plan --url {plan_took:?} ({plan_rate:.0} GET/s, {at_ceiling:.2}), {deleted} tags deleted, times {times}"
    );

    let (cli_plain, cli_dated) = match std::env::var("REGSWEEP_REGISTRY_CLI") {
        Ok(script) => {
            let cli = |extra: &[&str]| {
                timed(
                    Command::new("python3")
                        .arg(&script)
                        .args(["-r", &url, "--delete", "--dry-run", "--num", &KEEP.to_string()])
                        .args(extra)
                        .stdout(Stdio::null()),
                )
                .map(|(t, _)| t)
            };
            // registry-cli's own failures are results too (its --order-by-date path has
            // crashed with a TypeError in get_datetime_tags()).
            let said = |r: anyhow::Result<Duration>| r.map_err(|e| e.to_string().lines().last().unwrap_or("failed").to_string());
            (Some(said(cli(&[]))), Some(said(cli(&["--order-by-date"]))))
        }
        Err(_) => (None, None),
    };
    let secs = |d: &Option<Result<Duration, String>>| match d {
        None => "not run (set REGSWEEP_REGISTRY_CLI)".to_string(),
        Some(Ok(d)) => format!("{:.1} s", d.as_secs_f64()),
        Some(Err(e)) => format!("fails: {}", e.replace('|', "/")),
    };
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let vs_cli = match &cli_plain {
        Some(Ok(c)) => format!("{:.2} ({})", plan_took.as_secs_f64() / c.as_secs_f64(), verdict(plan_took <= *c)),
        _ => "-".into(),
    };
    let row = format!(
        "| {} | {} | {} tags in {repos} repositories, {} GETs | {ceiling_rate:.0}/s | {:.1} s, {plan_rate:.0}/s, {deleted} tags deleted, ages: {times} | {at_ceiling:.2} ({}) | {} | {} | {vs_cli} |",
        Utc::now().format("%Y-%m-%d"),
        results::machine(),
        written.tags,
        requests.len(),
        plan_took.as_secs_f64(),
        verdict(at_ceiling >= 0.8),
        secs(&cli_plain),
        secs(&cli_dated),
    );
    println!("{row}");
    results::record(
        "API preview (issue 13)",
        "Command: `REGSWEEP_REGISTRY_CLI=/path/to/registry-cli/registry.py cargo bench --bench preview` (storage written by `regsweep::synth`, served by the real registry; goals in `benches/preview.rs`).",
        "| date | machine | registry | GET ceiling (16 in flight) | plan --url | ÷ ceiling (goal ≥ 0.8) | registry-cli --dry-run --num 10 | with --order-by-date | plan ÷ registry-cli (goal ≤ 1) |",
        &row,
    )?;
    Ok(())
}
