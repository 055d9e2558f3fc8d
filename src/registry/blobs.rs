//! Blobs: HEAD, streamed and hashed GET, and monolithic upload (for the tests and the demo).

use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, LOCATION};
use reqwest::{Method, Response, StatusCode};

use super::client::{Call, RegistryClient, header, pull_scope, push_scope};
use super::error::{RegistryError, Subject};
use crate::digest::{Digest, Hasher};

impl RegistryClient {
    /// HEAD of a blob: its size, or None when the repository does not have it.
    pub async fn head_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self.send(Call::new(Method::HEAD, &path, pull_scope(repo))).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(header(&resp, CONTENT_LENGTH).parse().unwrap_or(0))),
            _ => Err(self
                .fail(resp, format!("HEAD blob {repo}@{digest}"), Subject::Blob { repository: repo, digest: &digest.as_str() })
                .await),
        }
    }

    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Response, RegistryError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self.send(Call::new(Method::GET, &path, pull_scope(repo))).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.fail(resp, format!("GET blob {repo}@{digest}"), Subject::Blob { repository: repo, digest: &digest.as_str() }).await)
        }
    }

    /// Streams a blob through sha256 without holding it in memory; fails unless the content
    /// hashes to `digest`. Returns its size.
    pub async fn fetch_blob_verified(&self, repo: &str, digest: &Digest) -> Result<u64, RegistryError> {
        let resp = self.get_blob(repo, digest).await?;
        let mut hasher = Hasher::default();
        let mut size = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport_error(e))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        check(repo, digest, hasher.finish())?;
        Ok(size)
    }

    /// A small blob (an image config) in memory, digest-checked.
    pub async fn fetch_blob(&self, repo: &str, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let body = self.get_blob(repo, digest).await?.bytes().await.map_err(|e| self.transport_error(e))?.to_vec();
        check(repo, digest, Digest::of(&body))?;
        Ok(body)
    }

    /// Starts an upload session: `POST /v2/<repo>/blobs/uploads/`.
    pub(super) async fn start_upload(&self, repo: &str) -> Result<Response, RegistryError> {
        let path = format!("/v2/{repo}/blobs/uploads/");
        self.send(Call::new(Method::POST, &path, push_scope(repo))).await
    }

    /// Links a blob of repository `from` into `repo` without copying it (a cross-repository
    /// mount). False when the registry would not mount it (it then started an upload, which is
    /// cancelled).
    pub async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool, RegistryError> {
        let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
        let scope = format!("{} repository:{from}:pull", push_scope(repo));
        let resp = self.send(Call::new(Method::POST, &path, scope)).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                let location = header(&resp, LOCATION);
                if !location.is_empty() {
                    let _ = self.send(Call::new(Method::DELETE, &location, push_scope(repo))).await;
                }
                Ok(false)
            }
            _ => Err(self
                .fail(
                    resp,
                    format!("mount blob {digest} from {from} into {repo}"),
                    Subject::Blob { repository: repo, digest: &digest.as_str() },
                )
                .await),
        }
    }

    /// Uploads a blob (POST, then one monolithic `PUT <Location>?digest=`); returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        let subject = Subject::Blob { repository: repo, digest: &digest.as_str() };
        let resp = self.start_upload(repo).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail(resp, format!("start a blob upload to {repo}"), subject).await);
        }
        let location = header(&resp, LOCATION);
        if location.is_empty() {
            return Err(RegistryError::Unexpected {
                what: format!("start a blob upload to {repo}"),
                status: 202,
                body: "no Location header".into(),
            });
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let resp = self.send(Call::new(Method::PUT, &put, push_scope(repo)).body("application/octet-stream", bytes)).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.fail(resp, format!("upload blob {digest} to {repo}"), subject).await);
        }
        tracing::debug!(repository = repo, %digest, size = bytes.len(), "blob pushed");
        Ok(digest)
    }
}

fn check(repo: &str, expected: &Digest, actual: Digest) -> Result<(), RegistryError> {
    if &actual == expected {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            what: format!("blob {repo}@{expected}"),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}
