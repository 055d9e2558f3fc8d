//! Removing what `registry garbage-collect` leaves behind, measured on 2.8.2:
//!
//! - a manifest DELETE leaves `_manifests/revisions/sha256/<hex>/` empty (its `link` gone);
//! - a tag re-pushed over and then deleted by its old digest keeps
//!   `_manifests/tags/<t>/index/sha256/<old hex>/link`, whose revision no longer exists;
//! - GC deletes `blobs/sha256/xx/<hex>/` but not the `_layers/sha256/<hex>/link` files of the
//!   repositories that uploaded the blob, nor the emptied prefix directory `blobs/sha256/xx/`;
//! - an abandoned upload stays in `_uploads/<uuid>/{data,startedat,hashstates/}`;
//! - a repository whose manifests are all deleted keeps its directory (`_layers`, empty
//!   `_manifests/{revisions,tags}`, `_uploads`), so it stays in `_catalog` forever.
//!
//! Pruning never removes a file something still references (a revision `link`, a tag's
//! `current/link`, a blob's `data`) and never touches `repositories/` or `blobs/sha256/`
//! themselves: the collector fails with "Path not found" when either is missing. Anything it
//! cannot read or does not understand is left in place and reported. A second run removes
//! nothing. A dry run reports exactly what a real run would remove.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::layout::{Layout, RESERVED_DIRS, read_link};
use crate::digest::Digest;

/// How many removed paths the report lists (the counts are always complete): a big cleanup
/// removes tens of thousands of `_layers` links, and the report is read by people.
const MAX_LISTED: usize = 1000;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Upload sessions started longer ago than this are abandoned (the storage is frozen
    /// while the sweep runs, so no session can still be in progress).
    pub upload_max_age: Duration,
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { upload_max_age: Duration::from_secs(24 * 3600), dry_run: false }
    }
}

/// What was removed (or, in a dry run, would be).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    pub empty_revisions: usize,
    pub stale_tag_history: usize,
    pub empty_tags: usize,
    pub dangling_layer_links: usize,
    pub abandoned_uploads: usize,
    /// Repositories removed because nothing was left in them (they leave `_catalog`).
    pub repositories_removed: Vec<String>,
    pub empty_blob_dirs: usize,
    pub empty_blob_prefixes: usize,
    /// Removed paths relative to the storage root, in order; the first 1000.
    pub removed: Vec<String>,
    pub removed_not_listed: usize,
    /// Entries left in place because they could not be read or were not understood.
    pub problems: Vec<String>,
}

impl PruneReport {
    pub fn removed_anything(&self) -> bool {
        !self.removed.is_empty() || self.removed_not_listed > 0
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    EmptyRevision,
    StaleTagHistory,
    EmptyTag,
    DanglingLayer,
    AbandonedUpload,
    /// A repository's own directories, or a parent directory it leaves empty.
    Repository,
    EmptyBlobDir,
    EmptyBlobPrefix,
}

struct Entry {
    name: String,
    path: PathBuf,
    is_dir: bool,
}

struct Pruner<'a> {
    layout: &'a Layout,
    opts: &'a PruneOptions,
    now: SystemTime,
    /// Removed paths (in a dry run: those a real run would have removed), so later decisions
    /// (is this directory empty now?) are the same in both modes.
    gone: HashSet<PathBuf>,
    report: PruneReport,
}

fn is_hex_name(name: &str) -> bool {
    Digest::from_hex(name).is_ok()
}

