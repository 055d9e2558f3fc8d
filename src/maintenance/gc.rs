//! The registry's own garbage collector, `registry garbage-collect`, run on the frozen storage.
//! Never with `--delete-untagged`: in 2.8 it deletes the untagged platform images of a tagged
//! multi-arch index. regsweep deletes untagged manifests itself, through the API.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::instance::controlled_command;
use crate::digest::Digest;

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcOutcome {
    pub marked: usize,
    pub blobs_eligible: usize,
    pub manifests_eligible: usize,
    #[serde(skip)]
    pub eligible_blobs: Vec<Digest>,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot run {bin}: {cause}")]
    Spawn { bin: String, cause: String },
    #[error("exited with {status}; its output ends with:\n{tail}")]
    Failed { status: String, tail: String },
}

/// Parses `N blobs marked, M blobs and K manifests eligible for deletion` and the
/// `blob eligible for deletion: <digest>` lines.
pub fn parse_output(text: &str) -> Option<(usize, usize, usize, Vec<Digest>)> {
    let mut summary = None;
    let mut eligible = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.split("blob eligible for deletion: ").nth(1) {
            if let Ok(d) = Digest::parse(rest.split_whitespace().next().unwrap_or("").trim_matches('"')) {
                eligible.push(d);
            }
        } else if let Some(pos) = line.find(" blobs marked, ") {
            let numbers: Vec<usize> = line[..pos]
                .rsplit(|c: char| !c.is_ascii_digit())
                .take(1)
                .chain(line[pos..].split(|c: char| !c.is_ascii_digit()))
                .filter_map(|s| s.parse().ok())
                .collect();
            if numbers.len() >= 3 {
                summary = Some((numbers[0], numbers[1], numbers[2]));
            }
        }
    }
    summary.map(|(m, b, k)| (m, b, k, eligible))
}

pub async fn run_gc(bin: &Path, config: &Path, env: &[(String, String)], dry_run: bool) -> Result<GcOutcome, GcError> {
    let started = Instant::now();
    let mut cmd = controlled_command(bin, env);
    cmd.arg("garbage-collect");
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| GcError::Spawn { bin: bin.display().to_string(), cause: e.to_string() })?;
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let tail = || text.lines().filter(|l| !l.trim().is_empty()).rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    if !out.status.success() {
        return Err(GcError::Failed { status: out.status.to_string(), tail: tail() });
    }
    let (marked, blobs_eligible, manifests_eligible, eligible_blobs) =
        parse_output(&text).ok_or_else(|| GcError::Failed { status: "success, but without its summary line".into(), tail: tail() })?;
    tracing::info!(marked, blobs_eligible, manifests_eligible, dry_run, "garbage-collect finished");
    Ok(GcOutcome { marked, blobs_eligible, manifests_eligible, eligible_blobs, duration: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_and_eligible_blobs() {
        let d = Digest::of(b"x");
        let text = format!("app: marking manifest sha256:aa\n\n12 blobs marked, 3 blobs and 0 manifests eligible for deletion\nblob eligible for deletion: {d}\n");
        let (m, b, k, list) = parse_output(&text).unwrap();
        assert_eq!((m, b, k), (12, 3, 0));
        assert_eq!(list, vec![d.clone()]);
        let logged = format!("time=\"2026\" level=info msg=\"Deleting blob: /docker/registry/v2/blobs/sha256/aa/{}\" go.version=go1\n7 blobs marked, 0 blobs and 0 manifests eligible for deletion", d.hex());
        assert_eq!(parse_output(&logged).unwrap().0, 7);
        assert!(parse_output("nothing").is_none());
    }
}
