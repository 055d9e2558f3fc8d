//! The write probe: proof that a registry is frozen (or thawed) before anything destructive.
//! Starting an upload is the cheapest write there is, and in read-only mode the registry
//! refuses it with `405 text/plain` like every other write.

use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};

use super::client::{Call, RegistryClient, header, push_scope};
use super::error::{RegistryError, Subject};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteProbe {
    /// 405: the registry refuses writes (read-only maintenance mode).
    Refused { status: u16 },
    /// 202: the registry took the upload; it was cancelled at once, but the registry leaves
    /// the session's hash state on disk under `_uploads/<upload_uuid>`, which a sweep removes.
    Accepted { upload_uuid: Option<String> },
}

impl RegistryClient {
    /// Tries to start an upload to `repo` and cancels it when accepted.
    pub async fn probe_write(&self, repo: &str) -> Result<WriteProbe, RegistryError> {
        let resp = self.start_upload(repo).await?;
        match resp.status() {
            StatusCode::ACCEPTED => {
                let location = header(&resp, LOCATION);
                let uuid = header(&resp, "docker-upload-uuid");
                if !location.is_empty() {
                    match self.send(Call::new(Method::DELETE, &location, push_scope(repo))).await {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => {
                            tracing::warn!(repository = repo, status = r.status().as_u16(), "could not cancel the probe's upload session")
                        }
                        Err(e) => tracing::warn!(repository = repo, error = %e, "could not cancel the probe's upload session"),
                    }
                }
                tracing::debug!(repository = repo, "write probe accepted");
                Ok(WriteProbe::Accepted { upload_uuid: Some(uuid).filter(|u| !u.is_empty()) })
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!(repository = repo, "write probe refused");
                Ok(WriteProbe::Refused { status: 405 })
            }
            _ => Err(self.fail(resp, format!("probe a write to {repo}"), Subject::Repository(repo)).await),
        }
    }
}
