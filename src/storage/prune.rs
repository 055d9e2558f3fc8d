//! Removing what `registry garbage-collect` leaves behind, measured on 2.8.2:
//!
//! - a manifest DELETE leaves `_manifests/revisions/sha256/<hex>/` empty (its `link` gone);
//! - a tag re-pushed over and then deleted by its old digest keeps
//!   `_manifests/tags/<t>/index/sha256/<old hex>/link`, whose revision no longer exists;
//! - a registry stopped between unlinking a manifest and untagging it leaves tags whose
//!   `current/link` names a revision that is gone: listed by `tags/list`, answering 404;
//! - GC deletes `blobs/sha256/xx/<hex>/` but not the `_layers/sha256/<hex>/link` files of the
//!   repositories that uploaded the blob, nor the emptied prefix directory `blobs/sha256/xx/`;
//! - an abandoned upload stays in `_uploads/<uuid>/{data,startedat,hashstates/}`;
//! - a repository whose manifests are all deleted keeps its directory (`_layers`, empty
//!   `_manifests/{revisions,tags}`, `_uploads`), so it stays in `_catalog` forever.
//!
//! Pruning removes only the exact entries listed above, file by file, and a directory only
//! once it is empty: a stray file (`notes.txt` in a revision directory) is reported in place
//! and keeps what holds it. It never follows a symlink (a symlinked `_uploads` is reported, not
//! entered), never removes a file something still references (a revision `link`, a live tag's
//! `current/link`, a blob's `data`) and never touches `repositories/` or `blobs/sha256/`
//! themselves: the collector fails with "Path not found" when either is missing. A second run
//! removes nothing. A dry run reports exactly what a real run would remove.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::entry::{self, Entry, Kind, Listing};
use super::layout::{Layout, RESERVED_DIRS};
use super::trash::Trash;
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
    /// Set when the sweep is interrupted: pruning stops between repositories.
    pub stop: Option<Arc<AtomicBool>>,
    pub scope: PruneScope,
    /// The run's trash: a removed directory is moved there in one `rename` (its link file
    /// with it) instead of unlinked in place, which on a disk with online discard costs four
    /// times as much and would stay inside the read-only window.
    pub trash: Option<Arc<Trash>>,
}

/// What prune visits.
#[derive(Clone, Debug, Default)]
pub enum PruneScope {
    /// Every repository and blob directory.
    #[default]
    Everything,
    /// After a sweep: in each repository it deleted from, only what it changed (the plan
    /// names every deleted revision and what those manifests referenced, the collector's log
    /// every blob it deleted), plus up to `litter_budget` other repositories visited whole,
    /// picked at random, so litter from elsewhere (an abandoned upload, a link left by a
    /// cross-repository mount) is still found over a few runs without walking the whole
    /// storage every time.
    Targeted { repositories: BTreeMap<String, Changed>, blobs: Vec<Digest>, litter_budget: usize },
}

/// What a sweep changed in one repository.
#[derive(Clone, Debug, Default)]
pub struct Changed {
    /// The revisions it deleted.
    pub revisions: Vec<Digest>,
    /// The blobs and child manifests those revisions referenced: their `_layers` links
    /// dangle once the collector deletes them.
    pub referenced: BTreeSet<Digest>,
    /// It deleted every revision: the repository is visited whole (and goes if emptied).
    pub emptied: bool,
    /// History entries of the tags left that name a deleted revision (tag, digest), from the
    /// snapshot.
    pub stale_history: Vec<(String, Digest)>,
}

impl Changed {
    /// The link directories it names: revisions, history entries, referenced blobs.
    fn len(&self) -> usize {
        self.revisions.len() + self.stale_history.len() + self.referenced.len()
    }

    /// Cut into pieces of `size` entries of the sequence a visit goes through (revisions,
    /// then history entries, then referenced blobs), so the pieces visited in order do what
    /// the whole does. A piece holds no `emptied` (that is a whole visit, never cut).
    fn pieces(&self, size: usize) -> Vec<Changed> {
        let mut pieces: Vec<Changed> = (0..self.len().div_ceil(size.max(1))).map(|_| Changed::default()).collect();
        let piece = |i: usize| i / size.max(1);
        let (r, h) = (self.revisions.len(), self.stale_history.len());
        for (i, d) in self.revisions.iter().enumerate() {
            pieces[piece(i)].revisions.push(*d);
        }
        for (i, entry) in self.stale_history.iter().enumerate() {
            pieces[piece(r + i)].stale_history.push(entry.clone());
        }
        for (i, d) in self.referenced.iter().enumerate() {
            pieces[piece(r + h + i)].referenced.insert(*d);
        }
        pieces
    }
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            upload_max_age: Duration::from_secs(24 * 3600),
            dry_run: false,
            stop: None,
            scope: PruneScope::Everything,
            trash: None,
        }
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
    /// Tags whose manifest revision is gone (they answered 404).
    pub dead_tags: usize,
    pub dangling_layer_links: usize,
    /// Blob links of a quarantine repository whose every record expired (their blobs are
    /// still used elsewhere, so they did not dangle).
    #[serde(skip_serializing_if = "is_zero")]
    pub quarantine_layer_links: usize,
    pub abandoned_uploads: usize,
    /// Repositories removed because nothing was left in them (they leave `_catalog`).
    pub repositories_removed: Vec<String>,
    pub empty_blob_dirs: usize,
    pub empty_blob_prefixes: usize,
    /// Sizes of the files removed (upload data, links).
    pub bytes_removed: u64,
    /// Removed paths relative to the storage root, in order; the first 1000.
    pub removed: Vec<String>,
    pub removed_not_listed: usize,
    /// Entries left in place because they could not be read or were not understood.
    pub problems: Vec<String>,
    /// True when an interruption stopped pruning before the end.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl PruneReport {
    pub fn removed_anything(&self) -> bool {
        !self.removed.is_empty() || self.removed_not_listed > 0
    }
}

#[derive(Clone, Copy, Debug)]
enum Removal {
    EmptyRevision,
    StaleTagHistory,
    EmptyTag,
    DeadTag,
    DanglingLayer,
    /// A blob link of an emptied quarantine repository (its blob is still used elsewhere).
    QuarantineLayer,
    AbandonedUpload,
    /// A repository's own directories, or a parent directory it leaves empty.
    Repository,
    EmptyBlobDir,
    EmptyBlobPrefix,
    /// A file or directory inside one of the above, counted with it.
    Part,
}

struct Pruner<'a> {
    layout: &'a Layout,
    opts: &'a PruneOptions,
    now: SystemTime,
    /// In a dry run, the paths a real run would have removed, so later decisions (is this
    /// directory empty now?) are the same in both modes. A real run asks the file system
    /// (a list of every removed path was 60 MB at 220,000 tags).
    gone: HashSet<PathBuf>,
    report: PruneReport,
    /// Time spent per part of a targeted visit (revisions, tag history, layer links), logged.
    spent: [Duration; 3],
    /// How many removed paths this pruner lists: `MAX_LISTED`, or for a part of a real prune
    /// what the parts before it left (a part lists nothing once the merged list is full).
    listing_room: usize,
}

fn is_hex_name(name: &str) -> bool {
    Digest::from_hex(name).is_ok()
}

impl<'a> Pruner<'a> {
    fn problem(&mut self, path: &Path, what: impl std::fmt::Display) {
        tracing::warn!(path = %path.display(), problem = %what, "left in place");
        self.report.problems.push(format!("{}: {what}", path.display()));
    }

