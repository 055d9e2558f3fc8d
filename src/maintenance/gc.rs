//! The registry's own garbage collector, `registry garbage-collect [--dry-run] CONFIG`, run on
//! the frozen storage. regsweep never reimplements the mark and sweep: the registry knows
//! its own formats best, and operators trust its collector.
//!
//! Never with `--delete-untagged` (`-m`): in 2.8 it deletes the untagged platform manifests
//! of a tagged multi-arch index, which leaves the index listed but unpullable. regsweep
//! deletes the untagged manifests it means to delete itself, through the API.
//!
//! Output of docker-registry 2.8.2, measured: everything regsweep parses is on **stdout**
//! (`fmt.Printf`): a line per repository name, `<repo>: marking manifest <digest> ` (note the
//! trailing space) and `<repo>: marking blob <digest>` lines, an empty line,
//! `N blobs marked, M blobs and K manifests eligible for deletion`, then one
//! `blob eligible for deletion: <digest>` line per blob, in random (Go map) order. `K` is 0
//! without `-m`. A real run also logs `level=info msg="Deleting blob: /docker/registry/v2/
//! blobs/sha256/xx/<hex>"` per blob on **stderr**, where errors go too (exit status 1).
//! It fails on a storage without `docker/registry/v2/repositories` or `…/v2/blobs`
//! (`filesystem: Path not found: …`), which is what a registry that never received a push
//! has; that case is "nothing to collect", not an error.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;

use nix::sys::signal::Signal;

use super::instance::controlled_command;
use super::interrupt::Interrupt;
use crate::digest::Digest;

/// How many lines of the collector's output an error carries.
const ERROR_TAIL_LINES: usize = 20;

/// What `garbage-collect` reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcOutcome {
    /// Blobs (manifests, configs, layers) reachable from some manifest revision.
    pub marked: usize,
    /// Blobs deleted (or, in a dry run, that would be).
    pub blobs_eligible: usize,
    /// Manifests deleted; always 0, since regsweep never passes `--delete-untagged`.
    pub manifests_eligible: usize,
    /// The digests behind `blobs_eligible`; not serialized (it can be thousands long).
    #[serde(skip)]
    pub eligible_blobs: Vec<Digest>,
    #[serde(rename = "durationMs", serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot run {bin} garbage-collect: {cause}")]
    Spawn { bin: String, cause: String },
    #[error("registry garbage-collect {status}; its output ends with:\n{tail}")]
    Failed { status: String, tail: String },
    #[error("registry garbage-collect was stopped by the interruption")]
    Interrupted,
    #[error(
        "registry garbage-collect did not finish within {secs}s (an entry it cannot read, such as a FIFO, makes it hang); it was stopped"
    )]
    TimedOut { secs: u64 },
}

/// What is kept of the collector's stdout as it is read, line by line: at 200,000 tags it
/// prints about a million `marking` lines (80 MB), which are counted, not kept.
#[derive(Default)]
struct StdoutScan {
    summary: Option<(usize, usize, usize)>,
    eligible: Vec<Digest>,
    tail: Tail,
}

impl StdoutScan {
    fn line(&mut self, line: &str) {
        if let Some(rest) = line.trim().strip_prefix("blob eligible for deletion: ") {
            match Digest::parse(rest.trim()) {
                Ok(d) => self.eligible.push(d),
                Err(e) => tracing::warn!(line, error = %e, "unexpected garbage-collect output line"),
            }
        } else if let Some(counts) = parse_summary(line.trim()) {
            // The digests follow the summary: one allocation of the right size, not a
            // doubling list (bounded, should the count be garbled).
            self.eligible.reserve_exact(counts.1.min(1 << 24));
            self.summary = Some(counts);
        }
        self.tail.push(line);
    }

    fn outcome(self) -> Option<GcOutcome> {
        let (marked, blobs_eligible, manifests_eligible) = self.summary?;
        if self.eligible.len() != blobs_eligible {
            tracing::warn!(
                listed = self.eligible.len(),
                blobs_eligible,
                "garbage-collect listed a different number of blobs than it counted"
            );
        }
        Some(GcOutcome { marked, blobs_eligible, manifests_eligible, eligible_blobs: self.eligible, duration: Duration::ZERO })
    }
}

