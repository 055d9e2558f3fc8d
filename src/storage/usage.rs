//! Bytes on disk under the registry's storage: measured, not estimated, so the report's
//! "reclaimed" is what the volume actually got back.
//!
//! Only `docker/registry/v2` is walked: that is all the registry writes, and a volume's root
//! can hold things that are not the registry's (an ext4 `lost+found` readable only by root,
//! which would fail the walk for a non-root sweep).

use std::io::ErrorKind;
use std::path::Path;

use serde::Serialize;

use super::blobs::Blobs;
use super::layout::Layout;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Sizes of all files (blobs, links, upload sessions), not of directories.
    pub total_bytes: u64,
    /// Sizes of `blobs/sha256/xx/<hex>/data`.
    pub blob_bytes: u64,
    pub blobs: usize,
    pub files: usize,
}

/// Where the walk is, relative to `blobs/sha256`: a blob's `data` sits at depth 3
/// (`xx/<hex>/data`).
fn walk(dir: &Path, usage: &mut Usage, blob_depth: Option<usize>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // Missing (a fresh storage), or removed while we walk.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    for entry in entries {
        let entry = entry?;
        let kind = match entry.file_type() {
            Ok(k) => k,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if kind.is_dir() {
            walk(&entry.path(), usage, blob_depth.map(|d| d + 1))?;
        } else if kind.is_file() {
            let len = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            usage.files += 1;
            usage.total_bytes += len;
            if blob_depth == Some(2) && entry.file_name() == "data" {
                usage.blobs += 1;
                usage.blob_bytes += len;
            }
        }
    }
    Ok(())
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.total_bytes += other.total_bytes;
        self.blob_bytes += other.blob_bytes;
        self.blobs += other.blobs;
        self.files += other.files;
    }
}

/// Measures the storage at `layout` with a plain directory walk (no symlinks followed).
pub fn measure(layout: &Layout) -> std::io::Result<Usage> {
    let mut usage = outside_repositories(layout, None)?;
    walk(&layout.repositories(), &mut usage, None)?;
    tracing::debug!(root = %layout.root().display(), ?usage, "storage measured");
    Ok(usage)
}

/// Everything under `docker/registry/v2` but `repositories/`. The sha256 blob store is
/// taken from `blobs` when given (a snapshot has read every blob's size already), else walked.
pub(crate) fn outside_repositories(layout: &Layout, blobs: Option<&Blobs>) -> std::io::Result<Usage> {
    let mut usage = Usage::default();
    let v2 = layout.v2();
    for entry in std::fs::read_dir(&v2).into_iter().flatten() {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            // Never followed: what it points at is not the registry's storage.
            continue;
        }
        if !kind.is_dir() {
            let len = entry.metadata()?.len();
            usage.files += 1;
            usage.total_bytes += len;
        } else if entry.file_name() == "blobs" {
            // Other digest algorithms or stray files, should there be any: counted, not blobs.
            for other in std::fs::read_dir(entry.path())?.flatten() {
                let kind = other.file_type()?;
                if kind.is_dir() && other.file_name() == "sha256" && blobs.is_some() {
                    let blobs = blobs.expect("given");
                    let bytes = blobs.total_bytes();
                    usage.add(&Usage { total_bytes: bytes, blob_bytes: bytes, blobs: blobs.len(), files: blobs.len() });
                } else if kind.is_dir() {
                    walk(&other.path(), &mut usage, (other.file_name() == "sha256").then_some(0))?;
                } else if kind.is_file() {
                    usage.files += 1;
                    usage.total_bytes += other.metadata()?.len();
                }
            }
        } else if entry.file_name() != "repositories" {
            walk(&entry.path(), &mut usage, None)?;
        }
    }
    Ok(usage)
}

/// A repository's own files: everything under its `_` directories and the files beside them,
/// not its nested repositories (each measured on its own).
pub(crate) fn of_repository(dir: &Path) -> std::io::Result<Usage> {
    let mut usage = Usage::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(usage),
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() && entry.file_name().to_string_lossy().starts_with('_') {
            walk(&entry.path(), &mut usage, None)?;
        } else if kind.is_file() {
            usage.files += 1;
            usage.total_bytes += entry.metadata()?.len();
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn counts_blobs_and_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert_eq!(measure(&layout).unwrap(), Usage::default(), "a missing storage measures zero");
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        for (d, len) in [(&a, 100), (&b, 50)] {
            std::fs::create_dir_all(layout.blob_data(d).parent().unwrap()).unwrap();
            std::fs::write(layout.blob_data(d), vec![0u8; len]).unwrap();
        }
        let link = layout.revision_link("team-a/app", &a);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::fs::write(&link, a.as_str()).unwrap();
        // An upload's `data` is not a blob.
        let upload = layout.uploads("team-a/app").join("u1");
        std::fs::create_dir_all(&upload).unwrap();
        std::fs::write(upload.join("data"), [0u8; 7]).unwrap();
        // Outside docker/registry/v2: not the registry's.
        std::fs::write(dir.path().join("stray"), [0u8; 1000]).unwrap();
        let u = measure(&layout).unwrap();
        assert_eq!(u, Usage { total_bytes: 150 + 71 + 7, blob_bytes: 150, blobs: 2, files: 4 });
        // Measured by the snapshot's readers, in the same walk as the snapshot itself.
        let read = crate::storage::read::read_each_measured(&layout, |_, _| ()).unwrap();
        assert_eq!(read.usage, Some(u));
    }

    #[test]
    fn thousands_of_files_are_fast() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        for i in 0..3000u32 {
            let d = Digest::of(&i.to_le_bytes());
            std::fs::create_dir_all(layout.blob_data(&d).parent().unwrap()).unwrap();
            std::fs::write(layout.blob_data(&d), [1u8; 10]).unwrap();
        }
        let started = std::time::Instant::now();
        let u = measure(&layout).unwrap();
        assert_eq!((u.blobs, u.blob_bytes), (3000, 30_000));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