    /// The entries of `dir` not yet removed; empty when it does not exist, `None` (reported)
    /// when it cannot be entered (unreadable, a symlink, a file).
    fn list(&mut self, dir: &Path) -> Option<Vec<Entry>> {
        match entry::list(dir) {
            Listing::Missing => Some(Vec::new()),
            Listing::Entries(e) => Some(e.into_iter().filter(|e| !self.gone.contains(&e.path)).collect()),
            Listing::Unusable(why) => {
                self.problem(dir, format!("{why}; not entered"));
                None
            }
        }
    }

    /// The kind of `path` unless this run removed it; an unanswerable question counts as
    /// "there", so nothing is removed on the strength of an error.
    fn kind(&mut self, path: &Path) -> Option<Kind> {
        if self.gone.contains(path) {
            return None;
        }
        match entry::kind_of(path) {
            Ok(k) => k,
            Err(e) => {
                self.problem(path, format!("cannot stat: {e}"));
                Some(Kind::Special)
            }
        }
    }

    /// Whether the way from `repositories/` down to `dir` passes something that is not a
    /// real directory (reported): a path through a symlinked `_layers`, `_manifests/revisions`
    /// or tag `index` leaves the storage. A missing part is not (there is just nothing there).
    fn through_symlink(&mut self, dir: &Path) -> bool {
        let top = self.layout.repositories();
        let Ok(rel) = dir.strip_prefix(&top) else { return true };
        let mut p = top;
        for c in rel.components() {
            p.push(c);
            match entry::kind_of(&p) {
                Ok(Some(Kind::Dir)) => {}
                Ok(None) => return false,
                Ok(Some(k)) => {
                    self.problem(&p, format!("is {}; nothing through it is pruned", k.describe()));
                    return true;
                }
                Err(e) => {
                    self.problem(&p, format!("cannot stat: {e}"));
                    return true;
                }
            }
        }
        false
    }

    fn present(&mut self, path: &Path) -> bool {
        self.kind(path).is_some()
    }

    /// Reports what is left in `dir` that prune does not remove; true when nothing is.
    fn empty_or_report(&mut self, dir: &Path) -> bool {
        match self.list(dir) {
            Some(left) if left.is_empty() => true,
            Some(left) => {
                let names: Vec<&str> = left.iter().map(|e| e.name.as_str()).collect();
                self.problem(dir, format!("holds entries prune does not recognise ({}); left in place", names.join(", ")));
                false
            }
            None => false,
        }
    }

