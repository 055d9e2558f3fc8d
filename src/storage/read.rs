//! Reading a [`Snapshot`] from the filesystem storage layout: a directory walk, which sees what
//! the API cannot (untagged manifests, push times) and beats thousands of HTTP requests.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::layout::{Layout, RESERVED_DIRS, read_link};
use super::snapshot::{Content, Manifest, Repository, Snapshot, SnapshotProblem, Tag, parse_manifest};
use crate::digest::Digest;

/// Reads the whole storage. Unreadable or malformed entries become [`SnapshotProblem`]s; only
/// a storage root that does not look like a registry at all is an error.
pub fn read_storage(layout: &Layout) -> Result<Snapshot, String> {
    let v2 = layout.v2();
    if !v2.is_dir() {
        return Err(format!(
            "{} is not a registry storage directory (no docker/registry/v2 inside); pass the directory named by storage.filesystem.rootdirectory",
            layout.root().display()
        ));
    }
    let mut snap = Snapshot { source: layout.root().display().to_string(), sees_untagged: true, ..Default::default() };
    read_blob_sizes(layout, &mut snap);
    let mut names = Vec::new();
    find_repositories(&layout.repositories(), "", &mut names, &mut snap.problems);
    let mut parsed: HashMap<Digest, (String, Content, Option<Digest>)> = HashMap::new();
    for name in names {
        let repo = read_repository(layout, &name, &mut parsed, &mut snap.problems);
        snap.repositories.insert(name, repo);
    }
    Ok(snap)
}

fn problem(problems: &mut Vec<SnapshotProblem>, path: &Path, what: impl Into<String>) {
    problems.push(SnapshotProblem { path: path.display().to_string(), problem: what.into() });
}

fn mtime(path: &Path) -> Option<DateTime<Utc>> {
    fs::metadata(path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from)
}

/// Subdirectories, sorted, as names; a missing directory is empty.
fn subdirs(dir: &Path, problems: &mut Vec<SnapshotProblem>) -> Vec<String> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problem(problems, dir, format!("cannot list: {e}"));
            return Vec::new();
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// A directory is a repository when it holds any of the registry's `_` directories; it may
/// also be the parent of nested repositories (`team-a` and `team-a/app`).
fn find_repositories(dir: &Path, prefix: &str, out: &mut Vec<String>, problems: &mut Vec<SnapshotProblem>) {
    let children = subdirs(dir, problems);
    if !prefix.is_empty() && children.iter().any(|c| RESERVED_DIRS.contains(&c.as_str())) {
        out.push(prefix.to_string());
    }
    for child in children.iter().filter(|c| !c.starts_with('_')) {
        let name = if prefix.is_empty() { child.clone() } else { format!("{prefix}/{child}") };
        find_repositories(&dir.join(child), &name, out, problems);
    }
}

fn read_blob_sizes(layout: &Layout, snap: &mut Snapshot) {
    let blobs = layout.blobs();
    for prefix in subdirs(&blobs, &mut snap.problems) {
        for hex in subdirs(&blobs.join(&prefix), &mut snap.problems) {
            let data = blobs.join(&prefix).join(&hex).join("data");
            match (Digest::from_hex(&hex), fs::metadata(&data)) {
                (Ok(d), Ok(meta)) => {
                    snap.blobs.insert(d, meta.len());
                }
                (Err(e), _) => problem(&mut snap.problems, &data, format!("not a sha256 blob directory: {e}")),
                // A blob directory without data is GC litter, not a blob.
                (Ok(_), Err(_)) => {}
            }
        }
    }
}

fn read_repository(
    layout: &Layout,
    name: &str,
    parsed: &mut HashMap<Digest, (String, Content, Option<Digest>)>,
    problems: &mut Vec<SnapshotProblem>,
) -> Repository {
    let mut repo = Repository { name: name.to_string(), ..Default::default() };
    let revisions = layout.revisions(name);
    for hex in subdirs(&revisions, problems) {
        let link = revisions.join(&hex).join("link");
        let digest = match Digest::from_hex(&hex) {
            Ok(d) => d,
            Err(e) => {
                problem(problems, &link, format!("not a sha256 revision: {e}"));
                continue;
            }
        };
        match read_link(&link) {
            // An empty revision directory is what a manifest DELETE leaves: not a manifest.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                problem(problems, &link, format!("cannot read: {e}"));
                continue;
            }
            Ok(Err(e)) => {
                problem(problems, &link, e);
                continue;
            }
            Ok(Ok(target)) if target != digest => {
                problem(problems, &link, format!("links to {target}, not to its own digest"));
                continue;
            }
            Ok(Ok(_)) => {}
        }
        let (media_type, content, subject) = parsed
            .entry(digest.clone())
            .or_insert_with(|| match fs::read(layout.blob_data(&digest)) {
                Ok(body) => parse_manifest(&body),
                Err(e) => (String::new(), Content::Unknown { why: format!("manifest blob unreadable: {e}") }, None),
            })
            .clone();
        if let Content::Unknown { why } = &content {
            problem(problems, &link, format!("manifest {digest}: {why}"));
        }
        repo.manifests.insert(digest.clone(), Manifest { digest, media_type, pushed: mtime(&link), content, subject });
    }
    let tags = layout.tags(name);
    for tag in subdirs(&tags, problems) {
        let link = layout.tag_current_link(name, &tag);
        match read_link(&link) {
            Ok(Ok(digest)) => {
                if !repo.manifests.contains_key(&digest) {
                    problem(problems, &link, format!("tag {name}:{tag} points at {digest}, which has no revision in the repository"));
                }
                repo.tags.insert(tag.clone(), Tag { name: tag, digest, pushed: mtime(&link) });
            }
            Ok(Err(e)) => problem(problems, &link, e),
            // A tag directory without a current link is litter from an interrupted delete.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problem(problems, &link, format!("cannot read: {e}")),
        }
    }
    repo
}
