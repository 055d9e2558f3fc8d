//! Reading a [`Snapshot`] from the filesystem storage layout: a directory walk, which sees what
//! the API cannot (untagged manifests, push times) and beats thousands of HTTP requests.
//!
//! Damaged storage is read cautiously (see README "Damaged storage"):
//! - nothing is followed: a symlinked repository, blob prefix or link is reported, not entered;
//! - an entry under a repository's `_manifests` that cannot be read makes that repository
//!   *unreadable*: what its tags point at cannot be proven, so the planner keeps all of it;
//! - entries `registry garbage-collect` fails or hangs on are marked `blocks_gc`, so a sweep
//!   refuses to start deleting before they are repaired.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::blobs::Blobs;
use super::entry::{self, BadLink, Kind, Listing};
use super::layout::{Layout, RESERVED_DIRS};
use super::snapshot::{Content, Manifest, Repository, Snapshot, SnapshotProblem, Tag, parse_manifest};
use super::usage::{self, Usage};
use crate::digest::Digest;

/// How to repair an entry garbage-collect cannot get past.
const REPAIR: &str = "move it out of the storage (or restore it from a backup), then rerun";

/// Reads the whole storage. Unreadable or malformed entries become [`SnapshotProblem`]s; only
/// a storage root that does not look like a registry at all is an error.
pub fn read_storage(layout: &Layout) -> Result<Snapshot, String> {
    let read = read_each(layout, |repo, _| repo)?;
    let mut snap = Snapshot {
        source: layout.root().display().to_string(),
        sees_untagged: true,
        blobs: read.blobs,
        problems: read.problems,
        ..Default::default()
    };
    snap.repositories = read.repositories.into_iter().map(|r| (r.name.clone(), r)).collect();
    Ok(snap)
}

/// What [`read_each`] read: the blob store, the problems found, and what `each` made of every
/// repository, in name order.
pub struct ReadEach<T> {
    pub blobs: Blobs,
    pub problems: Vec<SnapshotProblem>,
    pub repositories: Vec<T>,
    /// Disk usage, when asked for ([`read_each_measured`]).
    pub usage: Option<Usage>,
}

/// [`read_each`], measuring the disk usage in the same walk: each reader adds up its
/// repositories' files, the blob store's bytes are the sizes the snapshot read. (Files
/// directly in a directory of repositories that is not one, which the registry never writes,
/// are not counted.)
pub fn read_each_measured<T: Send>(layout: &Layout, each: impl Fn(Repository, &Blobs) -> T + Sync) -> Result<ReadEach<T>, String> {
    read_with(layout, true, each)
}

/// Reads the storage repository by repository: the blob store first (`each` may need its
/// sizes), then every repository, each handed to `each` as soon as it is read, so a caller
/// that keeps only what it needs of each never holds the whole storage.
///
/// Several readers at once: on a cold page cache the walk waits on the disk, which serves
/// many small reads in parallel far faster than one after another. Results are merged in
/// a fixed order, so nothing depends on the scheduling.
pub fn read_each<T: Send>(layout: &Layout, each: impl Fn(Repository, &Blobs) -> T + Sync) -> Result<ReadEach<T>, String> {
    read_with(layout, false, each)
}

fn read_with<T: Send>(layout: &Layout, measure: bool, each: impl Fn(Repository, &Blobs) -> T + Sync) -> Result<ReadEach<T>, String> {
    check_root(layout)?;
    let mut problems = Vec::new();
    let mut names = Vec::new();
    find_repositories(&layout.repositories(), "", &mut names, &mut problems);
    let (blobs, blob_problems) = read_blob_sizes(layout);
    problems.extend(blob_problems);
    let repos = super::side_by_side(READERS, &names, |name| {
        let mut problems = Vec::new();
        let repo = read_repository(layout, name, &mut problems);
        let usage = measure.then(|| usage::of_repository(&layout.repository(name)));
        (each(repo, &blobs), problems, usage)
    });
    let mut total = measure
        .then(|| usage::outside_repositories(layout, Some(&blobs)))
        .transpose()
        .map_err(|e| format!("cannot measure the storage: {e}"))?;
    let mut repositories = Vec::with_capacity(repos.len());
    for (made, found, usage) in repos {
        problems.extend(found);
        repositories.push(made);
        if let (Some(total), Some(usage)) = (total.as_mut(), usage) {
            total.add(&usage.map_err(|e| format!("cannot measure the storage: {e}"))?);
        }
    }
    Ok(ReadEach { blobs, problems, repositories, usage: total })
}

/// Readers of the blob store, then of the repositories.
const READERS: usize = 8;