    /// Removes one file or one empty directory; never a tree.
    fn remove(&mut self, path: &Path, kind: Removal, dir: bool) -> bool {
        let size = if dir { 0 } else { fs::symlink_metadata(path).map_or(0, |m| m.len()) };
        if !self.opts.dry_run && !(dir && self.take(path)) {
            let result = if dir { fs::remove_dir(path) } else { fs::remove_file(path) };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    self.problem(path, format!("cannot remove: {e}"));
                    return false;
                }
            }
        }
        self.account(path, kind, size);
        true
    }

    /// Moves `path` into the run's trash; false when there is none or the move failed (the
    /// caller then removes in place).
    fn take(&self, path: &Path) -> bool {
        let Some(trash) = &self.opts.trash else { return false };
        match trash.take(path) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot move into the trash; removing in place");
                false
            }
        }
    }

    /// Records a removal (a real one, or in a dry run the one a real run would make).
    fn account(&mut self, path: &Path, kind: Removal, size: u64) {
        tracing::debug!(path = %path.display(), ?kind, dry_run = self.opts.dry_run, "pruned");
        if self.opts.dry_run {
            self.gone.insert(path.to_path_buf());
        }
        let r = &mut self.report;
        r.bytes_removed += size;
        match kind {
            Removal::EmptyRevision => r.empty_revisions += 1,
            Removal::StaleTagHistory => r.stale_tag_history += 1,
            Removal::EmptyTag => r.empty_tags += 1,
            Removal::DeadTag => r.dead_tags += 1,
            Removal::DanglingLayer => r.dangling_layer_links += 1,
            Removal::QuarantineLayer => r.quarantine_layer_links += 1,
            Removal::AbandonedUpload => r.abandoned_uploads += 1,
            Removal::Repository | Removal::Part => {}
            Removal::EmptyBlobDir => r.empty_blob_dirs += 1,
            Removal::EmptyBlobPrefix => r.empty_blob_prefixes += 1,
        }
        if !matches!(kind, Removal::Part) {
            if r.removed.len() < self.listing_room {
                r.removed.push(path.strip_prefix(self.layout.root()).unwrap_or(path).display().to_string());
            } else {
                r.removed_not_listed += 1;
            }
        }
    }

    /// Removes `dir` when it is a directory and (now) empty; reports what keeps it otherwise.
    fn remove_dir_if_empty(&mut self, dir: &Path, kind: Removal) -> bool {
        match self.kind(dir) {
            None => true,
            Some(Kind::Dir) => self.empty_or_report(dir) && self.remove(dir, kind, true),
            Some(k) => {
                self.problem(dir, format!("is {}, not a directory; left in place", k.describe()));
                false
            }
        }
    }

    /// Removes a regular file `<dir>/<file>` and then `dir` itself, when `dir` holds nothing
    /// else: a link directory (`<hex>/link`). With a trash, both go in one move.
    fn remove_link_dir(&mut self, dir: &Path, file: &str, kind: Removal) -> bool {
        let path = dir.join(file);
        // One lstat for the kind and the size.
        let (has_file, size) = match fs::symlink_metadata(&path) {
            _ if self.gone.contains(&path) => (false, 0),
            Ok(m) if m.is_file() => (true, m.len()),
            Ok(m) => {
                self.problem(&path, format!("is {}, not a link file; left in place", Kind::of(m.file_type()).describe()));
                return false;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => (false, 0),
            Err(e) => {
                self.problem(&path, format!("cannot stat: {e}"));
                return false;
            }
        };
        let Some(left) = self.list(dir) else { return false };
        let alone = left.iter().all(|e| e.path == path);
        if has_file && alone && !self.opts.dry_run && self.opts.trash.is_some() {
            if self.take(dir) {
                self.account(&path, Removal::Part, size);
                self.account(dir, kind, 0);
                return true;
            }
        }
        if has_file && !self.remove(&path, Removal::Part, false) {
            return false;
        }
        self.empty_or_report(dir) && self.remove(dir, kind, true)
    }

    /// Revision directories without a `link`. Returns whether a revision (or something not
    /// understood) remains.
    fn revisions(&mut self, repo: &str) -> bool {
        if self.through_symlink(&self.layout.revisions(repo)) {
            return true;
        }
        let Some(entries) = self.list(&self.layout.revisions(repo)) else { return true };
        let mut remains = false;
        for e in entries {
            if e.kind != Kind::Dir || !is_hex_name(&e.name) {
                self.problem(&e.path, "not a revision directory; left in place");
                remains = true;
            } else if self.present(&e.path.join("link")) || !self.remove_dir_if_empty(&e.path, Removal::EmptyRevision) {
                remains = true;
            }
        }
        remains
    }

    /// Whether the revision a tag link names is still there.
    fn revision_present(&mut self, repo: &str, digest: &Digest) -> bool {
        let link = self.layout.revision_link(repo, digest);
        self.present(&link)
    }

    /// A tag's history entries whose revision is gone; the tag itself when its `current/link`
    /// is gone or names a revision that is gone (the registry answers 404 for it). Returns
    /// whether the tag remains.
    fn tag(&mut self, repo: &str, tag: &Entry) -> bool {
        let mut known = true;
        for e in self.list(&tag.path).unwrap_or_default() {
            if !(e.kind == Kind::Dir && (e.name == "current" || e.name == "index")) {
                self.problem(&e.path, "not part of a tag; left in place");
                known = false;
            }
        }
        let current = tag.path.join("current");
        let current_link = current.join("link");
        let live = match entry::read_link(&current_link) {
            Ok(None) => false,
            Ok(Some(d)) => self.revision_present(repo, &d),
            Err(bad) => {
                self.problem(&current_link, format!("{bad}; left in place"));
                return true;
            }
        };
        let index = tag.path.join("index/sha256");
        let Some(history) = (if self.present(&index) { self.list(&index) } else { Some(Vec::new()) }) else { return true };
        for e in history {
            let Some(d) = Digest::from_hex(&e.name).ok().filter(|_| e.kind == Kind::Dir) else {
                self.problem(&e.path, "not a tag history entry; left in place");
                known = false;
                continue;
            };
            // A dead tag takes its whole history with it, as the registry's own tag delete does.
            if !live || !self.revision_present(repo, &d) {
                self.remove_link_dir(&e.path, "link", Removal::StaleTagHistory);
            }
        }
        if live || !known {
            return true;
        }
        if self.present(&current_link) {
            if !self.remove(&current_link, Removal::DeadTag, false) {
                return true;
            }
            tracing::info!(repository = repo, tag = %tag.name, "removed a tag whose manifest is gone");
        }
        let parts = [current, index.clone(), tag.path.join("index")];
        if !parts.iter().all(|p| self.remove_dir_if_empty(p, Removal::Part)) {
            return true;
        }
        !self.remove_dir_if_empty(&tag.path, Removal::EmptyTag)
    }

    fn tags(&mut self, repo: &str) -> bool {
        if self.through_symlink(&self.layout.tags(repo)) {
            return true;
        }
        let Some(tags) = self.list(&self.layout.tags(repo)) else { return true };
        let mut remains = false;
        for tag in tags {
            if tag.kind != Kind::Dir {
                self.problem(&tag.path, "not a tag directory; left in place");
                remains = true;
            } else {
                remains |= self.tag(repo, &tag);
            }
        }
        remains
    }

    /// `_layers` links whose blob `data` no longer exists (and link directories without a
    /// link); with `all` (an emptied quarantine repository, which only ever held links for
    /// restores) every link.
    fn layers(&mut self, repo: &str, all: bool) {
        if self.through_symlink(&self.layout.layers(repo)) {
            return;
        }
        let Some(entries) = self.list(&self.layout.layers(repo)) else { return };
        for e in entries {
            if e.kind != Kind::Dir || !is_hex_name(&e.name) {
                self.problem(&e.path, "not a layer link; left in place");
                continue;
            }
            let link = e.path.join("link");
            let dangling = match entry::read_link(&link) {
                Ok(Some(d)) => !self.present(&self.layout.blob_data(&d)),
                Ok(None) => true,
                Err(bad) => {
                    self.problem(&link, format!("{bad}; left in place"));
                    false
                }
            };
            if dangling {
                self.remove_link_dir(&e.path, "link", Removal::DanglingLayer);
            } else if all {
                self.remove_link_dir(&e.path, "link", Removal::QuarantineLayer);
            }
        }
    }

    /// When an upload session started: its `startedat` (RFC 3339, written by the registry),
    /// else the newest modification time of its directory and its `data`.
    fn upload_started(path: &Path) -> Option<SystemTime> {
        let started = match entry::kind_of(&path.join("startedat")) {
            Ok(Some(Kind::File)) => fs::read_to_string(path.join("startedat")).ok(),
            _ => None,
        };
        let started = started.and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok());
        started.map(SystemTime::from).or_else(|| {
            [path.to_path_buf(), path.join("data")].iter().filter_map(|p| fs::symlink_metadata(p).and_then(|m| m.modified()).ok()).max()
        })
    }

    /// Removes an upload session's known parts (`data`, `startedat`, `hashstates/<alg>/<n>`)
    /// and then its directory; anything else keeps it.
    fn remove_upload(&mut self, dir: &Path) -> bool {
        let Some(entries) = self.list(dir) else { return false };
        let mut ok = true;
        for e in entries {
            ok &= match (e.name.as_str(), e.kind) {
                ("data" | "startedat", Kind::File) => self.remove(&e.path, Removal::Part, false),
                ("hashstates", Kind::Dir) => self.remove_hashstates(&e.path),
                _ => {
                    self.problem(&e.path, "not part of an upload session; left in place");
                    false
                }
            };
        }
        ok && self.remove(dir, Removal::AbandonedUpload, true)
    }

    fn remove_hashstates(&mut self, dir: &Path) -> bool {
        let Some(algorithms) = self.list(dir) else { return false };
        let mut ok = true;
        for alg in algorithms {
            if alg.kind != Kind::Dir {
                self.problem(&alg.path, "not a hash state directory; left in place");
                ok = false;
                continue;
            }
            for state in self.list(&alg.path).unwrap_or_default() {
                if state.kind == Kind::File && state.name.bytes().all(|b| b.is_ascii_digit()) {
                    ok &= self.remove(&state.path, Removal::Part, false);
                } else {
                    self.problem(&state.path, "not a hash state; left in place");
                    ok = false;
                }
            }
            ok &= self.remove_dir_if_empty(&alg.path, Removal::Part);
        }
        ok && self.remove_dir_if_empty(dir, Removal::Part)
    }

    /// Upload sessions older than the threshold. Returns whether anything remains.
    fn uploads(&mut self, repo: &str) -> bool {
        if self.through_symlink(&self.layout.uploads(repo)) {
            return true;
        }
        let Some(entries) = self.list(&self.layout.uploads(repo)) else { return true };
        let mut remains = false;
        for e in entries {
            if e.kind != Kind::Dir {
                self.problem(&e.path, "not an upload session; left in place");
                remains = true;
                continue;
            }
            let age = Self::upload_started(&e.path).map(|t| self.now.duration_since(t).unwrap_or_default());
            match age {
                Some(age) if age > self.opts.upload_max_age => remains |= !self.remove_upload(&e.path),
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
        self.layers(name, !revisions && !tags && crate::quarantine::is_quarantine(name));
        let uploads = self.uploads(name);
        if revisions || tags || uploads {
            return;
        }
        // What an emptied repository is made of, deepest first; anything else keeps it.
        let dir = self.layout.repository(name);
        let parts = [
            "_manifests/revisions/sha256",
            "_manifests/revisions",
            "_manifests/tags",
            "_manifests",
            "_layers/sha256",
            "_layers",
            "_uploads",
        ];
        if !parts.iter().all(|p| self.remove_dir_if_empty(&dir.join(p), Removal::Repository)) {
            return;
        }
        tracing::info!(repository = name, dry_run = self.opts.dry_run, "removing an emptied repository");
        self.report.repositories_removed.push(name.to_string());
        self.remove_empty_parents(dir);
    }

    /// In a repository the sweep changed: its deleted revisions' directories, its tags (those
    /// left after the sweep, whose history may name a deleted revision), and the `_layers`
    /// links of what the deleted manifests referenced and the collector deleted.
    fn changed_repository(&mut self, name: &str, changed: &Changed, collected: &HashSet<&Digest>) {
        if changed.emptied {
            return self.repository(name);
        }
        let revisions = self.layout.revisions(name);
        if self.through_symlink(&revisions) {
            return;
        }
        if !matches!(self.kind(&revisions), Some(Kind::Dir)) {
            // Missing, or not a directory (reported by a whole visit).
            return self.repository(name);
        }
        let t = std::time::Instant::now();
        for d in &changed.revisions {
            let dir = revisions.join(d.hex());
            if self.kind(&dir).is_some() && !self.present(&dir.join("link")) {
                self.remove_dir_if_empty(&dir, Removal::EmptyRevision);
            }
        }
        self.spent[0] += t.elapsed();
        let t = std::time::Instant::now();
        for (tag, d) in &changed.stale_history {
            let entry = self.layout.tag_index(name, tag).join(d.hex());
            if !self.through_symlink(&entry) && self.kind(&entry) == Some(Kind::Dir) && !self.revision_present(name, d) {
                self.remove_link_dir(&entry, "link", Removal::StaleTagHistory);
            }
        }
        self.spent[1] += t.elapsed();
        let t = std::time::Instant::now();
        self.visit_layers(name, changed, collected);
        self.spent[2] += t.elapsed();
    }

    /// The `_layers` links of what a sweep's deleted manifests referenced and the collector
    /// deleted.
    fn visit_layers(&mut self, name: &str, changed: &Changed, collected: &HashSet<&Digest>) {
        let layers = self.layout.layers(name);
        if self.through_symlink(&layers) || !matches!(self.kind(&layers), Some(Kind::Dir)) {
            return;
        }
        for d in changed.referenced.iter().filter(|d| collected.contains(d)) {
            let dir = layers.join(d.hex());
            if self.kind(&dir) != Some(Kind::Dir) {
                continue;
            }
            let link = dir.join("link");
            match entry::read_link(&link) {
                Ok(Some(target)) if target == *d && !self.present(&self.layout.blob_data(d)) => {
                    self.remove_link_dir(&dir, "link", Removal::DanglingLayer);
                }
                Ok(_) => {}
                Err(bad) => self.problem(&link, format!("{bad}; left in place")),
            }
        }
    }

    /// The repository directory and its parents up to (not including) `repositories/`, as
    /// long as each is empty: a nested repository (`team-a/app` under `team-a`) keeps its
    /// parents.
    fn remove_empty_parents(&mut self, mut dir: PathBuf) {
        let top = self.layout.repositories();
        while dir.starts_with(&top) && dir != top && self.kind(&dir) == Some(Kind::Dir) {
            if !matches!(self.list(&dir), Some(left) if left.is_empty()) || !self.remove(&dir, Removal::Repository, true) {
                break;
            }
            let Some(parent) = dir.parent() else { break };
            dir = parent.to_path_buf();
        }
    }

    /// `blobs/sha256/xx/<hex>/` without `data` and empty, then empty `blobs/sha256/xx/`.
    fn blobs(&mut self) {
        for prefix in self.list(&self.layout.blobs()).unwrap_or_default() {
            let hex2 = prefix.name.len() == 2 && prefix.name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if prefix.kind != Kind::Dir || !hex2 {
                continue;
            }
            let Some(blobs) = self.list(&prefix.path) else { continue };
            for blob in blobs {
                let ours = blob.kind == Kind::Dir && is_hex_name(&blob.name) && blob.name.starts_with(&prefix.name);
                if ours && !self.present(&blob.path.join("data")) && matches!(self.list(&blob.path), Some(e) if e.is_empty()) {
                    self.remove(&blob.path, Removal::EmptyBlobDir, true);
                }
            }
            if matches!(self.list(&prefix.path), Some(e) if e.is_empty()) {
                self.remove(&prefix.path, Removal::EmptyBlobPrefix, true);
            }
        }
    }

    /// The directories of the given blobs (those the collector deleted) and their prefixes,
    /// by the same rules as [`Self::blobs`].
    fn blobs_of(&mut self, digests: &[Digest]) {
        let mut prefixes = BTreeSet::new();
        for d in digests {
            let Some(dir) = self.layout.blob_data(d).parent().map(Path::to_path_buf) else { continue };
            if matches!(entry::kind_of(&dir), Ok(Some(Kind::Dir)))
                && !self.present(&dir.join("data"))
                && matches!(self.list(&dir), Some(e) if e.is_empty())
            {
                self.remove(&dir, Removal::EmptyBlobDir, true);
            }
            if let Some(prefix) = dir.parent() {
                prefixes.insert(prefix.to_path_buf());
            }
        }
        for prefix in prefixes {
            // Asking for one entry, not listing thousands: a prefix rarely empties.
            let empty = matches!(entry::kind_of(&prefix), Ok(Some(Kind::Dir)))
                && fs::read_dir(&prefix).is_ok_and(|mut it| it.all(|e| e.is_ok_and(|e| self.gone.contains(&e.path()))));
            if empty {
                self.remove(&prefix, Removal::EmptyBlobPrefix, true);
            }
        }
    }

    /// Repository names under `dir`: a directory is a repository iff it has one of the
    /// registry's own directories; it can also be the parent of nested repositories.
    fn find_repositories(&mut self, dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let Some(children) = self.list(dir) else { return };
        if !prefix.is_empty() && children.iter().any(|c| RESERVED_DIRS.contains(&c.name.as_str())) {
            out.push(prefix.to_string());
        }
        // Repository path components never start with `_`.
        for child in children.iter().filter(|c| !c.name.starts_with('_')) {
            match child.kind {
                Kind::Dir => {
                    let name = if prefix.is_empty() { child.name.clone() } else { format!("{prefix}/{}", child.name) };
                    self.find_repositories(&child.path, &name, out);
                }
                Kind::Symlink => self.problem(&child.path, "is a symlink; not followed"),
                Kind::File | Kind::Special => {}
            }
        }
    }

    fn stopped(&self) -> bool {
        self.opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    fn new<'b>(layout: &'b Layout, opts: &'b PruneOptions, now: SystemTime) -> Pruner<'b> {
        Pruner {
            layout,
            opts,
            now,
            gone: HashSet::new(),
            report: PruneReport { dry_run: opts.dry_run, ..Default::default() },
            spent: Default::default(),
            listing_room: MAX_LISTED,
        }
    }

    /// A pruner for one part of a real prune, merged into this one by `absorb` (in order):
    /// it lists only as many paths as this one still has room for, so parts pruned side by
    /// side do not each hold a list the merge throws away.
    fn part(&self) -> Pruner<'a> {
        Pruner {
            listing_room: self.listing_room.saturating_sub(self.report.removed.len()),
            ..Pruner::new(self.layout, self.opts, self.now)
        }
    }

    /// Whether a change in `repo` may be visited in pieces: each piece repeats the checks of
    /// `changed_repository`, so only when those pass quietly (otherwise the one visit reports
    /// once, and may visit the repository whole).
    fn can_cut(&self, repo: &str) -> bool {
        let mut probe = Pruner::new(self.layout, self.opts, self.now);
        let revisions = self.layout.revisions(repo);
        !probe.through_symlink(&revisions) && probe.kind(&revisions) == Some(Kind::Dir) && probe.report.problems.is_empty()
    }

    /// One repository of a targeted prune: what the sweep changed, or the whole of it.
    fn visit(&mut self, repo: &str, changed: Option<&Changed>, collected: &HashSet<&Digest>) {
        match changed {
            Some(c) => self.changed_repository(repo, c, collected),
            None => self.repository(repo),
        }
    }

    /// Takes in what another pruner (of other repositories) removed and found.
    fn absorb(&mut self, other: Pruner) {
        self.gone.extend(other.gone);
        for (mine, theirs) in self.spent.iter_mut().zip(other.spent) {
            *mine += theirs;
        }
        let (r, o) = (&mut self.report, other.report);
        r.empty_revisions += o.empty_revisions;
        r.stale_tag_history += o.stale_tag_history;
        r.empty_tags += o.empty_tags;
        r.dead_tags += o.dead_tags;
        r.dangling_layer_links += o.dangling_layer_links;
        r.quarantine_layer_links += o.quarantine_layer_links;
        r.abandoned_uploads += o.abandoned_uploads;
        r.repositories_removed.extend(o.repositories_removed);
        r.empty_blob_dirs += o.empty_blob_dirs;
        r.empty_blob_prefixes += o.empty_blob_prefixes;
        r.bytes_removed += o.bytes_removed;
        let room = self.listing_room.saturating_sub(r.removed.len());
        r.removed_not_listed += o.removed_not_listed + o.removed.len().saturating_sub(room);
        r.removed.extend(o.removed.into_iter().take(room));
        r.problems.extend(o.problems);
        r.interrupted |= o.interrupted;
    }
}

/// Repositories (or pieces of one) pruned side by side after a sweep.
const PRUNE_WORKERS: usize = 4;

/// Link directories per piece of a large change.
const PIECE: usize = 2048;

/// Parts pruned side by side before their reports are merged: a depth level can hold
/// thousands of repositories, and every part keeps its report until the merge.
const PARTS_AT_ONCE: usize = 16 * PRUNE_WORKERS;

/// Removes GC's litter from the storage at `layout` (see the module documentation).
pub fn prune(layout: &Layout, opts: &PruneOptions) -> PruneReport {
    let mut pruner = Pruner::new(layout, opts, SystemTime::now());
    let repos = match &opts.scope {
        PruneScope::Everything => {
            let mut repos = Vec::new();
            pruner.find_repositories(&layout.repositories(), "", &mut repos);
            // Deepest first, so a parent repository's directory is judged after its children's.
            repos.sort_by_key(|r| std::cmp::Reverse(r.matches('/').count()));
            for repo in &repos {
                if pruner.stopped() {
                    pruner.report.interrupted = true;
                    return pruner.report;
                }
                pruner.repository(repo);
            }
            pruner.blobs();
            repos.len()
        }
        PruneScope::Targeted { repositories, blobs, litter_budget } => {
            let collected: HashSet<&Digest> = blobs.iter().collect();
            // The litter sweep's picks come from the repositories listed; finding them all is a
            // walk of directory names only, not of their contents.
            let mut all = Vec::new();
            pruner.find_repositories(&layout.repositories(), "", &mut all);
            let mut others: Vec<String> = all.into_iter().filter(|r| !repositories.contains_key(r)).collect();
            rand::seq::SliceRandom::shuffle(others.as_mut_slice(), &mut rand::rng());
            others.truncate(*litter_budget);
            let mut visits: Vec<(&str, Option<&Changed>)> =
                repositories.iter().map(|(r, c)| (r.as_str(), Some(c))).chain(others.iter().map(|r| (r.as_str(), None))).collect();
            visits.sort_by_key(|(r, _)| std::cmp::Reverse(r.matches('/').count()));
            if opts.dry_run {
                // One after another: what a dry run reports is exactly what one real run of
                // the same visits, in this order, removes (a directory emptied by an earlier
                // visit counts as gone for a later one).
                for (repo, changed) in &visits {
                    if pruner.stopped() {
                        pruner.report.interrupted = true;
                        return pruner.report;
                    }
                    pruner.visit(repo, *changed, &collected);
                }
            } else {
                // Repositories of one depth are disjoint trees, so they are pruned at once
                // (what one removes of a shared parent is judged on the file system itself);
                // the deeper ones first. A large change is cut into pieces that run side by
                // side too (one repository of 20,000 deleted tags was otherwise one worker's).
                // Reports merge in visit order, pieces in theirs: the dry run's order.
                for level in visits.chunk_by(|a, b| a.0.matches('/').count() == b.0.matches('/').count()) {
                    let pieces: Vec<(&str, Option<Cow<Changed>>)> = level
                        .iter()
                        .flat_map(|(repo, changed)| match changed {
                            Some(c) if !c.emptied && c.len() > PIECE && pruner.can_cut(repo) => {
                                c.pieces(PIECE).into_iter().map(|p| (*repo, Some(Cow::Owned(p)))).collect::<Vec<_>>()
                            }
                            _ => vec![(*repo, changed.map(Cow::Borrowed))],
                        })
                        .collect();
                    for chunk in pieces.chunks(PARTS_AT_ONCE) {
                        let parts = super::side_by_side(PRUNE_WORKERS, chunk, |(repo, changed)| {
                            let mut part = pruner.part();
                            if part.stopped() {
                                part.report.interrupted = true;
                            } else {
                                part.visit(repo, changed.as_deref(), &collected);
                            }
                            part
                        });
                        for part in parts {
                            pruner.absorb(part);
                        }
                        if pruner.report.interrupted {
                            return pruner.report;
                        }
                    }
                }
            }
            pruner.blobs_of(blobs);
            visits.len()
        }
    };
    let r = &pruner.report;
    tracing::info!(
        dry_run = opts.dry_run,
        repositories = repos,
        empty_revisions = r.empty_revisions,
        stale_tag_history = r.stale_tag_history,
        empty_tags = r.empty_tags,
        dead_tags = r.dead_tags,
        dangling_layer_links = r.dangling_layer_links,
        abandoned_uploads = r.abandoned_uploads,
        repositories_removed = r.repositories_removed.len(),
        empty_blob_dirs = r.empty_blob_dirs + r.empty_blob_prefixes,
        problems = r.problems.len(),
        revisions_ms = pruner.spent[0].as_millis() as u64,
        tag_history_ms = pruner.spent[1].as_millis() as u64,
        layer_links_ms = pruner.spent[2].as_millis() as u64,
        "pruned GC litter"
    );
    pruner.report
}

#[cfg(test)]
mod tests {
    use super::super::trash::trash_root;
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

    /// Two storages built alike by `build`: the first for a dry run, the second for a real one.
    fn twin_storages(build: impl Fn(&Layout)) -> [(tempfile::TempDir, Layout); 2] {
        [(), ()].map(|()| {
            let dir = tempfile::tempdir().unwrap();
            let layout = Layout::new(dir.path());
            build(&layout);
            (dir, layout)
        })
    }

    /// A storage as 2.8.2 leaves it after deletes and GC (see the module documentation).
    fn littered(layout: &Layout) -> (Digest, Digest) {
        let live = Digest::of(b"live");
        let gone = Digest::of(b"gone");
        touch(&layout.blob_data(&live), "live");
        // team-a: a live tag whose history names a deleted manifest, plus litter.
        touch(&layout.revision_link("team-a", &live), &live.as_str());
        touch(&layout.tag_current_link("team-a", "v1"), &live.as_str());
        touch(&layout.tag_index("team-a", "v1").join(live.hex()).join("link"), &live.as_str());
        touch(&layout.tag_index("team-a", "v1").join(gone.hex()).join("link"), &gone.as_str());
        // A tag whose only history is a deleted manifest, without a current link.
        touch(&layout.tag_index("team-a", "old").join(gone.hex()).join("link"), &gone.as_str());
        fs::create_dir_all(layout.revisions("team-a").join(gone.hex())).unwrap();
        touch(&layout.layers("team-a").join(live.hex()).join("link"), &live.as_str());
        touch(&layout.layers("team-a").join(gone.hex()).join("link"), &gone.as_str());
        touch(&layout.uploads("team-a").join("old-upload").join("startedat"), "2020-01-01T00:00:00Z");
        touch(&layout.uploads("team-a").join("new-upload").join("startedat"), &chrono::Utc::now().to_rfc3339());
        // team-a/app, nested in team-a: emptied completely.
        fs::create_dir_all(layout.revisions("team-a/app").join(gone.hex())).unwrap();
        fs::create_dir_all(layout.tags("team-a/app")).unwrap();
        touch(&layout.layers("team-a/app").join(gone.hex()).join("link"), &gone.as_str());
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
    fn with_a_trash_the_same_entries_go_and_land_in_the_trash() {
        let (plain, trashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (Layout::new(plain.path()), Layout::new(trashed.path()));
        littered(&a);
        littered(&b);
        // A stray file inside a dangling layer link's directory: it keeps the directory, so
        // that one cannot be moved whole.
        let gone = Digest::of(b"gone");
        for l in [&a, &b] {
            touch(&l.layers("team-a").join(gone.hex()).join("notes.txt"), "mine");
        }
        let trash = Arc::new(Trash::open(&b, "run-1").unwrap());
        let without = prune(&a, &PruneOptions::default());
        let mut with = prune(&b, &PruneOptions { trash: Some(trash), ..Default::default() });
        for p in &mut with.problems {
            *p = p.replace(&trashed.path().display().to_string(), &plain.path().display().to_string());
        }
        assert_eq!(without, with);
        let outside_trash = |root: &Path| {
            tree(root)
                .into_iter()
                .filter(|p| !p.starts_with(root.join(".regsweep")))
                .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
                .collect::<Vec<_>>()
        };
        assert_eq!(outside_trash(plain.path()), outside_trash(trashed.path()));
        assert!(b.layers("team-a").join(gone.hex()).join("notes.txt").exists());
        let moved = tree(&trash_root(&b).join("run-1"));
        assert!(moved.iter().any(|p| p.ends_with("link")), "link directories moved whole: {moved:?}");
        assert!(!moved.iter().any(|p| p.ends_with("notes.txt")));
    }

    #[test]
    fn an_emptied_parent_repository_keeps_its_nested_one() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let live = Digest::of(b"live");
        touch(&layout.blob_data(&live), "live");
        touch(&layout.revision_link("team-a/app", &live), &live.as_str());
        touch(&layout.tag_current_link("team-a/app", "v1"), &live.as_str());
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
        let report = prune(&layout, &PruneOptions { upload_max_age: Duration::from_secs(3600), ..Default::default() });
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

    #[test]
    fn symlinks_are_never_followed_out_of_the_storage() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("storage"));
        let outside = dir.path().join("outside");
        // Looks exactly like an abandoned upload session, but lives outside the storage.
        touch(&outside.join("old-upload").join("startedat"), "2020-01-01T00:00:00Z");
        touch(&outside.join("old-upload").join("data"), "precious");
        fs::create_dir_all(outside.join(Digest::of(b"r").hex())).unwrap();
        fs::create_dir_all(layout.repository("app").join("_manifests")).unwrap();
        std::os::unix::fs::symlink(&outside, layout.uploads("app")).unwrap();
        fs::create_dir_all(layout.revisions("app").parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, layout.revisions("app")).unwrap();
        std::os::unix::fs::symlink(&outside, layout.repositories().join("linked-repo")).unwrap();
        fs::create_dir_all(layout.blobs()).unwrap();
        let before = tree(&outside);
        let report = prune(&layout, &PruneOptions::default());
        assert_eq!(tree(&outside), before, "nothing outside the storage root is touched");
        assert!(outside.join("old-upload/data").exists());
        for what in ["_uploads", "revisions/sha256", "linked-repo"] {
            assert!(report.problems.iter().any(|p| p.contains(what) && p.contains("symlink")), "{what} reported: {:?}", report.problems);
        }
        assert!(report.repositories_removed.is_empty(), "{report:?}");
        assert!(layout.uploads("app").is_symlink() && layout.revisions("app").is_symlink());
    }

    #[test]
    fn stray_files_are_reported_in_place_and_keep_what_holds_them() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let gone = Digest::of(b"gone");
        let rev = layout.revisions("app").join(gone.hex());
        touch(&rev.join("notes.txt"), "why this revision matters");
        let tag = layout.tags("app").join("old");
        touch(&tag.join("index/sha256").join(gone.hex()).join("link"), &gone.as_str());
        touch(&tag.join("README"), "hand-written");
        let layer = layout.layers("app").join(gone.hex());
        touch(&layer.join("link"), &gone.as_str());
        touch(&layout.layers("app").join("notes.txt"), "beside a layer link");
        touch(&layout.uploads("app").join("old").join("startedat"), "2020-01-01T00:00:00Z");
        touch(&layout.uploads("app").join("old").join("keep-me"), "x");
        fs::create_dir_all(layout.blobs()).unwrap();
        let report = prune(&layout, &PruneOptions::default());
        for (path, what) in [
            (rev.join("notes.txt"), "notes.txt"),
            (tag.join("README"), "README"),
            (layout.layers("app").join("notes.txt"), "notes.txt"),
            (layout.uploads("app").join("old").join("keep-me"), "keep-me"),
        ] {
            assert!(path.exists(), "{} must stay", path.display());
            assert!(report.problems.iter().any(|p| p.contains(what)), "{what} is reported: {:?}", report.problems);
        }
        assert!(!layer.exists(), "the dangling layer link itself is litter and goes");
        assert!(layout.repository("app").exists(), "a repository holding stray files stays");
        assert!(report.repositories_removed.is_empty());
    }

    #[test]
    fn repositories_pruned_side_by_side_remove_what_a_dry_run_one_by_one_says() {
        let (live, deleted, config) = (Digest::of(b"live"), Digest::of(b"deleted"), Digest::of(b"config"));
        // 24 repositories at two depths, some nested in others, some emptied.
        let names: Vec<String> = (0..12).flat_map(|i| [format!("team-{i}"), format!("team-{i}/app")]).collect();
        let build = |layout: &Layout| {
            touch(&layout.blob_data(&live), "live");
            for name in &names {
                touch(&layout.revision_link(name, &live), &live.as_str());
                touch(&layout.tag_current_link(name, "v1"), &live.as_str());
                touch(&layout.tag_index(name, "v1").join(deleted.hex()).join("link"), &deleted.as_str());
                fs::create_dir_all(layout.revisions(name).join(deleted.hex())).unwrap();
                touch(&layout.layers(name).join(config.hex()).join("link"), &config.as_str());
                touch(&layout.layers(name).join(live.hex()).join("link"), &live.as_str());
            }
        };
        let scope = || PruneScope::Targeted {
            repositories: names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let emptied = i % 5 == 0;
                    let c = Changed {
                        revisions: vec![deleted],
                        referenced: [deleted, config].into(),
                        emptied,
                        stale_history: vec![("v1".to_string(), deleted)],
                    };
                    (n.clone(), c)
                })
                .collect(),
            blobs: vec![deleted, config],
            litter_budget: 0,
        };
        let [(dry_dir, dry_layout), (_real_dir, real_layout)] = twin_storages(build);
        let before = tree(dry_dir.path());
        let dry = prune(&dry_layout, &PruneOptions { scope: scope(), dry_run: true, ..Default::default() });
        assert_eq!(tree(dry_dir.path()), before, "a dry run changes nothing");
        let real = prune(&real_layout, &PruneOptions { scope: scope(), ..Default::default() });
        assert!(real.problems.is_empty(), "{:?}", real.problems);
        assert!(real.removed.len() >= 3 * names.len(), "{real:?}");
        assert_eq!(PruneReport { dry_run: false, ..dry }, real, "the same removals, listed in the same order");
        for name in &names {
            assert!(!real_layout.tag_index(name, "v1").join(deleted.hex()).exists(), "{name}");
            assert!(real_layout.tag_current_link(name, "v1").exists() && real_layout.layers(name).join(live.hex()).exists(), "{name}");
        }
    }

    #[test]
    fn a_real_prune_keeps_no_list_of_what_it_removed() {
        // A dry run must remember what a real run would have removed (the file system does
        // not change); a real one must not: at 220,000 tags that list was 300,000 paths,
        // 60 MB of the sweep's peak memory.
        let n = 50;
        let removed: Vec<Digest> = (0..n).map(|i| Digest::of(format!("deleted-{i}").as_bytes())).collect();
        let build = |layout: &Layout| {
            for d in &removed {
                fs::create_dir_all(layout.revisions("ci/app").join(d.hex())).unwrap();
                touch(&layout.layers("ci/app").join(d.hex()).join("link"), &d.as_str());
            }
        };
        let changed = Changed { revisions: removed.clone(), referenced: removed.iter().copied().collect(), ..Default::default() };
        let collected: HashSet<&Digest> = removed.iter().collect();
        for dry_run in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let layout = Layout::new(dir.path());
            build(&layout);
            let opts = PruneOptions { dry_run, ..Default::default() };
            let mut pruner = Pruner::new(&layout, &opts, SystemTime::now());
            pruner.visit("ci/app", Some(&changed), &collected);
            assert_eq!((pruner.report.empty_revisions, pruner.report.dangling_layer_links), (n, n), "dry run {dry_run}");
            assert_eq!(pruner.gone.len(), if dry_run { 3 * n } else { 0 }, "dry run {dry_run}");
        }
    }

    #[test]
    fn a_part_of_a_real_prune_lists_only_what_the_merged_list_has_room_for() {
        // Parts pruned side by side each kept up to 1000 removed paths until the merge threw
        // all but the first 1000 away: 2,000 parts of a depth level held ~16 MB at 220,000 tags.
        let n = 40;
        let removed: Vec<Digest> = (0..n).map(|i| Digest::of(format!("deleted-{i}").as_bytes())).collect();
        let changed = Changed { revisions: removed.clone(), referenced: removed.iter().copied().collect(), ..Default::default() };
        let collected: HashSet<&Digest> = removed.iter().collect();
        for listed_before in [0, MAX_LISTED - 30, MAX_LISTED] {
            let dir = tempfile::tempdir().unwrap();
            let layout = Layout::new(dir.path());
            for d in &removed {
                fs::create_dir_all(layout.revisions("ci/app").join(d.hex())).unwrap();
                touch(&layout.layers("ci/app").join(d.hex()).join("link"), &d.as_str());
            }
            let opts = PruneOptions::default();
            let mut whole = Pruner::new(&layout, &opts, SystemTime::now());
            whole.report.removed = vec!["earlier".to_string(); listed_before];
            let mut part = whole.part();
            part.visit("ci/app", Some(&changed), &collected);
            let total = part.report.removed.len() + part.report.removed_not_listed;
            assert_eq!(total, 2 * n, "every removal is counted (listed before: {listed_before})");
            assert_eq!(part.report.removed.len(), (MAX_LISTED - listed_before).min(2 * n), "listed before: {listed_before}");
            whole.absorb(part);
            assert_eq!(whole.report.removed.len(), (listed_before + 2 * n).min(MAX_LISTED));
            assert_eq!(whole.report.removed.len() + whole.report.removed_not_listed, listed_before + 2 * n);
        }
    }

    #[test]
    fn a_level_of_more_repositories_than_are_pruned_at_once_merges_in_the_dry_runs_order() {
        // More repositories than one batch of parts, and more removals than the list holds:
        // the merged report (list, what is not listed, counts) is the dry run's.
        let repos = 2 * PARTS_AT_ONCE + 5;
        let per_repo = MAX_LISTED / PARTS_AT_ONCE + 3;
        let removed: Vec<Digest> = (0..per_repo).map(|i| Digest::of(format!("deleted-{i}").as_bytes())).collect();
        let names: Vec<String> = (0..repos).map(|i| format!("ci/app-{i:03}")).collect();
        let build = |layout: &Layout| {
            for name in &names {
                for d in &removed {
                    fs::create_dir_all(layout.revisions(name).join(d.hex())).unwrap();
                }
            }
        };
        let scope = || PruneScope::Targeted {
            repositories: names.iter().map(|n| (n.clone(), Changed { revisions: removed.clone(), ..Default::default() })).collect(),
            blobs: Vec::new(),
            litter_budget: 0,
        };
        let [(_dry_dir, dry_layout), (_real_dir, real_layout)] = twin_storages(build);
        let dry = prune(&dry_layout, &PruneOptions { scope: scope(), dry_run: true, ..Default::default() });
        let real = prune(&real_layout, &PruneOptions { scope: scope(), ..Default::default() });
        assert_eq!(real.empty_revisions, repos * per_repo);
        assert_eq!(real.removed.len(), MAX_LISTED);
        assert_eq!(real.removed_not_listed, repos * per_repo - MAX_LISTED);
        assert_eq!(PruneReport { dry_run: false, ..dry }, real, "the same removals, listed in the same order");
        for name in &names {
            assert!(fs::read_dir(real_layout.revisions(name)).unwrap().next().is_none(), "{name}: every empty revision goes");
        }
    }

    #[test]
    fn a_change_cut_into_pieces_is_the_same_sequence() {
        let digests: Vec<Digest> = (0..7u8).map(|i| Digest::of(&[i])).collect();
        let whole = Changed {
            revisions: digests[..3].to_vec(),
            stale_history: vec![("a".into(), digests[0]), ("b".into(), digests[1])],
            referenced: digests[3..].iter().copied().collect(),
            emptied: false,
        };
        for size in 1..=10 {
            let pieces = whole.pieces(size);
            assert_eq!(pieces.len(), whole.len().div_ceil(size), "size {size}");
            assert!(pieces.iter().all(|p| p.len() <= size && p.len() > 0 && !p.emptied), "size {size}: {pieces:?}");
            let joined = |f: fn(&Changed) -> Vec<String>| pieces.iter().flat_map(f).collect::<Vec<_>>();
            assert_eq!(
                joined(|p| p.revisions.iter().map(|d| d.to_string()).collect()),
                whole.revisions.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            );
            assert_eq!(joined(|p| p.stale_history.iter().map(|(t, _)| t.clone()).collect()), vec!["a", "b"]);
            assert_eq!(
                joined(|p| p.referenced.iter().map(|d| d.to_string()).collect()),
                whole.referenced.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn one_large_change_pruned_in_pieces_removes_what_a_dry_run_says_in_its_order() {
        // More than two pieces of revisions, history entries and layer links in one repository,
        // with live entries among them that must stay.
        let n = PIECE + PIECE / 2;
        let deleted: Vec<Digest> = (0..n).map(|i| Digest::of(format!("deleted-{i}").as_bytes())).collect();
        let live: Vec<Digest> = (0..n / 100).map(|i| Digest::of(format!("live-{i}").as_bytes())).collect();
        let build_live = |layout: &Layout| {
            for d in &live {
                touch(&layout.blob_data(d), "live");
                touch(&layout.revision_link("ci/app", d), &d.as_str());
                touch(&layout.layers("ci/app").join(d.hex()).join("link"), &d.as_str());
            }
            touch(&layout.tag_current_link("ci/app", "keep"), &live[0].as_str());
        };
        let build = |layout: &Layout| {
            build_live(layout);
            for d in &deleted {
                fs::create_dir_all(layout.revisions("ci/app").join(d.hex())).unwrap();
                touch(&layout.layers("ci/app").join(d.hex()).join("link"), &d.as_str());
            }
            for d in deleted.iter().take(PIECE / 4) {
                touch(&layout.tag_index("ci/app", "keep").join(d.hex()).join("link"), &d.as_str());
            }
        };
        let scope = || PruneScope::Targeted {
            repositories: [(
                "ci/app".to_string(),
                Changed {
                    revisions: deleted.clone(),
                    // Live digests referenced too: the collector did not delete them.
                    referenced: deleted.iter().chain(&live).copied().collect(),
                    emptied: false,
                    stale_history: deleted.iter().take(PIECE / 4).map(|d| ("keep".to_string(), *d)).collect(),
                },
            )]
            .into(),
            blobs: deleted.clone(),
            litter_budget: 0,
        };
        let [(_dry_dir, dry_layout), (real_dir, real_layout)] = twin_storages(build);
        let dry = prune(&dry_layout, &PruneOptions { scope: scope(), dry_run: true, ..Default::default() });
        let trash = Arc::new(Trash::open(&real_layout, "run-1").unwrap());
        let real = prune(&real_layout, &PruneOptions { scope: scope(), trash: Some(trash), ..Default::default() });
        assert!(real.problems.is_empty(), "{:?}", real.problems);
        assert_eq!((real.empty_revisions, real.stale_tag_history, real.dangling_layer_links), (n, PIECE / 4, n));
        assert_eq!(PruneReport { dry_run: false, ..dry }, real, "the same removals, listed in the same order");
        // Outside the trash, exactly the live files are left.
        let files = |root: &Path| -> Vec<PathBuf> {
            tree(root)
                .into_iter()
                .filter(|p| !p.is_dir() && !p.starts_with(root.join(".regsweep")))
                .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
                .collect()
        };
        let kept_dir = tempfile::tempdir().unwrap();
        build_live(&Layout::new(kept_dir.path()));
        assert_eq!(files(real_dir.path()), files(kept_dir.path()));
    }

    #[test]
    fn a_targeted_prune_visits_only_what_the_sweep_changed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let (live, deleted, config, older) = (Digest::of(b"live"), Digest::of(b"deleted"), Digest::of(b"config"), Digest::of(b"older"));
        touch(&layout.blob_data(&live), "live");
        touch(&layout.revision_link("app", &live), &live.as_str());
        touch(&layout.tag_current_link("app", "v1"), &live.as_str());
        touch(&layout.tag_index("app", "v1").join(live.hex()).join("link"), &live.as_str());
        // What this sweep left: a deleted revision, its config's dangling layer link, a kept
        // tag's history naming the deleted manifest.
        fs::create_dir_all(layout.revisions("app").join(deleted.hex())).unwrap();
        touch(&layout.layers("app").join(config.hex()).join("link"), &config.as_str());
        touch(&layout.tag_index("app", "v1").join(deleted.hex()).join("link"), &deleted.as_str());
        // Litter from long ago, in the same repository: not this sweep's.
        fs::create_dir_all(layout.revisions("app").join(older.hex())).unwrap();
        touch(&layout.layers("app").join(older.hex()).join("link"), &older.as_str());
        // A repository the sweep emptied, and one it never touched.
        fs::create_dir_all(layout.revisions("gone").join(deleted.hex())).unwrap();
        touch(&layout.layers("gone").join(config.hex()).join("link"), &config.as_str());
        fs::create_dir_all(layout.revisions("other").join(older.hex())).unwrap();
        touch(&layout.tag_current_link("other", "v1"), &live.as_str());
        touch(&layout.revision_link("other", &live), &live.as_str());
        fs::create_dir_all(layout.blobs().join(&config.hex()[..2])).unwrap();

        let changed = |emptied| Changed {
            revisions: vec![deleted.clone()],
            referenced: [deleted.clone(), config.clone()].into(),
            emptied,
            stale_history: vec![("v1".to_string(), deleted.clone())],
        };
        let scope = PruneScope::Targeted {
            repositories: [("app".to_string(), changed(false)), ("gone".to_string(), changed(true))].into(),
            blobs: vec![deleted.clone(), config.clone()],
            litter_budget: 0,
        };
        let report = prune(&layout, &PruneOptions { scope, ..Default::default() });
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(!layout.revisions("app").join(deleted.hex()).exists());
        assert!(!layout.layers("app").join(config.hex()).exists());
        assert!(!layout.tag_index("app", "v1").join(deleted.hex()).exists());
        assert_eq!(report.repositories_removed, vec!["gone".to_string()]);
        assert!(!layout.blobs().join(&config.hex()[..2]).exists(), "the collected blob's emptied prefix");
        for old in
            [layout.revisions("app").join(older.hex()), layout.layers("app").join(older.hex()), layout.revisions("other").join(older.hex())]
        {
            assert!(old.exists(), "{} is not this sweep's: left to a whole visit", old.display());
        }
        assert!(layout.tag_current_link("app", "v1").exists() && layout.blob_data(&live).exists());

        // A whole visit of the same storage removes the older litter too.
        let full = prune(&layout, &PruneOptions::default());
        assert_eq!((full.empty_revisions, full.dangling_layer_links), (2, 1), "{full:?}");
    }

    #[test]
    fn a_targeted_prune_never_goes_through_a_symlinked_directory() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("storage"));
        let outside = dir.path().join("outside");
        let (live, deleted, config) = (Digest::of(b"live"), Digest::of(b"deleted"), Digest::of(b"config"));
        touch(&layout.revision_link("app", &live), &live.as_str());
        touch(&layout.tag_current_link("app", "v1"), &live.as_str());
        fs::create_dir_all(layout.revisions("app").join(deleted.hex())).unwrap();
        // `_layers` and the tag's `index` lead outside, to what looks exactly like this sweep's
        // litter there.
        touch(&outside.join("layers/sha256").join(config.hex()).join("link"), &config.as_str());
        touch(&outside.join("index/sha256").join(deleted.hex()).join("link"), &deleted.as_str());
        std::os::unix::fs::symlink(outside.join("layers"), layout.repository("app").join("_layers")).unwrap();
        std::os::unix::fs::symlink(outside.join("index"), layout.tags("app").join("v1/index")).unwrap();
        fs::create_dir_all(layout.blobs()).unwrap();
        let before = tree(&outside);
        let trash = Arc::new(Trash::open(&layout, "run-1").unwrap());
        let scope = PruneScope::Targeted {
            repositories: [(
                "app".to_string(),
                Changed {
                    revisions: vec![deleted.clone()],
                    referenced: [config.clone()].into(),
                    emptied: false,
                    stale_history: vec![("v1".to_string(), deleted.clone())],
                },
            )]
            .into(),
            blobs: vec![config.clone()],
            litter_budget: 0,
        };
        let report = prune(&layout, &PruneOptions { scope, trash: Some(trash), ..Default::default() });
        assert_eq!(tree(&outside), before, "nothing outside the storage root is touched");
        assert!(!layout.revisions("app").join(deleted.hex()).exists(), "the revision itself is still pruned");
        for what in ["_layers", "index"] {
            assert!(report.problems.iter().any(|p| p.contains(what) && p.contains("symlink")), "{what} reported: {:?}", report.problems);
        }
    }

    #[test]
    fn a_tag_whose_manifest_revision_is_gone_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let (live, gone) = (Digest::of(b"live"), Digest::of(b"gone"));
        touch(&layout.blob_data(&live), "live");
        touch(&layout.revision_link("app", &live), &live.as_str());
        touch(&layout.tag_current_link("app", "v1"), &live.as_str());
        touch(&layout.tag_index("app", "v1").join(live.hex()).join("link"), &live.as_str());
        // The registry unlinked `gone` and was stopped before it removed the tags naming it.
        for t in ["dead", "dead-too"] {
            touch(&layout.tag_current_link("app", t), &gone.as_str());
            touch(&layout.tag_index("app", t).join(gone.hex()).join("link"), &gone.as_str());
        }
        // A dead tag whose history still names a live revision: the tag goes, the revision stays.
        touch(&layout.tag_current_link("app", "moved"), &gone.as_str());
        touch(&layout.tag_index("app", "moved").join(live.hex()).join("link"), &live.as_str());
        fs::create_dir_all(layout.revisions("app").join(gone.hex())).unwrap();
        let report = prune(&layout, &PruneOptions::default());
        for t in ["dead", "dead-too", "moved"] {
            assert!(!layout.tags("app").join(t).exists(), "{t} is gone: {report:?}");
        }
        assert!(layout.tag_current_link("app", "v1").exists() && layout.revision_link("app", &live).exists());
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let again = prune(&layout, &PruneOptions::default());
        assert!(!again.removed_anything(), "{again:?}");
    }
}
