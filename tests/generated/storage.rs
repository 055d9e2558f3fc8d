//! The model as the planner sees it: an in-memory [`Snapshot`], or the registry's filesystem
//! layout written to a temporary directory (read back with `read_storage`), and the ways a
//! repository's storage gets damaged in real life.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use regsweep::digest::Digest;
use regsweep::storage::{Content, Layout, Manifest, Repository, Snapshot, Tag};

use super::model::{Kind, Model};

/// The snapshot `read_storage` would make of the model's storage.
pub fn snapshot(model: &Model) -> Snapshot {
    let mut snap = Snapshot { source: format!("generated seed {}", model.seed), sees_untagged: true, ..Default::default() };
    for (d, bytes) in &model.blobs {
        snap.blobs.insert(d.clone(), bytes.len() as u64);
    }
    for r in model.repos.values() {
        let mut repo = Repository { name: r.name.clone(), ..Default::default() };
        for m in r.manifests.values() {
            let content = match &m.kind {
                Kind::Image { config, layers } => Content::Image { config: config.clone(), layers: layers.clone() },
                Kind::Index { children } => Content::Index { children: children.clone() },
                Kind::Unknown => Content::Unknown { why: "schemaVersion Some(1) is not supported (only 2)".into() },
            };
            repo.manifests.insert(
                m.digest.clone(),
                Manifest {
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                    pushed: Some(m.pushed),
                    content,
                    subject: m.subject.clone(),
                },
            );
        }
        for t in r.tags.values() {
            repo.tags.insert(t.name.clone(), Tag { name: t.name.clone(), digest: t.digest.clone(), pushed: Some(t.pushed) });
        }
        snap.repositories.insert(r.name.clone(), repo);
    }
    snap
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn set_mtime(path: &Path, when: DateTime<Utc>) {
    let t = filetime::FileTime::from_unix_time(when.timestamp(), when.timestamp_subsec_nanos());
    filetime::set_file_mtime(path, t).unwrap();
}

/// Writes the distribution filesystem layout for the model under `root` (the directory
/// `storage.filesystem.rootdirectory` names), the way the registry itself lays it out.
pub fn write_layout(model: &Model, root: &Path) -> Layout {
    let layout = Layout::new(root);
    for (d, bytes) in &model.blobs {
        write(&layout.blob_data(d), bytes);
    }
    for r in model.repos.values() {
        for m in r.manifests.values() {
            let link = layout.revision_link(&r.name, &m.digest);
            write(&link, m.digest.as_str().as_bytes());
            set_mtime(&link, m.pushed);
            for b in m.blobs() {
                write(&layout.layers(&r.name).join(b.hex()).join("link"), b.as_str().as_bytes());
            }
        }
        for (tag, d) in &r.tag_pushes {
            write(&layout.tag_index(&r.name, tag).join(d.hex()).join("link"), d.as_str().as_bytes());
        }
        for t in r.tags.values() {
            let link = layout.tag_current_link(&r.name, &t.name);
            write(&link, t.digest.as_str().as_bytes());
            set_mtime(&link, t.pushed);
        }
    }
    layout
}

/// How a repository's storage is damaged (issue 9 §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    EmptyLink,
    TruncatedLink,
    GarbageLink,
    /// The right digest padded to 1 MiB: nothing bounds what is read as a link today.
    OversizedLink,
    LinkIsDirectory,
    LinkIsFifo,
    /// A symlink to a file outside the storage that holds the right digest.
    LinkIsSymlink,
    /// `_manifests/tags` is a file, so no tag can be listed.
    TagsDirIsFile,
}

pub const DAMAGES: [Damage; 8] = [
    Damage::EmptyLink,
    Damage::TruncatedLink,
    Damage::GarbageLink,
    Damage::OversizedLink,
    Damage::LinkIsDirectory,
    Damage::LinkIsFifo,
    Damage::LinkIsSymlink,
    Damage::TagsDirIsFile,
];

/// What was damaged, and how to undo it.
pub struct Damaged {
    pub kind: Damage,
    pub repo: String,
    /// The entry that was damaged (a `current/link`, or `_manifests/tags`).
    pub path: PathBuf,
    /// A copy of `_manifests/tags` from before.
    backup: PathBuf,
    tags_dir: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            let mtime = filetime::FileTime::from_last_modification_time(&e.metadata().unwrap());
            filetime::set_file_mtime(&target, mtime).unwrap();
        }
    }
}