impl Pruner<'_> {
    fn problem(&mut self, path: &Path, what: impl std::fmt::Display) {
        tracing::warn!(path = %path.display(), problem = %what, "left in place");
        self.report.problems.push(format!("{}: {what}", path.display()));
    }

    /// The entries of `dir`; empty when it does not exist, `None` (reported) when unreadable.
    fn list(&mut self, dir: &Path) -> Option<Vec<Entry>> {
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::NotFound => return Some(Vec::new()),
            Err(e) => {
                self.problem(dir, format!("cannot list: {e}"));
                return None;
            }
        };
        let mut out = Vec::new();
        for entry in read {
            match entry.and_then(|e| Ok((e.file_type()?, e))) {
                Ok((kind, e)) => {
                    out.push(Entry { name: e.file_name().to_string_lossy().into_owned(), path: e.path(), is_dir: kind.is_dir() })
                }
                Err(e) => {
                    self.problem(dir, format!("cannot list: {e}"));
                    return None;
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Some(out)
    }

    /// Whether `path` exists; an unanswerable question counts as yes, so nothing is removed
    /// on the strength of an error.
    fn present(&mut self, path: &Path) -> bool {
        match fs::symlink_metadata(path) {
            Ok(_) => !self.gone.contains(path),
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => {
                self.problem(path, format!("cannot stat: {e}"));
                true
            }
        }
    }

    /// Whether `dir` has nothing left in it but what this run removed.
    fn empty_now(&mut self, dir: &Path) -> bool {
        self.list(dir).is_some_and(|entries| entries.iter().all(|e| self.gone.contains(&e.path)))
    }

    /// Removes `path` (a whole tree, or an empty directory when `tree` is false).
    fn remove(&mut self, path: &Path, kind: Kind, tree: bool) -> bool {
        if !self.opts.dry_run {
            let result = if tree { fs::remove_dir_all(path) } else { fs::remove_dir(path) };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    self.problem(path, format!("cannot remove: {e}"));
                    return false;
                }
            }
        }
        tracing::debug!(path = %path.display(), ?kind, dry_run = self.opts.dry_run, "pruned");
        self.gone.insert(path.to_path_buf());
        let r = &mut self.report;
        match kind {
            Kind::EmptyRevision => r.empty_revisions += 1,
            Kind::StaleTagHistory => r.stale_tag_history += 1,
            Kind::EmptyTag => r.empty_tags += 1,
            Kind::DanglingLayer => r.dangling_layer_links += 1,
            Kind::AbandonedUpload => r.abandoned_uploads += 1,
            Kind::Repository => {}
            Kind::EmptyBlobDir => r.empty_blob_dirs += 1,
            Kind::EmptyBlobPrefix => r.empty_blob_prefixes += 1,
        }
        if r.removed.len() < MAX_LISTED {
            r.removed.push(path.strip_prefix(self.layout.root()).unwrap_or(path).display().to_string());
        } else {
            r.removed_not_listed += 1;
        }
        true
    }

    /// Revision directories without a `link`. Returns whether a revision (or something not
    /// understood) remains.
    fn revisions(&mut self, repo: &str) -> bool {
        let Some(entries) = self.list(&self.layout.revisions(repo)) else { return true };
        let mut remains = false;
        for e in entries {
            if !e.is_dir || !is_hex_name(&e.name) {
                self.problem(&e.path, "not a revision directory");
                remains = true;
            } else if self.present(&e.path.join("link")) || !self.remove(&e.path, Kind::EmptyRevision, true) {
                remains = true;
            }
        }
        remains
    }

    /// Tag history entries whose revision is gone, then tags with neither a `current/link`
    /// nor history left. Returns whether a tag remains.
    fn tags(&mut self, repo: &str) -> bool {
        let Some(tags) = self.list(&self.layout.tags(repo)) else { return true };
        let mut remains = false;
        for tag in tags {
            if !tag.is_dir {
                self.problem(&tag.path, "not a tag directory");
                remains = true;
                continue;
            }
            let index = self.layout.tag_index(repo, &tag.name);
            for e in self.list(&index).unwrap_or_default() {
                let stale = e.is_dir && Digest::from_hex(&e.name).is_ok_and(|d| !self.present(&self.layout.revision_link(repo, &d)));
                if stale {
                    self.remove(&e.path, Kind::StaleTagHistory, true);
                }
            }
            let current = self.present(&self.layout.tag_current_link(repo, &tag.name));
            if current || !self.empty_now(&index) || !self.remove(&tag.path, Kind::EmptyTag, true) {
                remains = true;
            }
        }
        remains
    }

    /// `_layers` links whose blob `data` no longer exists (and link directories without a link).
    fn layers(&mut self, repo: &str) {
        for e in self.list(&self.layout.layers(repo)).unwrap_or_default() {
            if !e.is_dir || !is_hex_name(&e.name) {
                continue;
            }
            let link = e.path.join("link");
            let dangling = match read_link(&link) {
                Ok(Ok(d)) => !self.present(&self.layout.blob_data(&d)),
                Ok(Err(why)) => {
                    self.problem(&link, why);
                    false
                }
                Err(err) if err.kind() == ErrorKind::NotFound => self.empty_now(&e.path),
                Err(err) => {
                    self.problem(&link, format!("cannot read: {err}"));
                    false
                }
            };
            if dangling {
                self.remove(&e.path, Kind::DanglingLayer, true);
            }
        }
    }

    /// When an upload session started: its `startedat` (RFC 3339, written by the registry),
    /// else the newest modification time of its directory and its `data`.
    fn upload_started(path: &Path) -> Option<SystemTime> {
        let started = fs::read_to_string(path.join("startedat")).ok().and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok());
        started.map(SystemTime::from).or_else(|| {
            [path.to_path_buf(), path.join("data")].iter().filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok()).max()
        })
    }

    /// Upload sessions older than the threshold. Returns whether a recent one remains.
    fn uploads(&mut self, repo: &str) -> bool {
        let Some(entries) = self.list(&self.layout.uploads(repo)) else { return true };
        let mut remains = false;
        for e in entries.into_iter().filter(|e| e.is_dir) {
            let age = Self::upload_started(&e.path).map(|t| self.now.duration_since(t).unwrap_or_default());
            match age {
                Some(age) if age > self.opts.upload_max_age => {
                    if !self.remove(&e.path, Kind::AbandonedUpload, true) {
                        remains = true;
                    }
                }
                Some(_) => remains = true,
                None => {
                    self.problem(&e.path, "cannot tell when this upload started");
                    remains = true;
                }
            }
        }
        remains
    }

    fn repository(&mut self, name: &str) {
        // Every step runs (each prunes its own litter) before the verdict.
        let revisions = self.revisions(name);
        let tags = self.tags(name);
        self.layers(name);
        let uploads = self.uploads(name);
        if revisions || tags || uploads {
            return;
        }
        let dir = self.layout.repository(name);
        let mut removed_all = true;
        for reserved in RESERVED_DIRS {
            let path = dir.join(reserved);
            if self.present(&path) {
                removed_all &= self.remove(&path, Kind::Repository, true);
            }
        }
        if removed_all {
            tracing::info!(repository = name, dry_run = self.opts.dry_run, "removing an emptied repository");
            self.report.repositories_removed.push(name.to_string());
            self.remove_empty_parents(dir);
        }
    }

    /// The repository directory and its parents up to (not including) `repositories/`, as
    /// long as each is empty: a nested repository (`team-a/app` under `team-a`) keeps its
    /// parents.
    fn remove_empty_parents(&mut self, mut dir: PathBuf) {
        let top = self.layout.repositories();
        while dir.starts_with(&top) && dir != top && self.present(&dir) && self.empty_now(&dir) {
            if !self.remove(&dir, Kind::Repository, false) {
                break;
            }
            let Some(parent) = dir.parent() else { break };
            dir = parent.to_path_buf();
        }
    }

    /// `blobs/sha256/xx/<hex>/` without `data` and empty, then empty `blobs/sha256/xx/`.
    fn blobs(&mut self) {
        for prefix in self.list(&self.layout.blobs()).unwrap_or_default() {
            if !prefix.is_dir || prefix.name.len() != 2 || !prefix.name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                continue;
            }
            for blob in self.list(&prefix.path).unwrap_or_default() {
                let ours = blob.is_dir && is_hex_name(&blob.name) && blob.name.starts_with(&prefix.name);
                if ours && !self.present(&blob.path.join("data")) && self.empty_now(&blob.path) {
                    self.remove(&blob.path, Kind::EmptyBlobDir, false);
                }
            }
            if self.empty_now(&prefix.path) {
                self.remove(&prefix.path, Kind::EmptyBlobPrefix, false);
            }
        }
    }

    /// Repository names under `dir`: a directory is a repository iff it has one of the
    /// registry's own directories; it can also be the parent of nested repositories.
    fn find_repositories(&mut self, dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let Some(children) = self.list(dir) else { return };
        if !prefix.is_empty() && children.iter().any(|c| c.is_dir && RESERVED_DIRS.contains(&c.name.as_str())) {
            out.push(prefix.to_string());
        }
        // Repository path components never start with `_`.
        for child in children.iter().filter(|c| c.is_dir && !c.name.starts_with('_')) {
            let name = if prefix.is_empty() { child.name.clone() } else { format!("{prefix}/{}", child.name) };
            self.find_repositories(&child.path, &name, out);
        }
    }
}

