//! Valid registry storage written straight into the filesystem layout, for registries too
//! large to seed through HTTP (~85 tags/s): real sha256 digests of real manifests and
//! configs, base layers shared across a repository, Docker and OCI manifests, multi-arch
//! indexes, tags sharing a digest, untagged history and push times set on the tag links. What
//! the registry itself would write for the same pushes; checked by pulling through the real
//! registry and by `garbage-collect --dry-run` finding nothing to delete
//! (`tests/synth.rs`). Used by the scale benchmark.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::digest::Digest;
use crate::media;
use crate::storage::Layout;

/// One repository's shape.
#[derive(Clone, Debug)]
pub struct RepoShape {
    pub name: String,
    /// Tagged images (`build-<n>`), the newest last, an hour apart ending `newest`.
    pub tags: usize,
    /// Every n-th image is also tagged `sha-<n>` (two tags, one digest); 0: never.
    pub alias_every: usize,
    /// Every n-th image is a two-platform index instead of an image; 0: never.
    pub index_every: usize,
    /// Untagged manifests (earlier pushes of a tag), as a registry keeps them.
    pub untagged: usize,
}

impl RepoShape {
    /// `tags` builds with the usual mix: an alias every 10th, an index every 25th, a tenth as
    /// much untagged history.
    pub fn mixed(name: impl Into<String>, tags: usize) -> Self {
        RepoShape { name: name.into(), tags, alias_every: 10, index_every: 25, untagged: tags / 10 }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Written {
    pub tags: usize,
    pub manifests: usize,
    pub blobs: usize,
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

struct Writer<'a> {
    layout: &'a Layout,
    written: Written,
}

impl Writer<'_> {
    fn blob(&mut self, bytes: &[u8]) -> std::io::Result<(Digest, usize)> {
        let digest = Digest::of(bytes);
        let path = self.layout.blob_data(&digest);
        if !path.exists() {
            write_file(&path, bytes)?;
            self.written.blobs += 1;
        }
        Ok((digest, bytes.len()))
    }

    fn layer_link(&self, repo: &str, digest: &Digest) -> std::io::Result<()> {
        write_file(&self.layout.layers(repo).join(digest.hex()).join("link"), digest.to_string().as_bytes())
    }

    /// A manifest blob and its revision link.
    fn manifest(&mut self, repo: &str, body: &[u8]) -> std::io::Result<(Digest, usize)> {
        let (digest, size) = self.blob(body)?;
        write_file(&self.layout.revision_link(repo, &digest), digest.to_string().as_bytes())?;
        self.written.manifests += 1;
        Ok((digest, size))
    }

    fn tag(&mut self, repo: &str, tag: &str, digest: &Digest, pushed: DateTime<Utc>) -> std::io::Result<()> {
        let link = digest.to_string();
        write_file(&self.layout.tag_index(repo, tag).join(digest.hex()).join("link"), link.as_bytes())?;
        let current = self.layout.tag_current_link(repo, tag);
        write_file(&current, link.as_bytes())?;
        let t = filetime::FileTime::from_unix_time(pushed.timestamp(), 0);
        filetime::set_file_mtime(&current, t)?;
        self.written.tags += 1;
        Ok(())
    }

    /// An image: a config naming it (built at `created`, which is what an API preview reads as
    /// its age), a unique layer and the repository's base layer.
    fn image(
        &mut self,
        repo: &str,
        id: &str,
        oci: bool,
        base: &(Digest, usize),
        arch: &str,
        created: DateTime<Utc>,
    ) -> std::io::Result<(Digest, usize, &'static str)> {
        let (manifest_type, config_type, layer_type) = if oci {
            (media::OCI_MANIFEST, media::OCI_CONFIG, media::OCI_LAYER)
        } else {
            (media::DOCKER_MANIFEST, media::DOCKER_CONFIG, media::DOCKER_LAYER)
        };
        let layer = self.blob(format!("layer of {repo} {id} {arch}").as_bytes())?;
        let config_body = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux", "created": created.to_rfc3339(),
            "config": {"Labels": {"build": id}},
            "rootfs": {"type": "layers", "diff_ids": [base.0.to_string(), layer.0.to_string()]},
        }))
        .expect("json");
        let config = self.blob(&config_body)?;
        for d in [&base.0, &layer.0, &config.0] {
            self.layer_link(repo, d)?;
        }
        let descriptor = |t: &str, (d, s): &(Digest, usize)| json!({"mediaType": t, "digest": d.to_string(), "size": s});
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": descriptor(config_type, &config),
            "layers": [descriptor(layer_type, base), descriptor(layer_type, &layer)],
        }))
        .expect("json");
        let (digest, size) = self.manifest(repo, &body)?;
        Ok((digest, size, manifest_type))
    }

    fn index(&mut self, repo: &str, id: &str, base: &(Digest, usize), created: DateTime<Utc>) -> std::io::Result<Digest> {
        let mut children = Vec::new();
        for arch in ["amd64", "arm64"] {
            let (d, s, t) = self.image(repo, id, true, base, arch, created)?;
            children.push(json!({"mediaType": t, "digest": d.to_string(), "size": s, "platform": {"architecture": arch, "os": "linux"}}));
        }
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": children})).expect("json");
        Ok(self.manifest(repo, &body)?.0)
    }
}

/// Writes the repositories into `layout` (the storage root need not exist yet); the newest
/// tag of each repository was pushed at `newest`.
pub fn write(layout: &Layout, repos: &[RepoShape], newest: DateTime<Utc>) -> std::io::Result<Written> {
    let mut w = Writer { layout, written: Written::default() };
    for repo in repos {
        let name = repo.name.as_str();
        let base = w.blob(format!("base layer of {name}").as_bytes())?;
        for n in 0..repo.tags {
            let id = format!("{n:06}");
            let pushed = newest - Duration::hours((repo.tags - 1 - n) as i64);
            let digest = if repo.index_every > 0 && n % repo.index_every == repo.index_every - 1 {
                w.index(name, &id, &base, pushed)?
            } else {
                w.image(name, &id, n % 2 == 0, &base, "amd64", pushed)?.0
            };
            w.tag(name, &format!("build-{id}"), &digest, pushed)?;
            if repo.alias_every > 0 && n % repo.alias_every == 0 {
                w.tag(name, &format!("sha-{id}"), &digest, pushed)?;
            }
        }
        // Pushed (and retagged away from) a week before the newest tag.
        let week_ago = newest - Duration::days(7);
        let old = filetime::FileTime::from_unix_time(week_ago.timestamp(), 0);
        for n in 0..repo.untagged {
            let (digest, _, _) = w.image(name, &format!("untagged-{n:06}"), false, &base, "amd64", week_ago)?;
            filetime::set_file_mtime(layout.revision_link(name, &digest), old)?;
        }
    }
    Ok(w.written)
}