/// The storage root must be an absolute path to a directory holding `docker/registry/v2`.
pub fn check_root(layout: &Layout) -> Result<(), String> {
    let root = layout.root();
    let hint = "pass the directory named by storage.filesystem.rootdirectory";
    if !root.is_absolute() {
        return Err(format!("the storage root {} is a relative path; {hint} as an absolute path", root.display()));
    }
    match fs::metadata(root) {
        Err(e) => return Err(format!("the storage root {} cannot be used: {e}; {hint}", root.display())),
        Ok(m) if !m.is_dir() => return Err(format!("the storage root {} is not a directory; {hint}", root.display())),
        Ok(_) => {}
    }
    match entry::kind_of(&layout.v2()) {
        Ok(Some(Kind::Dir)) => Ok(()),
        Ok(Some(k)) => Err(format!("{} is {}; the registry's storage must be a plain directory", layout.v2().display(), k.describe())),
        Ok(None) => Err(format!("{} is not a registry storage directory (no docker/registry/v2 inside); {hint}", root.display())),
        Err(e) => Err(format!("{} cannot be read: {e}", layout.v2().display())),
    }
}

fn problem(problems: &mut Vec<SnapshotProblem>, path: &Path, what: impl Into<String>, blocks_gc: bool) {
    problems.push(SnapshotProblem { path: path.display().to_string(), problem: what.into(), blocks_gc });
}

fn mtime(path: &Path) -> Option<DateTime<Utc>> {
    fs::symlink_metadata(path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from)
}

/// A directory is a repository when it holds any of the registry's `_` directories; it may
/// also be the parent of nested repositories (`team-a` and `team-a/app`).
fn find_repositories(dir: &Path, prefix: &str, out: &mut Vec<String>, problems: &mut Vec<SnapshotProblem>) {
    let children = match entry::list(dir) {
        Listing::Missing => return,
        Listing::Entries(e) => e,
        Listing::Unusable(why) => {
            problem(problems, dir, format!("{why}; the repositories in it are not swept"), false);
            return;
        }
    };
    if !prefix.is_empty() && children.iter().any(|c| RESERVED_DIRS.contains(&c.name.as_str())) {
        out.push(prefix.to_string());
    }
    for child in children.iter().filter(|c| !c.name.starts_with('_')) {
        match child.kind {
            Kind::Dir => {
                let name = if prefix.is_empty() { child.name.clone() } else { format!("{prefix}/{}", child.name) };
                find_repositories(&child.path, &name, out, problems);
            }
            Kind::Symlink => {
                // garbage-collect follows symlinks: one pointing back up the tree loops it forever.
                let loops = symlink_loops(&child.path);
                let what = if loops {
                    format!("is a symlink to a directory above it; garbage-collect loops on it; {REPAIR}")
                } else {
                    "is a symlink; regsweep does not follow it, so nothing behind it is swept".to_string()
                };
                problem(problems, &child.path, what, loops);
            }
            Kind::File | Kind::Special => {}
        }
    }
}

/// Whether a symlink resolves to a directory that contains it.
fn symlink_loops(link: &Path) -> bool {
    let (Ok(target), Some(parent)) = (fs::canonicalize(link), link.parent()) else { return false };
    fs::canonicalize(parent).is_ok_and(|parent| parent.starts_with(&target))
}

/// `blobs/sha256/<xx>/<hex>/data` sizes, the prefixes read by several readers. A blob
/// directory garbage-collect would choke on (not 64 hex, or under the wrong prefix, with
/// content) blocks the sweep.
fn read_blob_sizes(layout: &Layout) -> (Blobs, Vec<SnapshotProblem>) {
    let blobs = layout.blobs();
    let mut problems = Vec::new();
    let prefixes = match entry::list(&blobs) {
        Listing::Missing => return (Blobs::default(), problems),
        Listing::Entries(e) => e,
        Listing::Unusable(why) => {
            problem(&mut problems, &blobs, why, true);
            return (Blobs::default(), problems);
        }
    };
    // Each prefix's list becomes the table's bucket for it, moved in, never copied.
    let found = super::side_by_side(READERS, &prefixes, |prefix| {
        let mut problems = Vec::new();
        let mut sizes = read_blob_prefix(prefix, &mut problems);
        sizes.shrink_to_fit();
        (sizes, problems)
    });
    let mut parts = Vec::with_capacity(found.len());
    for (sizes, found) in found {
        parts.push(sizes);
        problems.extend(found);
    }
    (Blobs::from_parts(parts), problems)
}

