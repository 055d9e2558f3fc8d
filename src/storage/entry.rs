//! Reading storage entries the way damaged storage demands: never following a symlink, never
//! opening anything but a regular file as a link (a FIFO would block the reader forever), and
//! never reading more than a link can hold. Snapshot, prune and usage all list through here.

use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// `sha256:` and 64 hex characters is 71 bytes; anything much larger is not a link.
pub const MAX_LINK_BYTES: u64 = 1024;

/// What an entry is, without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

impl Kind {
    pub fn of(t: fs::FileType) -> Kind {
        if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else {
            Kind::Special
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Dir => "a directory",
            Kind::File => "a regular file",
            Kind::Symlink => "a symlink (not followed)",
            Kind::Special => "a FIFO, socket or device",
        }
    }
}

/// The kind of `path` itself (a symlink is not followed); `None` when it does not exist.
pub fn kind_of(path: &Path) -> std::io::Result<Option<Kind>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(Kind::of(m.file_type()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub kind: Kind,
}

/// The outcome of listing a directory that should exist as a real directory.
#[derive(Debug)]
pub enum Listing {
    Missing,
    Entries(Vec<Entry>),
    /// It exists but is not a directory we may enter (a symlink, a file…), or cannot be read.
    Unusable(String),
}

/// Lists `dir` sorted by name, without following `dir` itself or any entry. A name that is not
/// UTF-8 makes the listing unusable (no registry writes one, and it could hide anything).
pub fn list(dir: &Path) -> Listing {
    match kind_of(dir) {
        Ok(None) => return Listing::Missing,
        Ok(Some(Kind::Dir)) => {}
        Ok(Some(k)) => return Listing::Unusable(format!("is {}, not a directory", k.describe())),
        Err(e) => return Listing::Unusable(format!("cannot stat: {e}")),
    }
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::NotFound => return Listing::Missing,
        Err(e) => return Listing::Unusable(format!("cannot list: {e}")),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return Listing::Unusable(format!("cannot list: {e}")),
        };
        let kind = match entry.file_type() {
            Ok(t) => Kind::of(t),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Listing::Unusable(format!("cannot list: {e}")),
        };
        let Ok(name) = entry.file_name().into_string() else {
            return Listing::Unusable(format!("holds an entry whose name is not UTF-8: {:?}", entry.file_name()));
        };
        out.push(Entry { name, path: entry.path(), kind });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Listing::Entries(out)
}

/// Why a link could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadLink {
    /// Not a regular file: never opened.
    NotAFile(Kind),
    /// A regular file whose content is not a digest (empty, truncated, binary, oversized).
    Content(String),
    /// The file exists but cannot be opened or read (permissions, I/O error).
    Unreadable(String),
}

impl std::fmt::Display for BadLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadLink::NotAFile(k) => write!(f, "is {}, not a link file", k.describe()),
            BadLink::Content(why) => f.write_str(why),
            BadLink::Unreadable(why) => write!(f, "cannot be read: {why}"),
        }
    }
}

/// Reads a link file (`sha256:<hex>`). `Ok(None)` when it does not exist.
pub fn read_link(path: &Path) -> Result<Option<Digest>, BadLink> {
    match kind_of(path) {
        Ok(None) => return Ok(None),
        Ok(Some(Kind::File)) => {}
        Ok(Some(k)) => return Err(BadLink::NotAFile(k)),
        Err(e) => return Err(BadLink::Unreadable(e.to_string())),
    }
    // O_NOFOLLOW and O_NONBLOCK: should the entry be swapped for a symlink or a FIFO after
    // the check, opening fails or returns at once instead of following or blocking.
    let file = fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK).open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BadLink::Unreadable(e.to_string())),
    };
    match file.metadata() {
        Ok(m) if m.file_type().is_fifo() || !m.is_file() => return Err(BadLink::NotAFile(Kind::of(m.file_type()))),
        Ok(m) if m.len() > MAX_LINK_BYTES => {
            return Err(BadLink::Content(format!("is {} bytes, too large for a link (at most {MAX_LINK_BYTES})", m.len())));
        }
        Ok(_) => {}
        Err(e) => return Err(BadLink::Unreadable(e.to_string())),
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_LINK_BYTES + 1).read_to_end(&mut bytes) {
        return Err(BadLink::Unreadable(e.to_string()));
    }
    if bytes.len() as u64 > MAX_LINK_BYTES {
        return Err(BadLink::Content(format!("is larger than a link can be (at most {MAX_LINK_BYTES} bytes)")));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| BadLink::Content("is not text (binary content)".into()))?;
    if text.trim().is_empty() {
        return Err(BadLink::Content("is empty".into()));
    }
    Digest::parse(text.trim()).map(Some).map_err(|e| BadLink::Content(format!("does not hold a digest: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_read_only_when_they_are_small_regular_files_holding_a_digest() {
        let dir = tempfile::tempdir().unwrap();
        let d = Digest::of(b"x");
        let p = |n: &str| dir.path().join(n);
        fs::write(p("ok"), d.as_str()).unwrap();
        assert_eq!(read_link(&p("ok")), Ok(Some(d.clone())));
        assert_eq!(read_link(&p("missing")), Ok(None));
        fs::write(p("empty"), "").unwrap();
        fs::write(p("truncated"), &d.as_str()[..30]).unwrap();
        fs::write(p("binary"), [0xffu8, 0, 1]).unwrap();
        fs::write(p("huge"), vec![b'a'; 1 << 20]).unwrap();
        for name in ["empty", "truncated", "binary", "huge"] {
            assert!(matches!(read_link(&p(name)), Err(BadLink::Content(_))), "{name}: {:?}", read_link(&p(name)));
        }
        fs::create_dir(p("dir")).unwrap();
        assert_eq!(read_link(&p("dir")), Err(BadLink::NotAFile(Kind::Dir)));
        std::os::unix::fs::symlink(p("ok"), p("sym")).unwrap();
        assert_eq!(read_link(&p("sym")), Err(BadLink::NotAFile(Kind::Symlink)));
        nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_link(&p("fifo")), Err(BadLink::NotAFile(Kind::Special)), "a FIFO is never opened");
    }

    #[test]
    fn listing_never_enters_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        fs::write(dir.path().join("real/f"), "").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("sym")).unwrap();
        assert!(matches!(list(&dir.path().join("sym")), Listing::Unusable(why) if why.contains("symlink")));
        assert!(matches!(list(&dir.path().join("nothing")), Listing::Missing));
        let Listing::Entries(e) = list(dir.path()) else { panic!() };
        let kinds: Vec<(&str, Kind)> = e.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(kinds, vec![("real", Kind::Dir), ("sym", Kind::Symlink)]);
    }
}
