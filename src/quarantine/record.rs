//! A run's quarantine record: an OCI image index in the quarantine repository whose
//! `manifests` are the deleted manifests (so the collector marks them through it as well) and
//! whose annotations say where they came from and when they expire. Read from the storage by
//! the snapshot, and through the API by `quarantine list --url`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The record's `artifactType`: what tells it from any other index.
pub const ARTIFACT_TYPE: &str = "application/vnd.regsweep.quarantine.v1";

const RUN: &str = "dev.regsweep.quarantine.run";
const POLICY: &str = "dev.regsweep.quarantine.policy";
const REPOSITORY: &str = "dev.regsweep.quarantine.repository";
const DELETED: &str = "dev.regsweep.quarantine.deleted";
const EXPIRES: &str = "dev.regsweep.quarantine.expires";
const TAGS: &str = "dev.regsweep.quarantine.tags";
const SUBJECT: &str = "dev.regsweep.quarantine.subject";
const BYTES: &str = "dev.regsweep.quarantine.bytes";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub run_id: String,
    pub policy: String,
    /// The source repository.
    pub repository: String,
    pub deleted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub entries: Vec<Entry>,
}

/// One deleted manifest that was tagged, or not a child of another one deleted with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub digest: Digest,
    pub media_type: String,
    /// The manifest's own size.
    pub size: u64,
    /// Its tags before the sweep (none for an untagged manifest).
    pub tags: Vec<String>,
    /// The image it signs or describes (a signature tag's or an OCI `subject`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// Every blob of its graph (manifests, configs, layers), each counted once.
    pub bytes: u64,
}

impl Record {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: String,
    #[serde(default)]
    artifact_type: Option<String>,
    manifests: Vec<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Record {
    /// The record as the exact bytes of its index manifest.
    pub fn to_manifest(&self) -> Vec<u8> {
        let manifests = self
            .entries
            .iter()
            .map(|e| {
                let mut annotations = BTreeMap::from([(TAGS.to_string(), e.tags.join(",")), (BYTES.to_string(), e.bytes.to_string())]);
                if let Some(s) = &e.subject {
                    annotations.insert(SUBJECT.into(), s.to_string());
                }
                Descriptor { media_type: e.media_type.clone(), digest: e.digest.clone(), size: e.size, annotations }
            })
            .collect();
        let annotations = BTreeMap::from([
            (RUN.to_string(), self.run_id.clone()),
            (POLICY.to_string(), self.policy.clone()),
            (REPOSITORY.to_string(), self.repository.clone()),
            (DELETED.to_string(), time(&self.deleted_at)),
            (EXPIRES.to_string(), time(&self.expires_at)),
        ]);
        let index = Index {
            schema_version: 2,
            media_type: crate::media::OCI_INDEX.into(),
            artifact_type: Some(ARTIFACT_TYPE.into()),
            manifests,
            annotations,
        };
        serde_json::to_vec(&index).expect("a record serializes")
    }

    /// A record from its manifest's bytes; `None` for a manifest that is not one (any other
    /// index or image), an error for a record that cannot be read.
    pub fn from_manifest(body: &[u8]) -> Option<Result<Record, String>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            artifact_type: Option<String>,
        }
        let probe: Probe = serde_json::from_slice(body).ok()?;
        if probe.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
            return None;
        }
        Some(parse(body))
    }
}

fn parse(body: &[u8]) -> Result<Record, String> {
    let index: Index = serde_json::from_slice(body).map_err(|e| format!("malformed quarantine record: {e}"))?;
    let get = |map: &BTreeMap<String, String>, key: &str| map.get(key).cloned().ok_or_else(|| format!("quarantine record without {key}"));
    let when = |key: &str| -> Result<DateTime<Utc>, String> {
        let text = get(&index.annotations, key)?;
        DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(|e| format!("{key} {text:?}: {e}"))
    };
    let entries = index
        .manifests
        .iter()
        .map(|d| {
            let tags =
                d.annotations.get(TAGS).map(|t| t.split(',').filter(|t| !t.is_empty()).map(String::from).collect()).unwrap_or_default();
            let subject = d.annotations.get(SUBJECT).map(|s| Digest::parse(s)).transpose()?;
            let bytes =
                d.annotations.get(BYTES).map(|b| b.parse::<u64>().map_err(|e| format!("{BYTES} {b:?}: {e}"))).transpose()?.unwrap_or(0);
            Ok(Entry { digest: d.digest.clone(), media_type: d.media_type.clone(), size: d.size, tags, subject, bytes })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Record {
        run_id: get(&index.annotations, RUN)?,
        policy: index.annotations.get(POLICY).cloned().unwrap_or_default(),
        repository: get(&index.annotations, REPOSITORY)?,
        deleted_at: when(DELETED)?,
        expires_at: when(EXPIRES)?,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_parses_as_an_oci_index() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z").unwrap().with_timezone(&Utc);
        let record = Record {
            run_id: "0123abcd4567".into(),
            policy: "keep-10".into(),
            repository: "team/app".into(),
            deleted_at: at,
            expires_at: at + chrono::Duration::days(7),
            entries: vec![
                Entry {
                    digest: Digest::of(b"a"),
                    media_type: crate::media::OCI_INDEX.into(),
                    size: 300,
                    tags: vec!["v1".into(), "latest".into()],
                    subject: None,
                    bytes: 4096,
                },
                Entry {
                    digest: Digest::of(b"s"),
                    media_type: crate::media::OCI_MANIFEST.into(),
                    size: 200,
                    tags: vec![],
                    subject: Some(Digest::of(b"a")),
                    bytes: 10,
                },
            ],
        };
        let body = record.to_manifest();
        assert_eq!(Record::from_manifest(&body), Some(Ok(record.clone())));
        let (media_type, content, _) = crate::storage::snapshot::parse_manifest(&body);
        assert_eq!(media_type, crate::media::OCI_INDEX);
        assert!(matches!(content, crate::storage::Content::Index { children } if children == vec![Digest::of(b"a"), Digest::of(b"s")]));
        let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(Record::from_manifest(other), None);
        let broken = br#"{"schemaVersion":2,"artifactType":"application/vnd.regsweep.quarantine.v1","manifests":[]}"#;
        assert!(matches!(Record::from_manifest(broken), Some(Err(_))));
    }
}