fn read_blob_prefix(prefix: &entry::Entry, problems: &mut Vec<SnapshotProblem>) -> Vec<(Digest, u64)> {
    let mut sizes = Vec::new();
    match prefix.kind {
        Kind::Dir => {}
        Kind::Symlink => {
            problem(problems, &prefix.path, format!("is a symlink; garbage-collect fails on it; {REPAIR}"), true);
            return sizes;
        }
        // A stray file here is ignored by garbage-collect, and so by regsweep.
        Kind::File | Kind::Special => return sizes,
    }
    let entries = match entry::list(&prefix.path) {
        Listing::Entries(e) => e,
        Listing::Missing => return sizes,
        Listing::Unusable(why) => {
            problem(problems, &prefix.path, why, true);
            return sizes;
        }
    };
    // Sized once: a list grown by doubling holds up to twice its blobs until the table is
    // settled (14 MB over 256 prefixes at 200,000 tags).
    sizes.reserve_exact(entries.len());
    for blob in entries.into_iter().filter(|e| e.kind != Kind::File) {
        let data = blob.path.join("data");
        let digest = Digest::from_hex(&blob.name).ok().filter(|_| blob.name.starts_with(&prefix.name));
        match (digest, blob.kind) {
            (Some(d), Kind::Dir) => match fs::symlink_metadata(&data) {
                Ok(m) if m.is_file() => sizes.push((d, m.len())),
                Ok(m) => problem(problems, &data, format!("is {}, not a blob", Kind::of(m.file_type()).describe()), false),
                // A blob directory without data is GC litter, not a blob.
                Err(_) => {}
            },
            (_, Kind::Dir) if matches!(entry::list(&blob.path), Listing::Entries(e) if e.is_empty()) => {}
            (_, k) => problem(
                problems,
                &blob.path,
                format!("is {} that is not a blob of this prefix; garbage-collect fails on it; {REPAIR}", k.describe()),
                true,
            ),
        }
    }
    sizes
}

/// Records an entry that leaves the repository's tags unproven.
fn taint(repo: &mut Repository, problems: &mut Vec<SnapshotProblem>, path: &Path, what: impl std::fmt::Display, blocks_gc: bool) {
    let what = if blocks_gc { format!("{what}; garbage-collect fails on it; {REPAIR}") } else { what.to_string() };
    problem(problems, path, what, blocks_gc);
    repo.unreadable.push(path.display().to_string());
}

fn read_repository(layout: &Layout, name: &str, problems: &mut Vec<SnapshotProblem>) -> Repository {
    let mut repo = Repository { name: name.to_string(), ..Default::default() };
    let manifests = layout.repository(name).join("_manifests");
    if let Ok(Some(k)) = entry::kind_of(&manifests)
        && k != Kind::Dir
    {
        taint(&mut repo, problems, &manifests, format!("is {}, not a directory", k.describe()), false);
        return repo;
    }
    read_revisions(layout, &mut repo, problems);
    read_tags(layout, &mut repo, problems);
    repo
}

fn read_revisions(layout: &Layout, repo: &mut Repository, problems: &mut Vec<SnapshotProblem>) {
    let name = repo.name.clone();
    let revisions = layout.revisions(&name);
    let entries = match entry::list(&revisions) {
        Listing::Missing => Vec::new(),
        Listing::Entries(e) => e,
        Listing::Unusable(why) => return taint(repo, problems, &revisions, why, false),
    };
    for e in entries {
        let link = e.path.join("link");
        let digest = match (e.kind, Digest::from_hex(&e.name)) {
            (Kind::Dir, Ok(d)) => d,
            // garbage-collect skips what is not a sha256 revision directory; so does regsweep.
            (Kind::Dir | Kind::File, Err(_)) => {
                problem(problems, &e.path, "is not a revision (its name is not 64 hex characters); left alone", false);
                continue;
            }
            (k, _) => {
                taint(repo, problems, &e.path, format!("is {}, where a revision directory belongs", k.describe()), false);
                continue;
            }
        };
        match entry::read_link(&link) {
            // An empty revision directory is what a manifest DELETE leaves: not a manifest.
            Ok(None) => continue,
            Ok(Some(target)) if target != digest => {
                taint(repo, problems, &link, format!("links to {target}, not to its own digest"), false);
                continue;
            }
            Ok(Some(_)) => {}
            Err(bad) => {
                let blocks_gc = matches!(bad, BadLink::Content(_) | BadLink::NotAFile(Kind::Special));
                taint(repo, problems, &link, &bad, blocks_gc);
                continue;
            }
        }
        // Parsed again in every repository that links it (no cache): a manifest mounted into
        // many repositories is rare, and a cache would hold a second copy of every manifest.
        let (media_type, content, subject) = match read_manifest_blob(&layout.blob_data(&digest)) {
            Ok(body) => {
                if crate::quarantine::is_quarantine(&name) {
                    match crate::quarantine::Record::from_manifest(&body) {
                        Some(Ok(record)) => {
                            repo.records.insert(digest.clone(), record);
                        }
                        Some(Err(e)) => problem(problems, &link, format!("quarantine record {digest}: {e}; what it holds is kept"), false),
                        None => {}
                    }
                }
                parse_manifest(&body)
            }
            Err(e) => (String::new(), Content::Unknown { why: format!("manifest blob unreadable: {e}") }, None),
        };
        if let Content::Unknown { why } = &content {
            problem(problems, &link, format!("manifest {digest}: {why}"), false);
        }
        repo.manifests.insert(digest.clone(), Manifest { digest, media_type, pushed: mtime(&link), content, subject });
    }
}

