//! Paths of the registry's filesystem storage layout (distribution's `paths.go`), in one place.
//!
//! ```text
//! <root>/docker/registry/v2/blobs/sha256/<hex[0..2]>/<hex>/data
//! <root>/docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
//! <root>/docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
//! <root>/docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
//! <root>/docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
//! <root>/docker/registry/v2/repositories/<name>/_uploads/<uuid>/{data,startedat,hashstates/}
//! ```

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// The storage root: the directory named by `storage.filesystem.rootdirectory`.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Accepts the root directory itself, or its `docker/registry/v2` subdirectory.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let root = if dir.ends_with("docker/registry/v2") {
            dir.parent().and_then(Path::parent).and_then(Path::parent).unwrap_or(dir).to_path_buf()
        } else {
            dir.to_path_buf()
        };
        Layout { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn v2(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    pub fn blobs(&self) -> PathBuf {
        self.v2().join("blobs/sha256")
    }

    pub fn blob_data(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs().join(&hex[..2]).join(hex).join("data")
    }

    pub fn repositories(&self) -> PathBuf {
        self.v2().join("repositories")
    }

    pub fn repository(&self, name: &str) -> PathBuf {
        self.repositories().join(name)
    }

    pub fn tags(&self, repo: &str) -> PathBuf {
        self.repository(repo).join("_manifests/tags")
    }

    pub fn tag_current_link(&self, repo: &str, tag: &str) -> PathBuf {
        self.tags(repo).join(tag).join("current/link")
    }

    pub fn tag_index(&self, repo: &str, tag: &str) -> PathBuf {
        self.tags(repo).join(tag).join("index/sha256")
    }

    pub fn revisions(&self, repo: &str) -> PathBuf {
        self.repository(repo).join("_manifests/revisions/sha256")
    }

    pub fn revision_link(&self, repo: &str, digest: &Digest) -> PathBuf {
        self.revisions(repo).join(digest.hex()).join("link")
    }

    pub fn layers(&self, repo: &str) -> PathBuf {
        self.repository(repo).join("_layers/sha256")
    }

    pub fn uploads(&self, repo: &str) -> PathBuf {
        self.repository(repo).join("_uploads")
    }
}

/// Directory names inside a repository that belong to the registry, not to a nested repository.
pub const RESERVED_DIRS: [&str; 3] = ["_manifests", "_layers", "_uploads"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_root_or_v2_dir() {
        assert_eq!(Layout::new("/var/lib/registry").root(), Path::new("/var/lib/registry"));
        assert_eq!(Layout::new("/var/lib/registry/docker/registry/v2").root(), Path::new("/var/lib/registry"));
        let d = Digest::of(b"x");
        assert!(Layout::new("/r").blob_data(&d).ends_with(format!("{}/{}/data", &d.hex()[..2], d.hex())));
    }
}
