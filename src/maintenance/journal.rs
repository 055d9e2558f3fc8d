//! The executor's durable intent: before the first DELETE, the approved deletions are written
//! to `<root>/.regsweep/journal.json` (fsynced, renamed into place); the file is removed once the run
//! has deleted, collected and pruned. A run that finds a journal was interrupted mid-delete (an index gone
//! before its children, say): its deletions are *approved* for the next plan, which deletes
//! those that are still untagged and kept by nothing — a tag pushed since, a kept index, a
//! protection still win.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::lock::state_dir;
use crate::digest::Digest;
use crate::plan::Deletion;
use crate::storage::{Layout, Repository, Snapshot};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub run_id: String,
    pub created: DateTime<Utc>,
    /// Repository → digests approved for deletion.
    pub deletions: BTreeMap<String, BTreeSet<Digest>>,
}

fn path(layout: &Layout) -> PathBuf {
    state_dir(layout).join("journal.json")
}

impl Journal {
    pub fn new(run_id: &str, deletions: &[Deletion]) -> Self {
        let mut map: BTreeMap<String, BTreeSet<Digest>> = BTreeMap::new();
        for d in deletions {
            map.entry(d.repository.clone()).or_default().insert(d.digest.clone());
        }
        Journal { run_id: run_id.to_string(), created: Utc::now(), deletions: map }
    }

    pub fn len(&self) -> usize {
        self.deletions.values().map(BTreeSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The journal an interrupted run left, if any. One that cannot be read is an error: the
    /// caller must not guess what was approved.
    pub fn load(layout: &Layout) -> Result<Option<Journal>, String> {
        let p = path(layout);
        match crate::storage::entry::kind_of(&p) {
            Ok(None) => return Ok(None),
            Ok(Some(crate::storage::entry::Kind::File)) => {}
            Ok(Some(k)) => return Err(format!("{} is {}; move it away and rerun", p.display(), k.describe())),
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
        let text = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            format!("{} is not a regsweep journal ({e}); move it away and rerun (its deletions are then planned afresh)", p.display())
        })
    }

    /// Writes it durably: a temporary file, fsync, rename, fsync of the directory.
    pub fn write(&self, layout: &Layout) -> std::io::Result<()> {
        let dir = state_dir(layout);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("journal.json.tmp");
        // Written as it is serialized: at 36,000 deletions the text is 5 MB.
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer(&mut out, self).map_err(std::io::Error::other)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path(layout))?;
        std::fs::File::open(&dir)?.sync_all()
    }

    pub fn remove(layout: &Layout) -> std::io::Result<()> {
        match std::fs::remove_file(path(layout)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Marks the snapshot's manifests this journal approved (those still there).
    pub fn approve_in(&self, snapshot: &mut Snapshot) -> usize {
        snapshot.repositories.values_mut().map(|r| self.approve_repository(r)).sum()
    }

    /// [`Journal::approve_in`] for one repository.
    pub fn approve_repository(&self, repo: &mut Repository) -> usize {
        let Some(digests) = self.deletions.get(&repo.name) else { return 0 };
        let mut n = 0;
        for d in digests.iter().filter(|d| repo.manifests.contains_key(*d)) {
            repo.approved.insert(*d, self.run_id.clone());
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_loaded_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert!(Journal::load(&layout).unwrap().is_none());
        let d = Deletion { repository: "a".into(), digest: Digest::of(b"x"), rank: 1 };
        Journal::new("r1", &[d.clone(), d]).write(&layout).unwrap();
        let j = Journal::load(&layout).unwrap().unwrap();
        assert_eq!((j.run_id.as_str(), j.len()), ("r1", 1));
        Journal::remove(&layout).unwrap();
        assert!(Journal::load(&layout).unwrap().is_none());
        std::fs::write(path(&layout), "{").unwrap();
        assert!(Journal::load(&layout).unwrap_err().contains("not a regsweep journal"));
    }
}
