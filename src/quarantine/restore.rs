//! Restore through the registry's API of a writable registry: for each selected entry, its
//! blobs are mounted from the quarantine repository (copied when the registry will not mount),
//! its child manifests pushed by digest, then the manifest itself by digest and by every
//! original tag. Everything is checked before the first write: an unknown or expired
//! reference, or a tag that now names another manifest (without `force`), changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Entry, Record};
use crate::digest::Digest;
use crate::registry::{RegistryClient, RegistryError};
use crate::storage::Content;

/// What to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Everything a run quarantined.
    Run(String),
    /// `repository:tag` or `repository@sha256:...` as it was before the sweep.
    Reference { repository: String, tag: Option<String>, digest: Option<Digest> },
}

impl Selector {
    pub fn parse_reference(text: &str) -> Result<Selector, String> {
        let bad = || format!("{text:?} is not a reference; write repository:tag or repository@sha256:<64 hex>");
        if let Some((repository, digest)) = text.split_once('@') {
            let digest = Digest::parse(digest).map_err(|e| format!("{}: {e}", bad()))?;
            return Ok(Selector::Reference { repository: repository.to_string(), tag: None, digest: Some(digest) });
        }
        let (repository, tag) =
            text.rsplit_once(':').filter(|(r, t)| !r.is_empty() && !t.is_empty() && !t.contains('/')).ok_or_else(bad)?;
        Ok(Selector::Reference { repository: repository.to_string(), tag: Some(tag.to_string()), digest: None })
    }

    fn describe(&self) -> String {
        match self {
            Selector::Run(run) => format!("run {run}"),
            Selector::Reference { repository, tag: Some(t), .. } => format!("{repository}:{t}"),
            Selector::Reference { repository, digest: Some(d), .. } => format!("{repository}@{d}"),
            Selector::Reference { repository, .. } => repository.clone(),
        }
    }

