//! Registry failures, mapped to what a person needs to know and do. The registry answers
//! errors as `{"errors":[{"code","message","detail"}]}`, except in read-only mode, where every
//! write is a bare `405 text/plain "Method not allowed"`.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach the registry at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error(
        "TLS with {url} failed: {cause}; if the registry uses a private CA, pass its PEM file (--ca-cert FILE), or for a lab registry only, skip verification (--insecure-skip-tls-verify)"
    )]
    Tls { url: String, cause: String },
    #[error(
        "the registry at {url} answered 401 Unauthorized{}: {}; set them with --username and REGSWEEP_REGISTRY_PASSWORD (operator: the policy's credentialsSecret)",
        detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default(),
        if *had_credentials { "the username or password is wrong" } else { "it requires credentials and none were given" }
    )]
    Unauthorized { url: String, had_credentials: bool, detail: Option<String> },
    #[error("the registry denied {what} (403 Forbidden); the account lacks that permission")]
    Forbidden { what: String },
    #[error(
        "the registry has deletes disabled and refused {what} (405 UNSUPPORTED); set `storage.delete.enabled: true` in its configuration (or REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it"
    )]
    DeleteDisabled { what: String },
    #[error(
        "the registry is in read-only maintenance mode (storage.maintenance.readonly) and refused {what} (405); writes work again once it is restarted without it"
    )]
    ReadOnly { what: String },
    #[error("repository {repository} is not known to the registry (NAME_UNKNOWN)")]
    RepositoryUnknown { repository: String },
    #[error("manifest {reference} is not in repository {repository} (MANIFEST_UNKNOWN)")]
    ManifestUnknown { repository: String, reference: String },
    #[error("blob {digest} is not in repository {repository} (BLOB_UNKNOWN)")]
    BlobUnknown { repository: String, digest: String },
    #[error("{what}: the content has digest {actual}, not {expected}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{what}: unexpected HTTP {status}: {body}")]
    Unexpected { what: String, status: u16, body: String },
    #[error("invalid registry URL {url:?}: {cause}")]
    InvalidUrl { url: String, cause: String },
}

impl RegistryError {
    /// Short and stable, for metric labels, Event reasons and exit codes.
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
            RegistryError::BlobUnknown { .. } => "blob-unknown",
            RegistryError::DigestMismatch { .. } => "digest-mismatch",
            RegistryError::Unexpected { .. } => "unexpected-response",
            RegistryError::InvalidUrl { .. } => "invalid-url",
        }
    }

    /// About one piece of content (missing, damaged, a server error on it) rather than the
    /// registry as a whole; a walk over many images reports these and carries on.
    pub fn is_content_problem(&self) -> bool {
        matches!(
            self,
            RegistryError::RepositoryUnknown { .. }
                | RegistryError::ManifestUnknown { .. }
                | RegistryError::BlobUnknown { .. }
                | RegistryError::DigestMismatch { .. }
                | RegistryError::Unexpected { .. }
        )
    }
}

/// The registry's JSON error body.
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
    /// Free-form: a string, or an object such as `{"Tag":"latest"}`.
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

impl ErrorBody {
    /// Never fails: a body that is not the registry's JSON has no entries.
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    pub fn has(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }

    /// `CODE: message (detail)`, for messages.
    pub fn summary(&self) -> Option<String> {
        let e = self.errors.first()?;
        let detail = match &e.detail {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => format!(" ({s})"),
            Some(v) => format!(" ({v})"),
        };
        Some(format!("{}: {}{detail}", e.code, e.message))
    }
}

/// What a failed request was about, so that a bare 404 (HEAD has no body) maps to the right
/// "unknown" error.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    Registry,
    Repository(&'a str),
    Manifest { repository: &'a str, reference: &'a str },
    Blob { repository: &'a str, digest: &'a str },
}

/// A failed response: status, content type and (possibly empty) body.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// Maps a failed response to an error; `what` says what was attempted, in words.
pub fn classify(url: &str, what: String, subject: Subject<'_>, answer: Answer<'_>, had_credentials: bool) -> RegistryError {
    let parsed = ErrorBody::parse(answer.body);
    let repository = match subject {
        Subject::Registry => "",
        Subject::Repository(r) | Subject::Manifest { repository: r, .. } | Subject::Blob { repository: r, .. } => r,
    };
    match answer.status {
        401 => {
            RegistryError::Unauthorized { url: url.to_string(), had_credentials, detail: parsed.errors.first().map(|e| e.message.clone()) }
        }
        403 => RegistryError::Forbidden { what },
        405 if parsed.has("UNSUPPORTED") => RegistryError::DeleteDisabled { what },
        405 if answer.content_type.starts_with("text/plain") || parsed.errors.is_empty() => RegistryError::ReadOnly { what },
        404 if parsed.has("NAME_UNKNOWN") => RegistryError::RepositoryUnknown { repository: repository.to_string() },
        404 if parsed.has("BLOB_UNKNOWN") => RegistryError::BlobUnknown { repository: repository.to_string(), digest: blob_of(subject) },
        404 if parsed.has("MANIFEST_UNKNOWN") => {
            RegistryError::ManifestUnknown { repository: repository.to_string(), reference: reference_of(subject) }
        }
        404 if answer.body.is_empty() => match subject {
            Subject::Blob { digest, .. } => RegistryError::BlobUnknown { repository: repository.to_string(), digest: digest.to_string() },
            Subject::Manifest { reference, .. } => {
                RegistryError::ManifestUnknown { repository: repository.to_string(), reference: reference.to_string() }
            }
            Subject::Repository(_) => RegistryError::RepositoryUnknown { repository: repository.to_string() },
            Subject::Registry => unexpected(what, answer, &parsed),
        },
        _ => unexpected(what, answer, &parsed),
    }
}

