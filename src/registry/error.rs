//! Registry failures, mapped to what a person needs to know and do.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach the registry at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("TLS with {url} failed: {cause}; pass --ca-cert FILE for a private CA, or --insecure-skip-tls-verify")]
    Tls { url: String, cause: String },
    #[error("the registry at {url} refused the credentials (401){}; check --username and REGSWEEP_REGISTRY_PASSWORD", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Unauthorized { url: String, detail: Option<String> },
    #[error("the registry denied {what} (403 Forbidden); the account lacks the permission")]
    Forbidden { what: String },
    #[error("the registry has deletes disabled (405 UNSUPPORTED) for {what}; set `storage.delete.enabled: true` in its configuration (or REGISTRY_STORAGE_DELETE_ENABLED=true)")]
    DeleteDisabled { what: String },
    #[error("the registry is in read-only maintenance mode and refused {what} (405)")]
    ReadOnly { what: String },
    #[error("repository {repository} is not known to the registry (NAME_UNKNOWN)")]
    RepositoryUnknown { repository: String },
    #[error("manifest {reference} is not in repository {repository} (MANIFEST_UNKNOWN)")]
    ManifestUnknown { repository: String, reference: String },
    #[error("{what}: the content has digest {actual}, not {expected}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{what}: unexpected HTTP {status}: {body}")]
    Unexpected { what: String, status: u16, body: String },
    #[error("invalid registry URL {url:?}: {cause}")]
    InvalidUrl { url: String, cause: String },
}

impl RegistryError {
    /// Short and stable, for metric labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            RegistryError::Unreachable { .. } => "unreachable",
            RegistryError::Tls { .. } => "tls",
            RegistryError::Unauthorized { .. } => "unauthorized",
            RegistryError::Forbidden { .. } => "forbidden",
            RegistryError::DeleteDisabled { .. } => "delete-disabled",
            RegistryError::ReadOnly { .. } => "read-only",
            RegistryError::RepositoryUnknown { .. } => "repository-unknown",
            RegistryError::ManifestUnknown { .. } => "manifest-unknown",
            RegistryError::DigestMismatch { .. } => "digest-mismatch",
            RegistryError::Unexpected { .. } => "unexpected-response",
            RegistryError::InvalidUrl { .. } => "invalid-url",
        }
    }
}

/// The registry's JSON error body: `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorEntry {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    pub fn has(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }
}

/// Maps a failed response to an error; `what` says what was attempted.
pub fn from_status(url: &str, what: String, status: u16, content_type: &str, body: &[u8], repository: &str, reference: &str) -> RegistryError {
    let parsed = ErrorBody::parse(body);
    match status {
        401 => RegistryError::Unauthorized { url: url.to_string(), detail: parsed.errors.first().map(|e| e.message.clone()) },
        403 => RegistryError::Forbidden { what },
        405 if parsed.has("UNSUPPORTED") => RegistryError::DeleteDisabled { what },
        405 if content_type.starts_with("text/plain") || parsed.errors.is_empty() => RegistryError::ReadOnly { what },
        404 if parsed.has("NAME_UNKNOWN") => RegistryError::RepositoryUnknown { repository: repository.to_string() },
        404 if parsed.has("MANIFEST_UNKNOWN") || parsed.has("BLOB_UNKNOWN") || body.is_empty() => {
            RegistryError::ManifestUnknown { repository: repository.to_string(), reference: reference.to_string() }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let trimmed: String = text.trim().chars().take(300).collect();
            RegistryError::Unexpected { what, status, body: trimmed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_registry_s_answers() {
        let e = from_status("u", "delete".into(), 405, "application/json", br#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#, "r", "d");
        assert!(matches!(e, RegistryError::DeleteDisabled { .. }));
        assert!(e.to_string().contains("storage.delete.enabled"));
        let e = from_status("u", "delete".into(), 405, "text/plain; charset=utf-8", b"Method not allowed\n", "r", "d");
        assert_eq!(e.category(), "read-only");
        let e = from_status("u", "tags".into(), 404, "application/json", br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#, "r", "");
        assert_eq!(e.category(), "repository-unknown");
        assert_eq!(from_status("u", "x".into(), 401, "", b"", "r", "").category(), "unauthorized");
        assert_eq!(from_status("u", "x".into(), 500, "", b"boom", "r", "").category(), "unexpected-response");
    }
}
