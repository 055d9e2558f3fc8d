//! Manifests: GET, HEAD, DELETE, PUT. Every read sends [`MANIFEST_ACCEPT`] — with anything
//! less the registry converts Docker manifests to schema1 (another digest) or answers 404 for
//! OCI content — and every body is hashed: a digest we did not compute ourselves is never
//! trusted, since deletions are made by digest.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};

use super::client::{Call, RegistryClient, delete_scope, header, pull_scope, push_scope};
use super::error::{RegistryError, Subject};
use crate::digest::Digest;
use crate::media::MANIFEST_ACCEPT;

const DIGEST_HEADER: &str = "docker-content-digest";

/// A manifest as stored: its true digest, media type and exact bytes.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
}

/// What HEAD says about a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// 202: the manifest and every tag on it in this repository are gone.
    Deleted,
    /// 404 `MANIFEST_UNKNOWN`: deleted before (an earlier, interrupted run), so a rerun converges.
    AlreadyGone,
}

fn is_digest(reference: &str) -> bool {
    reference.contains(':')
}

impl RegistryClient {
    /// A manifest by tag or digest, exactly as stored. Its bytes must hash to the digest the
    /// registry reports and, when `reference` is a digest, to that digest.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let subject = Subject::Manifest { repository: repo, reference };
        let resp = self.send(Call::new(Method::GET, &path, pull_scope(repo)).accept(MANIFEST_ACCEPT)).await?;
        if !resp.status().is_success() {
            return Err(self.fail(resp, format!("GET manifest {repo}:{reference}"), subject).await);
        }
        let media_type = header(&resp, CONTENT_TYPE);
        let reported = header(&resp, DIGEST_HEADER);
        let body = resp.bytes().await.map_err(|e| self.transport_error(e))?.to_vec();
        let digest = Digest::of(&body);
        let requested = if is_digest(reference) { reference } else { "" };
        for expected in [reported.as_str(), requested].into_iter().filter(|e| !e.is_empty()) {
            if *digest.as_str() != *expected {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest {repo}:{reference}"),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        Ok(FetchedManifest { digest, media_type, body })
    }

    /// HEAD of a manifest: its digest, type and size; None when it does not exist.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let subject = Subject::Manifest { repository: repo, reference };
        let what = format!("HEAD manifest {repo}:{reference}");
        let resp = self.send(Call::new(Method::HEAD, &path, pull_scope(repo)).accept(MANIFEST_ACCEPT)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.fail(resp, what, subject).await);
        }
        let digest = Digest::parse(&header(&resp, DIGEST_HEADER)).map_err(|e| RegistryError::Unexpected {
            what: what.clone(),
            status: 200,
            body: format!("Docker-Content-Digest: {e}"),
        })?;
        if is_digest(reference) && *digest.as_str() != *reference {
            return Err(RegistryError::DigestMismatch { what, expected: reference.to_string(), actual: digest.to_string() });
        }
        let size = header(&resp, reqwest::header::CONTENT_LENGTH).parse().unwrap_or(0);
        Ok(Some(ManifestHead { digest, media_type: header(&resp, CONTENT_TYPE), size }))
    }

    /// DELETE a manifest by digest. This removes every tag in the repository that points at
    /// it (registry 2.8 has no tag delete).
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<DeleteOutcome, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{digest}");
        let resp = self.send(Call::new(Method::DELETE, &path, delete_scope(repo))).await?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => {
                tracing::debug!(repository = repo, %digest, "manifest deleted");
                Ok(DeleteOutcome::Deleted)
            }
            StatusCode::NOT_FOUND => {
                let subject = Subject::Manifest { repository: repo, reference: &digest.as_str() };
                let error = self.fail(resp, format!("DELETE manifest {repo}@{digest}"), subject).await;
                match error {
                    RegistryError::ManifestUnknown { .. } => Ok(DeleteOutcome::AlreadyGone),
                    other => Err(other),
                }
            }
            _ => Err(self
                .fail(resp, format!("DELETE manifest {repo}@{digest}"), Subject::Manifest { repository: repo, reference: &digest.as_str() })
                .await),
        }
    }

    /// PUT a manifest under a tag or its own digest; returns its digest, after checking that
    /// the registry stored the same one.
    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Result<Digest, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let what = format!("PUT manifest {repo}:{reference}");
        let resp = self.send(Call::new(Method::PUT, &path, push_scope(repo)).body(media_type, body)).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.fail(resp, what, Subject::Manifest { repository: repo, reference }).await);
        }
        let digest = Digest::of(body);
        let stored = header(&resp, DIGEST_HEADER);
        if !stored.is_empty() && *stored != *digest.as_str() {
            return Err(RegistryError::DigestMismatch { what, expected: digest.to_string(), actual: stored });
        }
        Ok(digest)
    }
}
