//! One sweep at a time per storage: an exclusive `flock` on `<root>/.regsweep/lock`. The
//! kernel releases it when the holder exits, however it exits (a crash, SIGKILL, a node
//! lost with its NFS lease), so a lock is never stale; the file records who holds it, for
//! the message the next run prints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::Layout;

/// regsweep's own directory in the storage root (the registry only uses `docker/`).
pub fn state_dir(layout: &Layout) -> PathBuf {
    layout.root().join(".regsweep")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub run_id: String,
    pub pid: u32,
    pub host: String,
    pub since: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another sweep holds {path} since {since} (run {run_id}, pid {pid} on {host}); nothing was changed. Wait for it to finish; the lock is released when that process exits"
    )]
    Held { path: PathBuf, since: String, run_id: String, pid: String, host: String },
    #[error(
        "the storage root {root} is on a read-only filesystem, so a sweep cannot change it; nothing was changed. Mount the registry's volume read-write for the sweep"
    )]
    ReadOnly { root: PathBuf },
    #[error("cannot take the sweep lock {path}: {cause}; nothing was changed")]
    Io { path: PathBuf, cause: String },
}

/// Held while the value lives.
#[derive(Debug)]
pub struct StorageLock {
    file: File,
    path: PathBuf,
}

impl StorageLock {
    pub fn acquire(layout: &Layout, run_id: &str) -> Result<Self, LockError> {
        let dir = state_dir(layout);
        let path = dir.join("lock");
        let io = |e: std::io::Error| {
            if e.raw_os_error() == Some(nix::libc::EROFS) {
                LockError::ReadOnly { root: layout.root().to_path_buf() }
            } else {
                LockError::Io { path: path.clone(), cause: e.to_string() }
            }
        };
        // A holder removes the file before it unlocks: a run that locked the removed file
        // finds the path gone or another file there, and tries again.
        let mut attempts = 0;
        let mut file = loop {
            attempts += 1;
            if let Err(e) = std::fs::create_dir(&dir)
                && e.kind() != ErrorKind::AlreadyExists
            {
                return Err(io(e));
            }
            let file = match OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path) {
                Err(e) if e.kind() == ErrorKind::NotFound && attempts < 10 => continue,
                other => other.map_err(io)?,
            };
            match file.try_lock() {
                Ok(()) if same_file(&file, &path) => break file,
                Ok(()) if attempts < 10 => continue,
                Ok(()) => return Err(LockError::Io { path: path.clone(), cause: "the lock file keeps being replaced".into() }),
                Err(TryLockError::WouldBlock) => break Self::held(file, path.clone())?,
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        };
        let holder = Holder { run_id: run_id.to_string(), pid: std::process::id(), host: hostname(), since: Utc::now() };
        let record = serde_json::to_vec(&holder).expect("holder serializes");
        file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(&record)).map_err(io)?;
        tracing::info!(lock = %path.display(), "sweep lock taken");
        Ok(StorageLock { file, path })
    }

    /// The error for a lock someone else holds, naming them.
    fn held(mut file: File, path: PathBuf) -> Result<File, LockError> {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let holder: Option<Holder> = serde_json::from_str(&text).ok();
        let unknown = || "unknown".to_string();
        Err(LockError::Held {
            path,
            since: holder.as_ref().map_or_else(unknown, |h| h.since.to_rfc3339()),
            run_id: holder.as_ref().map_or_else(unknown, |h| h.run_id.clone()),
            pid: holder.as_ref().map_or_else(unknown, |h| h.pid.to_string()),
            host: holder.as_ref().map_or_else(unknown, |h| h.host.clone()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StorageLock {
    fn drop(&mut self) {
        // Removed while still locked (a waiting run notices, see `acquire`), then unlocked:
        // a finished sweep leaves nothing of its lock behind. The directory goes when empty.
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = self.file.unlock();
    }
}

/// Whether `path` still names the open file (same device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_who_holds_it_and_the_lock_is_reusable() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let first = StorageLock::acquire(&layout, "run-1").unwrap();
        let err = StorageLock::acquire(&layout, "run-2").unwrap_err().to_string();
        assert!(err.contains("another sweep holds") && err.contains("run-1") && err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        StorageLock::acquire(&layout, "run-3").expect("released on drop");
    }
}