    fn selects(&self, record: &Record, entry: &Entry) -> bool {
        match self {
            Selector::Run(run) => &record.run_id == run,
            Selector::Reference { repository, tag, digest } => {
                &record.repository == repository
                    && tag.as_ref().is_none_or(|t| entry.tags.contains(t))
                    && digest.as_ref().is_none_or(|d| d == &entry.digest)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}; nothing was restored")]
    Refused(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// One manifest brought back.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoredEntry {
    pub run_id: String,
    pub repository: String,
    pub digest: Digest,
    pub tags: Vec<String>,
    /// Tags that pointed elsewhere and were moved back (`--force`), with what they named.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub replaced: BTreeMap<String, Digest>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub restored: Vec<RestoredEntry>,
    pub blobs_mounted: usize,
    pub blobs_copied: usize,
    pub blobs_present: usize,
    pub manifests_pushed: usize,
}

/// The entries the selectors name: for each, the newest unexpired record holding it, and the
/// signatures quarantined with it.
fn select<'a>(records: &'a [Record], selectors: &[Selector], now: DateTime<Utc>) -> Result<Vec<(&'a Record, &'a Entry)>, String> {
    let mut chosen: BTreeMap<(String, Digest), (&Record, &Entry)> = BTreeMap::new();
    let mut problems = Vec::new();
    for selector in selectors {
        let matches: Vec<(&Record, &Entry)> =
            records.iter().flat_map(|r| r.entries.iter().map(move |e| (r, e))).filter(|(r, e)| selector.selects(r, e)).collect();
        let mut live: Vec<_> = matches.iter().filter(|(r, _)| !r.is_expired(now)).copied().collect();
        // A tag deleted by several runs (pushed again in between) comes back as it was last.
        if matches!(selector, Selector::Reference { tag: Some(_), .. }) {
            live.sort_by_key(|(r, _)| std::cmp::Reverse(r.deleted_at));
            live.truncate(1);
        }
        if live.is_empty() {
            problems.push(match matches.iter().map(|(r, _)| r).max_by_key(|r| r.expires_at) {
                Some(r) => format!(
                    "{} expired at {} (run {}): its bytes are freed by the next sweep and it can no longer be restored",
                    selector.describe(),
                    r.expires_at,
                    r.run_id
                ),
                None => {
                    format!("no quarantine record holds {} (`regsweep quarantine list` shows what can be restored)", selector.describe())
                }
            });
            continue;
        }
        for (r, e) in live {
            let slot = chosen.entry((r.repository.clone(), e.digest.clone())).or_insert((r, e));
            if r.deleted_at > slot.0.deleted_at {
                *slot = (r, e);
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    // What signed or described a restored image comes back with it.
    let subjects: BTreeSet<(String, Digest)> = chosen.keys().cloned().collect();
    for r in records.iter().filter(|r| !r.is_expired(now)) {
        for e in &r.entries {
            if let Some(s) = &e.subject
                && subjects.contains(&(r.repository.clone(), s.clone()))
            {
                chosen.entry((r.repository.clone(), e.digest.clone())).or_insert((r, e));
            }
        }
    }
    Ok(chosen.into_values().collect())
}

pub async fn restore(
    client: &RegistryClient,
    selectors: &[Selector],
    force: bool,
    now: DateTime<Utc>,
) -> Result<RestoreReport, RestoreError> {
    let found = super::list::from_api(client).await?;
    for p in &found.problems {
        tracing::warn!(problem = %p, "quarantine record not readable");
    }
    let chosen = select(&found.records, selectors, now).map_err(RestoreError::Refused)?;
    // Every tag checked before the first write.
    let mut replaced: Vec<BTreeMap<String, Digest>> = Vec::new();
    let mut conflicts = Vec::new();
    for (record, entry) in &chosen {
        let mut moved = BTreeMap::new();
        for tag in &entry.tags {
            if let Some(now_there) = client.head_manifest(&record.repository, tag).await?
                && now_there.digest != entry.digest
            {
                conflicts.push(format!(
                    "{}:{tag} now names {} (it named {} when run {} deleted it)",
                    record.repository, now_there.digest, entry.digest, record.run_id
                ));
                moved.insert(tag.clone(), now_there.digest);
            }
        }
        replaced.push(moved);
    }
    if !conflicts.is_empty() && !force {
        return Err(RestoreError::Refused(format!(
            "{}; pass --force to point these tags back at the restored images",
            conflicts.join("; ")
        )));
    }
    let mut report = RestoreReport::default();
    for ((record, entry), replaced) in chosen.iter().zip(replaced) {
        let from = super::repository_for(&record.repository);
        let top = push_graph(client, &from, &record.repository, &entry.digest, &mut report).await?;
        for tag in &entry.tags {
            client.put_manifest(&record.repository, tag, &top.media_type, &top.body).await?;
        }
        tracing::info!(run = %record.run_id, repository = %record.repository, digest = %entry.digest, tags = ?entry.tags, "restored");
        report.restored.push(RestoredEntry {
            run_id: record.run_id.clone(),
            repository: record.repository.clone(),
            digest: entry.digest.clone(),
            tags: entry.tags.clone(),
            replaced,
        });
    }
    Ok(report)
}

/// A manifest and everything under it, bottom up, from `from` into `to`; returns the manifest.
async fn push_graph(
    client: &RegistryClient,
    from: &str,
    to: &str,
    digest: &Digest,
    report: &mut RestoreReport,
) -> Result<crate::registry::FetchedManifest, RegistryError> {
    let mut order: Vec<crate::registry::FetchedManifest> = Vec::new();
    let mut todo = vec![digest.clone()];
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let m = client.get_manifest(from, &d.as_str()).await?;
        match crate::storage::snapshot::parse_manifest(&m.body).1 {
            Content::Index { children } => todo.extend(children),
            Content::Image { config, layers } => {
                for blob in std::iter::once(&config).chain(&layers) {
                    bring_blob(client, from, to, blob, report).await?;
                }
            }
            Content::Unknown { why } => {
                return Err(RegistryError::Unexpected { what: format!("restore {from}@{d}"), status: 200, body: why });
            }
        }
        order.push(m);
    }
    // Children before the indexes that list them.
    for m in order.iter().rev() {
        client.put_manifest(to, &m.digest.as_str(), &m.media_type, &m.body).await?;
        report.manifests_pushed += 1;
    }
    Ok(order.swap_remove(0))
}

async fn bring_blob(client: &RegistryClient, from: &str, to: &str, blob: &Digest, report: &mut RestoreReport) -> Result<(), RegistryError> {
    if client.head_blob(to, blob).await?.is_some() {
        report.blobs_present += 1;
    } else if client.mount_blob(to, blob, from).await? {
        report.blobs_mounted += 1;
    } else {
        let bytes = client.fetch_blob(from, blob).await?;
        client.push_blob(to, &bytes).await?;
        report.blobs_copied += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn record(run: &str, deleted_days_ago: i64, entries: Vec<Entry>) -> Record {
        let now = Utc::now();
        Record {
            run_id: run.into(),
            policy: "p".into(),
            repository: "app".into(),
            deleted_at: now - Duration::days(deleted_days_ago),
            expires_at: now - Duration::days(deleted_days_ago) + Duration::days(7),
            entries,
        }
    }

    fn entry(seed: &str, tags: &[&str], subject: Option<Digest>) -> Entry {
        Entry {
            digest: Digest::of(seed.as_bytes()),
            media_type: crate::media::OCI_MANIFEST.into(),
            size: 1,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            subject,
            bytes: 1,
        }
    }

    #[test]
    fn a_tag_comes_back_as_it_was_last_with_its_signature_and_expired_or_unknown_refs_are_named() {
        let signature = entry("sig", &["sha256-x.sig"], Some(Digest::of(b"new")));
        let records = vec![
            record("older", 5, vec![entry("old", &["v1"], None)]),
            record("newer", 2, vec![entry("new", &["v1"], None), signature.clone()]),
            record("gone", 30, vec![entry("ancient", &["v0"], None)]),
        ];
        let v1 = Selector::parse_reference("app:v1").unwrap();
        let chosen = select(&records, &[v1], Utc::now()).unwrap();
        let picked: Vec<(&str, &Digest)> = chosen.iter().map(|(r, e)| (r.run_id.as_str(), &e.digest)).collect();
        assert_eq!(picked.len(), 2, "{picked:?}");
        assert!(picked.contains(&("newer", &Digest::of(b"new"))) && picked.contains(&("newer", &signature.digest)), "{picked:?}");
        let err = select(&records, &[Selector::parse_reference("app:v0").unwrap(), Selector::Run("nope".into())], Utc::now()).unwrap_err();
        assert!(err.contains("app:v0 expired at") && err.contains("run gone"), "{err}");
        assert!(err.contains("no quarantine record holds run nope"), "{err}");
        assert!(Selector::parse_reference("app").is_err() && Selector::parse_reference("app@sha256:zz").is_err());
        assert_eq!(
            Selector::parse_reference("team/app:v1").unwrap(),
            Selector::Reference { repository: "team/app".into(), tag: Some("v1".into()), digest: None }
        );
    }
}