/// What is kept of its stderr: how many blobs it says it deleted (counted; it logs each
/// once, and a set of 100,000 digests was 10 MB of the sweep's peak), the rest of the lines
/// (errors) up to a bound, and the tail.
#[derive(Default)]
struct StderrScan {
    deleted: usize,
    other: Vec<String>,
    tail: Tail,
}

impl StderrScan {
    fn line(&mut self, line: &str) {
        match line.split("Deleting blob: ").nth(1) {
            Some(_) => self.deleted += 1,
            None if self.other.len() < 1000 => self.other.push(line.to_string()),
            None => {}
        }
        self.tail.push(line);
    }
}

/// The last non-empty lines of a stream.
#[derive(Default)]
struct Tail(std::collections::VecDeque<String>);

impl Tail {
    fn push(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        if self.0.len() == ERROR_TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line.to_string());
    }
}

/// Parses the collector's stdout. `None` when the summary line is missing.
pub fn parse_output(stdout: &str) -> Option<GcOutcome> {
    let mut scan = StdoutScan::default();
    stdout.lines().for_each(|l| scan.line(l));
    scan.outcome()
}

/// Feeds every line of `stream` to `line`, as it arrives (invalid UTF-8 replaced).
async fn scan_lines(stream: Option<impl tokio::io::AsyncRead + Unpin>, mut line: impl FnMut(&str)) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let Some(stream) = stream else { return Ok(()) };
    let mut reader = tokio::io::BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(());
        }
        line(String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']));
    }
}

/// `N blobs marked, M blobs and K manifests eligible for deletion`.
fn parse_summary(line: &str) -> Option<(usize, usize, usize)> {
    let (marked, rest) = line.split_once(" blobs marked, ")?;
    let (blobs, rest) = rest.split_once(" blobs and ")?;
    let manifests = rest.strip_suffix(" manifests eligible for deletion")?;
    Some((marked.parse().ok()?, blobs.parse().ok()?, manifests.parse().ok()?))
}

/// The storage has never been written to: the collector finds no `repositories` or `blobs`
/// directory. Nothing exists that could be collected.
fn is_empty_storage_failure(stderr: &str) -> bool {
    stderr.contains("Path not found: /docker/registry/v2/repositories") || stderr.contains("Path not found: /docker/registry/v2/blobs")
}

#[cfg(test)]
fn tail(stdout: &str, stderr: &str) -> String {
    let (mut out, mut err) = (Tail::default(), Tail::default());
    stdout.lines().for_each(|l| out.push(l));
    stderr.lines().for_each(|l| err.push(l));
    joined_tail(&out, &err)
}

/// The last lines of stdout then stderr, as one text.
fn joined_tail(stdout: &Tail, stderr: &Tail) -> String {
    let lines: Vec<&str> = stdout.0.iter().chain(stderr.0.iter()).map(String::as_str).collect();
    lines[lines.len().saturating_sub(ERROR_TAIL_LINES)..].join("\n")
}

/// Runs `<bin> garbage-collect [--dry-run] <config>` with a cleared environment (PATH and
/// `env` only, e.g. the private instance's `REGISTRY_STORAGE_*` variables), so a stray
/// variable of the Job cannot change what it collects.
pub async fn run_gc(bin: &Path, config: &Path, env: &[(String, String)], dry_run: bool) -> Result<GcOutcome, GcError> {
    run_gc_with(bin, config, env, dry_run, &Interrupt::none(), None).await
}

