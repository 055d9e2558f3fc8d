//! The in-memory picture of a registry the planner works on: repositories, tags with push
//! times, every manifest revision (tagged or not) with what it references, and blob sizes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::digest::Digest;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Where it was read from: a storage directory or a registry URL.
    pub source: String,
    /// False for an API snapshot, which cannot see untagged manifests.
    pub sees_untagged: bool,
    /// What the tags' and manifests' `pushed` times are.
    pub times: TimeSource,
    pub repositories: BTreeMap<String, Repository>,
    /// Size of every blob in the blob store (manifests included), by digest.
    pub blobs: super::blobs::Blobs,
    /// Entries that could not be read or made sense of; the snapshot carries on without them.
    pub problems: Vec<SnapshotProblem>,
}

/// Where a snapshot's times come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TimeSource {
    /// Push times: the modification times of the storage's links.
    #[default]
    PushTime,
    /// Build times: each image config's `created` field, read through the API.
    ConfigCreated,
    /// None known (an API snapshot without ages).
    Unknown,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Repository {
    pub name: String,
    pub tags: BTreeMap<String, Tag>,
    /// Every manifest revision linked in this repository, tagged or not.
    pub manifests: BTreeMap<Digest, Manifest>,
    /// Entries under `_manifests` that could not be read: what the tags point at cannot be
    /// proven, so the planner deletes nothing here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// Manifests an interrupted run approved for deletion (digest → its run id), from the
    /// sweep's journal: deleted once nothing keeps them, whatever the untagged rule says.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub approved: BTreeMap<Digest, String>,
    /// History entries of live tags (`_manifests/tags/<tag>/index/sha256/<digest>`) naming
    /// another manifest than the tag does now. Once that manifest is deleted the entry must go:
    /// the registry's manifest DELETE untags every tag whose history names the digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<(String, Digest)>,
    /// In a quarantine repository, the readable quarantine records by their digest (see
    /// [`crate::quarantine`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub records: BTreeMap<Digest, crate::quarantine::Record>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Tag {
    pub name: String,
    pub digest: Digest,
    /// Modification time of the tag's `current/link`: when it was last pushed.
    pub pushed: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    /// Modification time of the revision link: when this manifest was first pushed here.
    pub pushed: Option<DateTime<Utc>>,
    pub content: Content,
    /// OCI 1.1 `subject`: the manifest this one refers to (a signature, SBOM, attestation).
    pub subject: Option<Digest>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Content {
    /// An image manifest: its config and layers.
    Image { config: Digest, layers: Vec<Digest> },
    /// An OCI index or Docker manifest list: its child manifests.
    Index { children: Vec<Digest> },
    /// Not readable or not understood (missing blob, schema1, malformed JSON). Its references
    /// are unknown, so the planner treats its repository cautiously.
    Unknown { why: String },
}

impl Manifest {
    /// Blobs and manifests this manifest references (what mark-and-sweep marks from it).
    pub fn references(&self) -> impl Iterator<Item = &Digest> {
        let (one, many): (Option<&Digest>, &[Digest]) = match &self.content {
            Content::Image { config, layers } => (Some(config), layers),
            Content::Index { children } => (None, children),
            Content::Unknown { .. } => (None, &[]),
        };
        one.into_iter().chain(many.iter())
    }

    pub fn children(&self) -> &[Digest] {
        match &self.content {
            Content::Index { children } => children,
            _ => &[],
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self.content, Content::Unknown { .. })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotProblem {
    pub path: String,
    pub problem: String,
    /// `registry garbage-collect` fails (or hangs) on this entry: a sweep must not start
    /// deleting until it is repaired.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocks_gc: bool,
}

impl Snapshot {
    pub fn tag_count(&self) -> usize {
        self.repositories.values().map(|r| r.tags.len()).sum()
    }

    pub fn manifest_count(&self) -> usize {
        self.repositories.values().map(|r| r.manifests.len()).sum()
    }

    pub fn blob_bytes(&self) -> u64 {
        self.blobs.total_bytes()
    }

    /// The entries garbage-collect cannot get past.
    pub fn gc_blockers(&self) -> impl Iterator<Item = &SnapshotProblem> {
        self.problems.iter().filter(|p| p.blocks_gc)
    }
}

/// Parses a manifest body into what it references. Docker v2 manifests and lists share their
/// shape with OCI manifests and indexes, so one parser serves both.
pub fn parse_manifest(body: &[u8]) -> (String, Content, Option<Digest>) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let unknown = |why: String| (String::new(), Content::Unknown { why }, None);
    let probe: Probe = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return unknown(format!("not a JSON manifest: {e}")),
    };
    if probe.schema_version != Some(2) {
        return unknown(format!("schemaVersion {:?} is not supported (only 2)", probe.schema_version));
    }
    let digest = |d: &oci_spec::image::Digest| Digest::parse(d.as_ref());
    if probe.manifests.is_some() {
        match serde_json::from_slice::<oci_spec::image::ImageIndex>(body) {
            Ok(index) => {
                let children: Result<Vec<_>, _> = index.manifests().iter().map(|m| digest(m.digest())).collect();
                let subject = index.subject().as_ref().and_then(|s| digest(s.digest()).ok());
                let media_type = probe.media_type.unwrap_or_else(|| crate::media::OCI_INDEX.to_string());
                match children {
                    Ok(children) => (media_type, Content::Index { children }, subject),
                    Err(e) => unknown(format!("index references an unsupported digest: {e}")),
                }
            }
            Err(e) => unknown(format!("malformed index: {e}")),
        }
    } else {
        match serde_json::from_slice::<oci_spec::image::ImageManifest>(body) {
            Ok(m) => {
                let config = digest(m.config().digest());
                let layers: Result<Vec<_>, _> = m.layers().iter().map(|l| digest(l.digest())).collect();
                let subject = m.subject().as_ref().and_then(|s| digest(s.digest()).ok());
                let media_type = probe.media_type.unwrap_or_else(|| crate::media::OCI_MANIFEST.to_string());
                match (config, layers) {
                    (Ok(config), Ok(layers)) => (media_type, Content::Image { config, layers }, subject),
                    (Err(e), _) | (_, Err(e)) => unknown(format!("manifest references an unsupported digest: {e}")),
                }
            }
            Err(e) => unknown(format!("malformed image manifest: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_oci_index_and_junk() {
        let c = Digest::of(b"c");
        let l = Digest::of(b"l");
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":1,"digest":"{c}"}},"layers":[{{"mediaType":"{}","size":1,"digest":"{l}"}}]}}"#,
            crate::media::DOCKER_MANIFEST,
            crate::media::DOCKER_CONFIG,
            crate::media::DOCKER_LAYER
        );
        let (mt, content, subject) = parse_manifest(body.as_bytes());
        assert_eq!(mt, crate::media::DOCKER_MANIFEST);
        assert!(matches!(content, Content::Image { ref config, ref layers } if *config == c && layers == std::slice::from_ref(&l)));
        assert!(subject.is_none());

        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","size":1,"digest":"{c}","platform":{{"architecture":"amd64","os":"linux"}}}}],"subject":{{"mediaType":"{}","size":1,"digest":"{l}"}}}}"#,
            crate::media::OCI_INDEX,
            crate::media::OCI_MANIFEST,
            crate::media::OCI_MANIFEST
        );
        let (_, content, subject) = parse_manifest(body.as_bytes());
        assert!(matches!(content, Content::Index { ref children } if children == std::slice::from_ref(&c)));
        assert_eq!(subject, Some(l));

        assert!(matches!(parse_manifest(b"{").1, Content::Unknown { .. }));
        assert!(matches!(parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#).1, Content::Unknown { .. }));
    }
}