/// A manifest's blob: a regular file of at most 4 MiB (the registry's own manifest limit).
fn read_manifest_blob(path: &Path) -> Result<Vec<u8>, String> {
    const MAX: u64 = 4 << 20;
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => Err(format!("{} is {}", path.display(), Kind::of(m.file_type()).describe())),
        Ok(m) if m.len() > MAX => Err(format!("{} is {} bytes, larger than a manifest can be", path.display(), m.len())),
        Ok(_) => fs::read(path).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn read_tags(layout: &Layout, repo: &mut Repository, problems: &mut Vec<SnapshotProblem>) {
    let name = repo.name.clone();
    let tags = layout.tags(&name);
    let entries = match entry::list(&tags) {
        Listing::Missing => Vec::new(),
        Listing::Entries(e) => e,
        Listing::Unusable(why) => return taint(repo, problems, &tags, why, false),
    };
    for tag in entries {
        match tag.kind {
            Kind::Dir => {}
            // Not a tag (the registry cannot resolve it either); nothing can hide behind it.
            Kind::File => {
                problem(problems, &tag.path, "is a file, not a tag directory; left alone", false);
                continue;
            }
            k => {
                taint(repo, problems, &tag.path, format!("is {}, where a tag directory belongs", k.describe()), false);
                continue;
            }
        }
        let current = tags.join(&tag.name).join("current");
        match entry::kind_of(&current) {
            Ok(None | Some(Kind::Dir)) => {}
            Ok(Some(k)) => {
                taint(repo, problems, &current, format!("is {}, not a directory", k.describe()), false);
                continue;
            }
            Err(e) => {
                taint(repo, problems, &current, format!("cannot stat: {e}"), false);
                continue;
            }
        }
        let link = layout.tag_current_link(&name, &tag.name);
        match entry::read_link(&link) {
            Ok(Some(digest)) => {
                if !repo.manifests.contains_key(&digest) {
                    problem(
                        problems,
                        &link,
                        format!("tag {name}:{} points at {digest}, which has no revision in the repository", tag.name),
                        false,
                    );
                }
                // The tag's history entries naming another manifest: if the sweep deletes
                // that one, the entry is litter the prune removes (see `Repository::history`).
                if let Listing::Entries(history) = entry::list(&layout.tag_index(&name, &tag.name)) {
                    let older = history.into_iter().filter(|e| e.kind == Kind::Dir).filter_map(|e| Digest::from_hex(&e.name).ok());
                    repo.history.extend(older.filter(|d| *d != digest).map(|d| (tag.name.clone(), d)));
                }
                repo.tags.insert(tag.name.clone(), Tag { name: tag.name, digest, pushed: mtime(&link) });
            }
            // A tag directory without a current link is litter from an interrupted delete.
            Ok(None) => {}
            Err(bad) => taint(repo, problems, &link, &bad, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, content: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    #[test]
    fn a_tags_older_history_is_read_with_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let (now, before) = (Digest::of(b"now"), Digest::of(b"before"));
        for d in [&now, &before] {
            touch(
                &layout.blob_data(d),
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#,
            );
            touch(&layout.revision_link("app", d), &d.as_str());
        }
        touch(&layout.tag_current_link("app", "latest"), &now.as_str());
        for d in [&now, &before] {
            touch(&layout.tag_index("app", "latest").join(d.hex()).join("link"), &d.as_str());
        }
        touch(&layout.tag_current_link("app", "v1"), &before.as_str());
        let snap = read_storage(&layout).unwrap();
        let repo = &snap.repositories["app"];
        assert_eq!(repo.history, vec![("latest".to_string(), before.clone())], "only entries naming another manifest than the tag now");
        assert_eq!(repo.tags["latest"].digest, now);
    }
}
