//! Realistic registry contents pushed through the real API: Docker and OCI images, multi-arch
//! indexes, signature tags, tag history and untagged manifests, with push times set back on
//! disk. Used by `regsweep demo`, the integration tests and the benchmark.

use std::path::Path;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::json;

use crate::digest::Digest;
use crate::media;
use crate::registry::{RegistryClient, RegistryError};
use crate::storage::Layout;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Docker,
    Oci,
}

/// A pushed manifest, as a descriptor for an index.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: Digest,
    pub media_type: String,
    pub size: usize,
    /// Every blob this manifest needs (config and layers), for checks.
    pub blobs: Vec<Digest>,
}

fn random_bytes(size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    rand::rng().fill_bytes(&mut v);
    v
}

/// Pushes an image with fresh random layers of the given sizes, plus `shared` layers already
/// in the registry (e.g. a base layer), and tags it when `tag` is given.
pub async fn push_image(
    client: &RegistryClient,
    repo: &str,
    tag: Option<&str>,
    format: Format,
    layer_sizes: &[usize],
    shared: &[(Digest, usize)],
) -> Result<Pushed, RegistryError> {
    let mut layers: Vec<(Digest, usize)> = shared.to_vec();
    for &size in layer_sizes {
        let bytes = random_bytes(size);
        layers.push((client.push_blob(repo, &bytes).await?, size));
    }
    let (manifest_type, config_type, layer_type) = match format {
        Format::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG, media::DOCKER_LAYER),
        Format::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG, media::OCI_LAYER),
    };
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": Utc::now().to_rfc3339(),
        "config": {"Labels": {"nonce": hex::encode(random_bytes(8))}},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>()},
    }))
    .expect("json");
    let config_digest = client.push_blob(repo, &config).await?;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest.to_string()},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": layer_type, "size": s, "digest": d.to_string()})).collect::<Vec<_>>(),
    }))
    .expect("json");
    let digest = Digest::of(&body);
    client.put_manifest(repo, tag.unwrap_or(&digest.as_str()), manifest_type, &body).await?;
    let mut blobs = vec![config_digest];
    blobs.extend(layers.into_iter().map(|(d, _)| d));
    Ok(Pushed { digest, media_type: manifest_type.to_string(), size: body.len(), blobs })
}

/// Pushes an index (OCI) or manifest list (Docker) over already pushed platform images.
pub async fn push_index(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    format: Format,
    children: &[(&Pushed, &str)],
) -> Result<Pushed, RegistryError> {
    let media_type = match format {
        Format::Docker => media::DOCKER_MANIFEST_LIST,
        Format::Oci => media::OCI_INDEX,
    };
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": children.iter().map(|(c, arch)| json!({
            "mediaType": c.media_type, "size": c.size, "digest": c.digest.to_string(),
            "platform": {"architecture": arch, "os": "linux"}
        })).collect::<Vec<_>>(),
    }))
    .expect("json");
    let digest = client.put_manifest(repo, tag, media_type, &body).await?;
    Ok(Pushed { digest, media_type: media_type.to_string(), size: body.len(), blobs: Vec::new() })
}

/// Pushes a cosign-style signature of `subject`: an OCI manifest tagged `sha256-<hex>.sig`.
pub async fn push_signature(client: &RegistryClient, repo: &str, subject: &Digest) -> Result<Pushed, RegistryError> {
    let payload = serde_json::to_vec(
        &json!({"critical": {"image": {"docker-manifest-digest": subject.to_string()}, "type": "cosign container image signature"}}),
    )
    .expect("json");
    let layer = client.push_blob(repo, &payload).await?;
    let config = b"{}".to_vec();
    let config_digest = client.push_blob(repo, &config).await?;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest.to_string()},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": payload.len(), "digest": layer.to_string()}],
    }))
    .expect("json");
    let tag = format!("sha256-{}.sig", subject.hex());
    let digest = client.put_manifest(repo, &tag, media::OCI_MANIFEST, &body).await?;
    Ok(Pushed { digest, media_type: media::OCI_MANIFEST.into(), size: body.len(), blobs: vec![config_digest, layer] })
}

fn set_mtime(path: &Path, when: DateTime<Utc>) -> std::io::Result<()> {
    let t = filetime::FileTime::from_unix_time(when.timestamp(), 0);
    filetime::set_file_mtime(path, t)
}

/// Sets a tag's push time (the mtime of its `current/link`).
pub fn set_tag_pushed(layout: &Layout, repo: &str, tag: &str, when: DateTime<Utc>) -> std::io::Result<()> {
    set_mtime(&layout.tag_current_link(repo, tag), when)
}

/// Sets when a manifest was first pushed into a repository (the mtime of its revision link).
pub fn set_manifest_pushed(layout: &Layout, repo: &str, digest: &Digest, when: DateTime<Utc>) -> std::io::Result<()> {
    set_mtime(&layout.revision_link(repo, digest), when)
}
