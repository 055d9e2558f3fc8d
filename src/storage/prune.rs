//! Removing what `garbage-collect` leaves behind: empty revision directories, tag history for
//! deleted manifests, dangling `_layers` links, abandoned uploads, emptied repositories (which
//! otherwise stay in `_catalog`) and empty blob directories. It never removes a live link or a
//! blob, and a second run removes nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::layout::{Layout, RESERVED_DIRS, read_link};
use crate::digest::Digest;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Upload sessions older than this are abandoned.
    pub upload_max_age: Duration,
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { upload_max_age: Duration::from_secs(24 * 3600), dry_run: false }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub empty_revisions: usize,
    pub stale_tag_history: usize,
    pub dangling_layer_links: usize,
    pub abandoned_uploads: usize,
    pub empty_blob_dirs: usize,
    /// Repositories removed because nothing was left in them.
    pub repositories_removed: Vec<String>,
    pub problems: Vec<String>,
}

impl PruneReport {
    pub fn removed_anything(&self) -> bool {
        self.empty_revisions + self.stale_tag_history + self.dangling_layer_links + self.abandoned_uploads + self.empty_blob_dirs > 0
            || !self.repositories_removed.is_empty()
    }
}

struct Pruner<'a> {
    layout: &'a Layout,
    opts: &'a PruneOptions,
    report: PruneReport,
}

fn dirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|it| it.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut it| it.next().is_none())
}

impl Pruner<'_> {
    fn remove_dir(&mut self, dir: &Path) -> bool {
        if self.opts.dry_run {
            return true;
        }
        match fs::remove_dir_all(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                self.report.problems.push(format!("cannot remove {}: {e}", dir.display()));
                false
            }
        }
    }

    /// Revision directories with no link: what a manifest DELETE leaves.
    fn revisions(&mut self, repo: &str) -> usize {
        let dir = self.layout.revisions(repo);
        let mut live = 0;
        for hex in dirs(&dir) {
            let path = dir.join(&hex);
            if path.join("link").exists() {
                live += 1;
            } else if self.remove_dir(&path) {
                self.report.empty_revisions += 1;
            }
        }
        live
    }

    /// Tag history entries whose manifest is gone; tags with neither a current link nor history.
    fn tags(&mut self, repo: &str) -> usize {
        let tags = self.layout.tags(repo);
        let mut live = 0;
        for tag in dirs(&tags) {
            let index = self.layout.tag_index(repo, &tag);
            for hex in dirs(&index) {
                let alive = Digest::from_hex(&hex).is_ok_and(|d| self.layout.revision_link(repo, &d).exists());
                if !alive && self.remove_dir(&index.join(&hex)) {
                    self.report.stale_tag_history += 1;
                }
            }
            if self.layout.tag_current_link(repo, &tag).exists() {
                live += 1;
            } else if dirs(&index).is_empty() || self.opts.dry_run {
                self.remove_dir(&tags.join(&tag));
            }
        }
        live
    }

    /// `_layers` links whose blob no longer exists.
    fn layers(&mut self, repo: &str) {
        let dir = self.layout.layers(repo);
        for hex in dirs(&dir) {
            let link = dir.join(&hex).join("link");
            let dangling = match read_link(&link) {
                Ok(Ok(d)) => !self.layout.blob_data(&d).exists(),
                Ok(Err(_)) => false,
                Err(_) => is_empty_dir(&dir.join(&hex)),
            };
            if dangling && self.remove_dir(&dir.join(&hex)) {
                self.report.dangling_layer_links += 1;
            }
        }
    }

    /// Upload sessions older than the threshold; returns how many recent ones remain.
    fn uploads(&mut self, repo: &str) -> usize {
        let dir = self.layout.uploads(repo);
        let mut recent = 0;
        for id in dirs(&dir) {
            let path = dir.join(&id);
            let started = fs::read_to_string(path.join("startedat"))
                .ok()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
                .map(SystemTime::from)
                .or_else(|| fs::metadata(&path).and_then(|m| m.modified()).ok());
            let age = started.and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default();
            if age > self.opts.upload_max_age {
                if self.remove_dir(&path) {
                    self.report.abandoned_uploads += 1;
                }
            } else {
                recent += 1;
            }
        }
        recent
    }

    fn repository(&mut self, name: &str) {
        let manifests = self.revisions(name);
        let tags = self.tags(name);
        self.layers(name);
        let uploads = self.uploads(name);
        if manifests + tags + uploads > 0 {
            return;
        }
        // Nothing left: drop the registry's directories, keeping any nested repository.
        let repo_dir = self.layout.repository(name);
        for reserved in RESERVED_DIRS {
            self.remove_dir(&repo_dir.join(reserved));
        }
        self.report.repositories_removed.push(name.to_string());
        if !self.opts.dry_run {
            self.remove_empty_parents(repo_dir);
        }
    }

    fn remove_empty_parents(&mut self, mut dir: PathBuf) {
        let top = self.layout.repositories();
        while dir.starts_with(&top) && dir != top && is_empty_dir(&dir) {
            if fs::remove_dir(&dir).is_err() {
                break;
            }
            dir = match dir.parent() {
                Some(p) => p.to_path_buf(),
                None => break,
            };
        }
    }

    fn blobs(&mut self) {
        let blobs = self.layout.blobs();
        for prefix in dirs(&blobs) {
            let prefix_dir = blobs.join(&prefix);
            for hex in dirs(&prefix_dir) {
                let dir = prefix_dir.join(&hex);
                if !dir.join("data").exists() && is_empty_dir(&dir) && self.remove_dir(&dir) {
                    self.report.empty_blob_dirs += 1;
                }
            }
            if is_empty_dir(&prefix_dir) && self.remove_dir(&prefix_dir) {
                self.report.empty_blob_dirs += 1;
            }
        }
    }
}