fn blob_of(subject: Subject<'_>) -> String {
    match subject {
        Subject::Blob { digest, .. } => digest.to_string(),
        Subject::Manifest { reference, .. } => reference.to_string(),
        _ => String::new(),
    }
}

fn reference_of(subject: Subject<'_>) -> String {
    match subject {
        Subject::Manifest { reference, .. } => reference.to_string(),
        Subject::Blob { digest, .. } => digest.to_string(),
        _ => String::new(),
    }
}

fn unexpected(what: String, answer: Answer<'_>, parsed: &ErrorBody) -> RegistryError {
    let body = parsed.summary().unwrap_or_else(|| trim_body(&String::from_utf8_lossy(answer.body)));
    RegistryError::Unexpected { what, status: answer.status, body }
}

/// At most 300 characters of a body, on one line, for error messages.
pub fn trim_body(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".into();
    }
    let mut trimmed: String = one_line.chars().take(300).collect();
    if trimmed.len() < one_line.len() {
        trimmed.push('…');
    }
    trimmed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, content_type: &str, body: &[u8], subject: Subject<'_>) -> RegistryError {
        classify("http://r", "delete".into(), subject, Answer { status, content_type, body }, true)
    }
    const MANIFEST: Subject<'static> = Subject::Manifest { repository: "r", reference: "sha256:d" };

    #[test]
    fn maps_delete_disabled_and_read_only() {
        let e = map(405, "application/json", br#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#, MANIFEST);
        assert!(matches!(e, RegistryError::DeleteDisabled { .. }));
        assert!(e.to_string().contains("storage.delete.enabled") && e.to_string().contains("REGISTRY_STORAGE_DELETE_ENABLED"), "{e}");
        let e = map(405, "text/plain; charset=utf-8", b"Method not allowed\n", MANIFEST);
        assert_eq!(e.category(), "read-only");
        assert!(e.to_string().contains("read-only"), "{e}");
    }

    #[test]
    fn maps_unknown_things() {
        let e = map(404, "application/json", br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#, Subject::Repository("r"));
        assert_eq!(e.category(), "repository-unknown");
        let e = map(
            404,
            "application/json",
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"latest"}}]}"#,
            MANIFEST,
        );
        assert_eq!(e.category(), "manifest-unknown");
        assert_eq!(map(404, "", b"", Subject::Blob { repository: "r", digest: "sha256:b" }).category(), "blob-unknown");
        assert_eq!(map(404, "", b"", MANIFEST).category(), "manifest-unknown");
        assert!(e.is_content_problem());
    }

    #[test]
    fn maps_auth_and_the_rest() {
        let e = map(401, "", b"", Subject::Registry);
        assert_eq!(e.category(), "unauthorized");
        assert!(e.to_string().contains("wrong"), "{e}");
        let anonymous = classify("http://r", "x".into(), Subject::Registry, Answer { status: 401, content_type: "", body: b"" }, false);
        assert!(anonymous.to_string().contains("none were given"), "{anonymous}");
        assert!(!anonymous.is_content_problem());
        assert_eq!(map(403, "", b"", Subject::Registry).category(), "forbidden");
        let e = map(500, "text/plain", b"boom\n  at line 3", Subject::Registry);
        assert_eq!(e.category(), "unexpected-response");
        assert!(e.to_string().contains("500") && e.to_string().contains("boom at line 3"), "{e}");
        let e = map(
            400,
            "application/json",
            br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content","detail":"x"}]}"#,
            MANIFEST,
        );
        assert!(e.to_string().contains("DIGEST_INVALID: provided digest did not match uploaded content (x)"), "{e}");
    }

    #[test]
    fn trims_long_bodies() {
        assert_eq!(trim_body(""), "(empty body)");
        let long = trim_body(&"x".repeat(1000));
        assert!(long.chars().count() == 301 && long.ends_with('…'));
    }
}