/// Removes GC's litter from the storage at `layout` (see the module documentation).
pub fn prune(layout: &Layout, opts: &PruneOptions) -> PruneReport {
    let mut pruner = Pruner {
        layout,
        opts,
        now: SystemTime::now(),
        gone: HashSet::new(),
        report: PruneReport { dry_run: opts.dry_run, ..Default::default() },
    };
    let mut repos = Vec::new();
    pruner.find_repositories(&layout.repositories(), "", &mut repos);
    // Deepest first, so a parent repository's directory is judged after its children's.
    repos.sort_by_key(|r| std::cmp::Reverse(r.matches('/').count()));
    for repo in &repos {
        pruner.repository(repo);
    }
    pruner.blobs();
    let r = &pruner.report;
    tracing::info!(
        dry_run = opts.dry_run,
        repositories = repos.len(),
        empty_revisions = r.empty_revisions,
        stale_tag_history = r.stale_tag_history,
        empty_tags = r.empty_tags,
        dangling_layer_links = r.dangling_layer_links,
        abandoned_uploads = r.abandoned_uploads,
        repositories_removed = r.repositories_removed.len(),
        empty_blob_dirs = r.empty_blob_dirs + r.empty_blob_prefixes,
        problems = r.problems.len(),
        "pruned GC litter"
    );
    pruner.report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, content: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// Every path under `dir`, for before/after comparisons.
    fn tree(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
                out.push(e.path());
            }
        }
        out.sort();
        out
    }

    /// A storage as 2.8.2 leaves it after deletes and GC (see the module documentation).
    fn littered(layout: &Layout) -> (Digest, Digest) {
        let live = Digest::of(b"live");
        let gone = Digest::of(b"gone");
        touch(&layout.blob_data(&live), "live");
        // team-a: a live tag whose history names a deleted manifest, plus litter.
        touch(&layout.revision_link("team-a", &live), live.as_str());
        touch(&layout.tag_current_link("team-a", "v1"), live.as_str());
        touch(&layout.tag_index("team-a", "v1").join(live.hex()).join("link"), live.as_str());
        touch(&layout.tag_index("team-a", "v1").join(gone.hex()).join("link"), gone.as_str());
        // A tag whose only history is a deleted manifest, without a current link.
        touch(&layout.tag_index("team-a", "old").join(gone.hex()).join("link"), gone.as_str());
        fs::create_dir_all(layout.revisions("team-a").join(gone.hex())).unwrap();
        touch(&layout.layers("team-a").join(live.hex()).join("link"), live.as_str());
        touch(&layout.layers("team-a").join(gone.hex()).join("link"), gone.as_str());
        touch(&layout.uploads("team-a").join("old-upload").join("startedat"), "2020-01-01T00:00:00Z");
        touch(&layout.uploads("team-a").join("new-upload").join("startedat"), &chrono::Utc::now().to_rfc3339());
        // team-a/app, nested in team-a: emptied completely.
        fs::create_dir_all(layout.revisions("team-a/app").join(gone.hex())).unwrap();
        fs::create_dir_all(layout.tags("team-a/app")).unwrap();
        touch(&layout.layers("team-a/app").join(gone.hex()).join("link"), gone.as_str());
        fs::create_dir_all(layout.uploads("team-a/app")).unwrap();
        // solo/x: emptied, under a parent directory that is not a repository.
        fs::create_dir_all(layout.revisions("solo/x").join(gone.hex())).unwrap();
        // What GC leaves of a deleted blob: its prefix directory.
        fs::create_dir_all(layout.blobs().join(&gone.hex()[..2])).unwrap();
        (live, gone)
    }

    #[test]
    fn removes_litter_and_nothing_live() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let (live, _) = littered(&layout);
        let report = prune(&layout, &PruneOptions::default());
        assert_eq!(report.empty_revisions, 3);
        assert_eq!(report.stale_tag_history, 2);
        assert_eq!(report.empty_tags, 1);
        assert_eq!(report.dangling_layer_links, 2);
        assert_eq!(report.abandoned_uploads, 1);
        assert_eq!(report.empty_blob_prefixes, 1);
        assert_eq!(report.repositories_removed, vec!["solo/x".to_string(), "team-a/app".to_string()]);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.removed.contains(&"docker/registry/v2/repositories/solo".to_string()), "{:?}", report.removed);
        assert!(layout.tag_current_link("team-a", "v1").exists());
        assert!(layout.tag_index("team-a", "v1").join(live.hex()).join("link").exists());
        assert!(!layout.tags("team-a").join("old").exists());
        assert!(layout.revision_link("team-a", &live).exists());
        assert!(layout.layers("team-a").join(live.hex()).join("link").exists());
        assert!(layout.blob_data(&live).exists());
        assert!(layout.uploads("team-a").join("new-upload").exists());
        assert!(!layout.repository("team-a/app").exists());
        assert!(!layout.repositories().join("solo").exists());
        assert!(layout.repository("team-a").exists());
        assert!(layout.repositories().exists() && layout.blobs().exists(), "GC needs both");
        let again = prune(&layout, &PruneOptions::default());
        assert!(!again.removed_anything(), "a second run removes nothing: {again:?}");
    }

    #[test]
    fn a_dry_run_reports_exactly_what_a_real_run_removes_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        littered(&layout);
        let before = tree(dir.path());
        let dry = prune(&layout, &PruneOptions { dry_run: true, ..Default::default() });
        assert_eq!(tree(dir.path()), before);
        let real = prune(&layout, &PruneOptions::default());
        assert_eq!(PruneReport { dry_run: false, ..dry }, real);
    }

    #[test]
    fn an_emptied_parent_repository_keeps_its_nested_one() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let live = Digest::of(b"live");
        touch(&layout.blob_data(&live), "live");
        touch(&layout.revision_link("team-a/app", &live), live.as_str());
        touch(&layout.tag_current_link("team-a/app", "v1"), live.as_str());
        fs::create_dir_all(layout.revisions("team-a").join(Digest::of(b"gone").hex())).unwrap();
        let report = prune(&layout, &PruneOptions::default());
        assert_eq!(report.repositories_removed, vec!["team-a".to_string()]);
        assert!(!layout.repository("team-a").join("_manifests").exists());
        assert!(layout.tag_current_link("team-a/app", "v1").exists());
    }

    #[test]
    fn unreadable_or_unknown_entries_are_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        // `revisions/sha256` is a file: the repository's revisions cannot be listed.
        touch(&layout.revisions("odd"), "not a directory");
        touch(&layout.layers("odd").join(Digest::of(b"x").hex()).join("link"), "garbage");
        fs::create_dir_all(layout.revisions("weird").join("not-hex")).unwrap();
        let report = prune(&layout, &PruneOptions::default());
        assert!(report.repositories_removed.is_empty(), "{report:?}");
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        assert!(layout.revisions("odd").exists() && layout.revisions("weird").join("not-hex").exists());
    }

    #[test]
    fn upload_age_falls_back_to_the_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let old = layout.uploads("r").join("no-startedat");
        touch(&old.join("data"), "");
        let long_ago = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        filetime::set_file_mtime(old.join("data"), long_ago).unwrap();
        filetime::set_file_mtime(&old, long_ago).unwrap();
        let recent = layout.uploads("r").join("recent");
        touch(&recent.join("startedat"), "garbage");
        let report = prune(&layout, &PruneOptions { upload_max_age: Duration::from_secs(3600), dry_run: false });
        assert_eq!(report.abandoned_uploads, 1);
        assert!(!old.exists() && recent.exists());
        assert!(report.repositories_removed.is_empty(), "a recent upload keeps its repository");
    }

    #[test]
    fn a_missing_storage_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let report = prune(&Layout::new(dir.path().join("nothing")), &PruneOptions::default());
        assert!(!report.removed_anything() && report.problems.is_empty());
    }
}