/// Damages `repo`'s tag `tag` (or its whole tag directory). `scratch` is a directory outside
/// the storage for the backup and the symlink's target.
pub fn damage(layout: &Layout, repo: &str, tag: &str, digest: &Digest, kind: Damage, scratch: &Path) -> Damaged {
    let tags_dir = layout.tags(repo);
    let backup = scratch.join("tags-backup");
    copy_dir(&tags_dir, &backup);
    let link = layout.tag_current_link(repo, tag);
    let text = digest.as_str();
    let right = text.as_bytes();
    let path = if kind == Damage::TagsDirIsFile { tags_dir.clone() } else { link.clone() };
    match kind {
        Damage::EmptyLink => std::fs::write(&link, b"").unwrap(),
        Damage::TruncatedLink => std::fs::write(&link, &right[..right.len() / 2]).unwrap(),
        Damage::GarbageLink => std::fs::write(&link, [0xff, 0x00, 0xfe, 0x13, 0x37, 0x80, 0x81, 0x00]).unwrap(),
        Damage::OversizedLink => {
            let mut big = right.to_vec();
            big.resize(1 << 20, b' ');
            std::fs::write(&link, big).unwrap();
        }
        Damage::LinkIsDirectory => {
            std::fs::remove_file(&link).unwrap();
            std::fs::create_dir_all(link.join("sub")).unwrap();
        }
        Damage::LinkIsFifo => {
            std::fs::remove_file(&link).unwrap();
            nix::unistd::mkfifo(&link, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        }
        Damage::LinkIsSymlink => {
            let target = scratch.join("outside-link");
            std::fs::write(&target, right).unwrap();
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(&target, &link).unwrap();
        }
        Damage::TagsDirIsFile => {
            std::fs::remove_dir_all(&tags_dir).unwrap();
            std::fs::write(&tags_dir, b"not a directory\n").unwrap();
        }
    }
    Damaged { kind, repo: repo.to_string(), path, backup, tags_dir }
}

impl Damaged {
    /// Whether the damaged entry is still exactly the damage (nothing "repaired" or removed it).
    pub fn still_there(&self) -> Result<(), String> {
        let meta = std::fs::symlink_metadata(&self.path).map_err(|e| format!("{} is gone: {e}", self.path.display()))?;
        let t = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        let fine = match self.kind {
            Damage::LinkIsDirectory => t.is_dir(),
            Damage::LinkIsFifo => t.is_fifo(),
            Damage::LinkIsSymlink => t.is_symlink(),
            Damage::TagsDirIsFile => t.is_file(),
            Damage::OversizedLink => t.is_file() && meta.len() == 1 << 20,
            _ => t.is_file(),
        };
        if fine { Ok(()) } else { Err(format!("{} was changed ({:?})", self.path.display(), t)) }
    }

    /// Puts the tag directory back as it was before the damage.
    pub fn repair(&self) {
        let meta = std::fs::symlink_metadata(&self.tags_dir);
        match meta {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&self.tags_dir).unwrap(),
            Ok(_) => std::fs::remove_file(&self.tags_dir).unwrap(),
            Err(_) => {}
        }
        copy_dir(&self.backup, &self.tags_dir);
    }

    /// Opens and closes the FIFO's write side, so a reader blocked on it sees an empty file.
    pub fn unblock_fifo(&self) {
        use std::os::unix::fs::OpenOptionsExt;
        if self.kind == Damage::LinkIsFifo {
            // O_RDWR never blocks on a FIFO; closing it gives the reader end-of-file.
            let _ = std::fs::OpenOptions::new().read(true).write(true).custom_flags(nix::libc::O_NONBLOCK).open(&self.path);
        }
    }
}

/// Blobs on disk that no linked manifest revision references, and linked manifests or their
/// blobs missing from disk, walked here independently of `regsweep::storage`.
pub fn unreferenced_blobs(root: &Path) -> (Vec<String>, Vec<String>) {
    let v2 = root.join("docker/registry/v2");
    let mut marked: BTreeMap<String, String> = BTreeMap::new();
    let mut missing = Vec::new();
    let mut stack = vec![v2.join("repositories")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name() == "_manifests" {
                let revs = p.join("revisions/sha256");
                for r in std::fs::read_dir(&revs).into_iter().flatten().flatten() {
                    if !r.path().join("link").is_file() {
                        continue;
                    }
                    let hex = r.file_name().to_string_lossy().to_string();
                    let data = v2.join("blobs/sha256").join(&hex[..2]).join(&hex).join("data");
                    marked.insert(hex.clone(), format!("manifest in {}", p.display()));
                    match std::fs::read(&data) {
                        Ok(body) => {
                            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                            let mut refs: Vec<&serde_json::Value> = Vec::new();
                            refs.extend(v.get("config"));
                            refs.extend(v.get("layers").and_then(|l| l.as_array()).into_iter().flatten());
                            refs.extend(v.get("manifests").and_then(|l| l.as_array()).into_iter().flatten());
                            for d in refs.iter().filter_map(|r| r.get("digest")).filter_map(|d| d.as_str()) {
                                if let Some(h) = d.strip_prefix("sha256:") {
                                    marked.insert(h.to_string(), format!("referenced by {hex}"));
                                }
                            }
                        }
                        Err(e) => missing.push(format!("manifest {hex} linked in {} has no blob: {e}", p.display())),
                    }
                }
            } else if !e.file_name().to_string_lossy().starts_with('_') {
                stack.push(p);
            }
        }
    }
    let mut on_disk = Vec::new();
    for prefix in std::fs::read_dir(v2.join("blobs/sha256")).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
            if b.path().join("data").exists() {
                on_disk.push(b.file_name().to_string_lossy().to_string());
            }
        }
    }
    let unreferenced = on_disk.iter().filter(|h| !marked.contains_key(*h)).map(|h| format!("sha256:{h}")).collect();
    for (h, why) in &marked {
        if !on_disk.contains(h) {
            missing.push(format!("blob sha256:{h} ({why}) is not on disk"));
        }
    }
    (unreferenced, missing)
}
