//! Writes a run's quarantine on the frozen storage, before its first delete: for each batch
//! the revision links, `m-<hex>` tags and `_layers` links of everything the deleted manifests
//! need, then the record (its blob, revision and `run-<id>` tag) last, so a record never names
//! what is not linked. Every link is written to a temporary file and renamed into place, every
//! directory is created one component at a time and never through a symlink, and the file
//! system is synced at the end: a run deletes nothing it has not durably quarantined.
//! Idempotent: a rerun finds the links it wrote and moves on.

use std::collections::HashSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::prepare::Batch;
use crate::digest::Digest;
use crate::storage::Layout;
use crate::storage::entry::{self, Kind};

/// What the quarantine write did, in the report.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub records: usize,
    pub manifests: usize,
    pub blob_links: usize,
    /// Links that were already there (a rerun, or content quarantined by an earlier run).
    pub already_linked: usize,
    pub duration_ms: u64,
    /// Of which syncing the file system (what makes the links durable before any delete).
    pub sync_ms: u64,
}

/// Writes `content` to `dir/name` through a temporary file; false when it already holds it.
/// Never overwrites anything else: what is there was not written by this code.
fn put(dir: &Path, name: &str, content: &[u8]) -> Result<bool, String> {
    let path = dir.join(name);
    match entry::kind_of(&path).map_err(|e| format!("{}: {e}", path.display()))? {
        Some(Kind::File) if fs::read(&path).is_ok_and(|c| c == content) => return Ok(false),
        None => {}
        Some(Kind::File) => return Err(format!("{} holds something else than regsweep would write there; left alone", path.display())),
        Some(k) => return Err(format!("{} is {}, where regsweep writes a file", path.display(), k.describe())),
    }
    let tmp = dir.join(format!("{name}.regsweep-tmp"));
    let mut f = fs::File::create(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(content).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| format!("cannot rename {} into place: {e}", tmp.display()))?;
    Ok(true)
}

struct Writer<'a> {
    layout: &'a Layout,
    written: Written,
    /// Directories already proven real (or created): each is checked once per run.
    real: HashSet<PathBuf>,
}

impl Writer<'_> {
    /// `base/rel` as real directories, creating what is missing; never through a symlink.
    fn real_dirs(&mut self, base: &Path, rel: &Path) -> Result<PathBuf, String> {
        let mut dir = base.to_path_buf();
        if !self.real.contains(&dir) {
            if !matches!(entry::kind_of(&dir), Ok(Some(Kind::Dir))) {
                return Err(format!("{} is not a directory", dir.display()));
            }
            self.real.insert(dir.clone());
        }
        for part in rel.components() {
            let std::path::Component::Normal(part) = part else { return Err(format!("{} is not a plain relative path", rel.display())) };
            dir.push(part);
            if self.real.contains(&dir) {
                continue;
            }
            match entry::kind_of(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
                Some(Kind::Dir) => {}
                None => match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists && matches!(entry::kind_of(&dir), Ok(Some(Kind::Dir))) => {}
                    Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
                },
                Some(k) => {
                    return Err(format!(
                        "{} is {}, where regsweep needs a directory; nothing is written through it",
                        dir.display(),
                        k.describe()
                    ));
                }
            }
            self.real.insert(dir.clone());
        }
        Ok(dir)
    }

    /// A link file under `repositories/<repository>/<rel>/link` naming `digest`.
    fn link(&mut self, repository: &str, rel: &str, digest: &Digest) -> Result<(), String> {
        let dir = self.real_dirs(&self.layout.repositories(), &Path::new(repository).join(rel))?;
        if !put(&dir, "link", digest.as_str().as_bytes())? {
            self.written.already_linked += 1;
        }
        Ok(())
    }

    /// A manifest as a revision of `repository`, tagged `tag`. The tag is its `current/link`
    /// alone: that is what the registry's tag store reads (the `index/` history beside it
    /// only records earlier digests, and these tags never move).
    fn manifest(&mut self, repository: &str, digest: &Digest, tag: &str) -> Result<(), String> {
        self.link(repository, &format!("_manifests/revisions/sha256/{}", digest.hex()), digest)?;
        self.link(repository, &format!("_manifests/tags/{tag}/current"), digest)
    }

    fn batch(&mut self, batch: &Batch) -> Result<(), String> {
        for blob in &batch.blobs {
            if !self.layout.blob_data(blob).exists() {
                return Err(format!("blob {blob} of a manifest to quarantine is missing from the blob store"));
            }
            self.link(&batch.repository, &format!("_layers/sha256/{}", blob.hex()), blob)?;
            self.written.blob_links += 1;
        }
        for m in &batch.manifests {
            self.manifest(&batch.repository, m, &super::manifest_tag(m))?;
            self.written.manifests += 1;
        }
        // The record last: its blob, then its revision and tag.
        let body = batch.record.to_manifest();
        let digest = Digest::of(&body);
        let hex = digest.hex();
        let dir = self.real_dirs(&self.layout.blobs(), &Path::new(&hex[..2]).join(hex))?;
        put(&dir, "data", &body)?;
        self.manifest(&batch.repository, &digest, &super::record_tag(&batch.record.run_id))?;
        self.written.records += 1;
        Ok(())
    }
}

/// Threads writing repositories at once.
const WRITERS: usize = 4;

/// Writes every batch, then syncs the file system the storage is on.
pub fn write(layout: &Layout, batches: &[Batch]) -> Result<Written, String> {
    let started = Instant::now();
    // Repositories are written side by side: each link is a few metadata operations that
    // wait on the file system, not on the CPU.
    let chunk = batches.len().div_ceil(WRITERS).max(1);
    let results: Vec<Result<Written, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut writer = Writer { layout, written: Written::default(), real: HashSet::new() };
                    for batch in part {
                        writer.batch(batch).map_err(|e| format!("quarantine of {}: {e}", batch.record.repository))?;
                    }
                    Ok(writer.written)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a quarantine writer panicked".into()))).collect()
    });
    let mut total = Written::default();
    for r in results {
        let w = r?;
        total.records += w.records;
        total.manifests += w.manifests;
        total.blob_links += w.blob_links;
        total.already_linked += w.already_linked;
    }
    let linked_ms = started.elapsed().as_millis() as u64;
    let root = fs::File::open(layout.v2()).map_err(|e| format!("cannot open {} to sync it: {e}", layout.v2().display()))?;
    nix::unistd::syncfs(&root).map_err(|e| format!("cannot sync the storage's file system: {e}"))?;
    let mut written = total;
    written.duration_ms = started.elapsed().as_millis() as u64;
    written.sync_ms = written.duration_ms - linked_ms;
    tracing::info!(
        records = written.records,
        manifests = written.manifests,
        blob_links = written.blob_links,
        linked_ms,
        ms = written.duration_ms,
        "quarantine written"
    );
    Ok(written)
}