fn find_repositories(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let children = dirs(dir);
    if !prefix.is_empty() && children.iter().any(|c| RESERVED_DIRS.contains(&c.as_str())) {
        out.push(prefix.to_string());
    }
    for child in children.iter().filter(|c| !c.starts_with('_')) {
        let name = if prefix.is_empty() { child.clone() } else { format!("{prefix}/{child}") };
        find_repositories(&dir.join(child), &name, out);
    }
}

pub fn prune(layout: &Layout, opts: &PruneOptions) -> PruneReport {
    let mut pruner = Pruner { layout, opts, report: PruneReport::default() };
    let mut repos = Vec::new();
    find_repositories(&layout.repositories(), "", &mut repos);
    // Deepest first, so a parent repository's emptiness is judged after its children's.
    repos.sort_by_key(|r| std::cmp::Reverse(r.matches('/').count()));
    for repo in repos {
        pruner.repository(&repo);
    }
    pruner.blobs();
    tracing::info!(report = ?pruner.report, "pruned litter");
    pruner.report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, content: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    #[test]
    fn removes_litter_and_nothing_live() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let live = Digest::of(b"live");
        let gone = Digest::of(b"gone");
        touch(&layout.blob_data(&live), "live");
        // team-a: a live tagged manifest plus litter.
        touch(&layout.revision_link("team-a", &live), live.as_str());
        touch(&layout.tag_current_link("team-a", "v1"), live.as_str());
        touch(&layout.tag_index("team-a", "v1").join(live.hex()).join("link"), live.as_str());
        touch(&layout.tag_index("team-a", "v1").join(gone.hex()).join("link"), gone.as_str());
        fs::create_dir_all(layout.revisions("team-a").join(gone.hex())).unwrap();
        touch(&layout.layers("team-a").join(live.hex()).join("link"), live.as_str());
        touch(&layout.layers("team-a").join(gone.hex()).join("link"), gone.as_str());
        touch(&layout.uploads("team-a").join("old-upload").join("startedat"), "2020-01-01T00:00:00Z");
        touch(&layout.uploads("team-a").join("new-upload").join("startedat"), &chrono::Utc::now().to_rfc3339());
        // team-a/app (nested): emptied completely.
        fs::create_dir_all(layout.revisions("team-a/app").join(gone.hex())).unwrap();
        touch(&layout.layers("team-a/app").join(gone.hex()).join("link"), gone.as_str());
        // A lone emptied repository with a parent directory that is not a repository.
        fs::create_dir_all(layout.revisions("solo/x").join(gone.hex())).unwrap();
        fs::create_dir_all(layout.blobs().join(&gone.hex()[..2]).join(gone.hex())).unwrap();

        let report = prune(&layout, &PruneOptions::default());
        assert_eq!(report.empty_revisions, 3);
        assert_eq!(report.stale_tag_history, 1);
        assert_eq!(report.dangling_layer_links, 2);
        assert_eq!(report.abandoned_uploads, 1);
        assert_eq!(report.repositories_removed, vec!["solo/x".to_string(), "team-a/app".to_string()]);
        assert!(layout.tag_current_link("team-a", "v1").exists());
        assert!(layout.revision_link("team-a", &live).exists());
        assert!(layout.blob_data(&live).exists());
        assert!(layout.uploads("team-a").join("new-upload").exists());
        assert!(!layout.repository("team-a/app").exists());
        assert!(!layout.repositories().join("solo").exists());
        assert!(layout.repository("team-a").exists());
        assert!(!prune(&layout, &PruneOptions::default()).removed_anything(), "a second run removes nothing");
    }

    #[test]
    fn a_missing_storage_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!prune(&Layout::new(dir.path()), &PruneOptions::default()).removed_anything());
    }
}