/// [`run_gc`], stopped (its whole process group) when `interrupt` fires or `timeout` passes.
pub async fn run_gc_with(
    bin: &Path,
    config: &Path,
    env: &[(String, String)],
    dry_run: bool,
    interrupt: &Interrupt,
    timeout: Option<Duration>,
) -> Result<GcOutcome, GcError> {
    let started = Instant::now();
    let mut cmd = controlled_command(bin, env);
    cmd.arg("garbage-collect");
    if dry_run {
        cmd.arg("--dry-run");
    }
    cmd.arg(config).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    tracing::info!(bin = %bin.display(), config = %config.display(), dry_run, "running registry garbage-collect");
    let mut child = cmd.spawn().map_err(|e| GcError::Spawn { bin: bin.display().to_string(), cause: e.to_string() })?;
    let pid = child.id().unwrap_or(0);
    super::interrupt::register_group(pid);
    let stop_group = || {
        super::interrupt::signal_group(pid, Signal::SIGKILL);
        super::interrupt::unregister_group(pid);
    };
    let limit = timeout.unwrap_or(Duration::MAX);
    let (mut out, mut err) = (StdoutScan::default(), StderrScan::default());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let finished = async {
        let (read_out, read_err) = tokio::join!(scan_lines(stdout, |l| out.line(l)), scan_lines(stderr, |l| err.line(l)));
        let status = child.wait().await?;
        read_out.and(read_err).map(|()| status)
    };
    let status = tokio::select! {
        status = finished => status,
        _ = interrupt.wait() => {
            stop_group();
            return Err(GcError::Interrupted);
        }
        _ = tokio::time::sleep(limit) => {
            stop_group();
            return Err(GcError::TimedOut { secs: limit.as_secs() });
        }
    };
    stop_group();
    let status = status.map_err(|e| GcError::Spawn { bin: bin.display().to_string(), cause: e.to_string() })?;
    let duration = started.elapsed();
    let stderr_text = err.other.join("\n");
    let error_tail = joined_tail(&out.tail, &err.tail);
    if !status.success() {
        if is_empty_storage_failure(&stderr_text) {
            tracing::info!(error = %stderr_text.trim(), "storage has nothing to collect yet");
            return Ok(GcOutcome { duration, ..GcOutcome::default() });
        }
        return Err(GcError::Failed { status: format!("failed ({status})"), tail: error_tail });
    }
    let logged = err.deleted;
    let mut outcome =
        out.outcome().ok_or_else(|| GcError::Failed { status: "succeeded but printed no summary line".into(), tail: error_tail })?;
    outcome.duration = duration;
    if !dry_run && logged != outcome.blobs_eligible {
        tracing::warn!(
            logged,
            eligible = outcome.blobs_eligible,
            "garbage-collect logged a different number of blob deletions than it counted"
        );
    }
    tracing::info!(
        marked = outcome.marked,
        blobs_eligible = outcome.blobs_eligible,
        manifests_eligible = outcome.manifests_eligible,
        dry_run,
        ms = duration.as_millis() as u64,
        "garbage-collect finished"
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_and_eligible_blobs() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let stdout = format!(
            "team-a/app\nteam-a/app: marking manifest {a} \nteam-a/app: marking blob {b}\n\n12 blobs marked, 2 blobs and 0 manifests eligible for deletion\nblob eligible for deletion: {a}\nblob eligible for deletion: {b}\n"
        );
        let outcome = parse_output(&stdout).unwrap();
        assert_eq!((outcome.marked, outcome.blobs_eligible, outcome.manifests_eligible), (12, 2, 0));
        assert_eq!(outcome.eligible_blobs, vec![a, b]);
        assert_eq!(parse_output("\n0 blobs marked, 0 blobs and 0 manifests eligible for deletion\n").unwrap(), GcOutcome::default());
        assert!(parse_output("solo\nsolo: marking blob x\n").is_none());
        assert!(parse_summary("x blobs marked, 1 blobs and 0 manifests eligible for deletion").is_none());
    }

    #[test]
    fn recognises_a_never_written_storage() {
        assert!(is_empty_storage_failure(
            "failed to garbage collect: failed to mark: filesystem: Path not found: /docker/registry/v2/repositories"
        ));
        assert!(is_empty_storage_failure(
            "failed to garbage collect: error enumerating blobs: filesystem: Path not found: /docker/registry/v2/blobs"
        ));
        assert!(!is_empty_storage_failure("configuration error: open /x.yml: no such file or directory"));
    }

    #[test]
    fn the_error_tail_keeps_the_last_lines() {
        let stderr: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let t = tail("out\n", &stderr);
        assert!(t.starts_with("line 10") && t.ends_with("line 29"), "{t}");
    }
}
