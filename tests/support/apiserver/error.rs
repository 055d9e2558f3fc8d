//! Errors as Kubernetes reports them: `Status` objects with reason, code and message, worded
//! like the real API server's so clients (kube, kubectl) map them the same way.

use serde_json::{Value, json};

/// A failed request, as the `Status` object the API server answers with.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `configmaps` or `deployments.apps`: how the API server names a resource in messages.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

fn details(group: &str, plural: &str, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": plural});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason: reason.to_string(), message: message.into(), details: None }
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        let mut e = ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(group, plural)));
        e.details = Some(details(group, plural, name));
        e
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        let mut e = ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(group, plural)));
        e.details = Some(details(group, plural, name));
        e
    }

    /// 409 Conflict: "Operation cannot be fulfilled on configmaps "x": <why>".
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> ApiError {
        let mut e =
            ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": {why}", qualified(group, plural)));
        e.details = Some(details(group, plural, name));
        e
    }

    /// The usual optimistic-concurrency conflict.
    pub fn stale(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 422 Invalid: "<Kind> "<name>" is invalid: <field>: <what>".
    pub fn invalid(group: &str, kind: &str, name: &str, message: &str) -> ApiError {
        let mut e = ApiError::new(422, "Invalid", format!("{kind} \"{name}\" is invalid: {message}"));
        let mut d = json!({"name": name, "kind": kind, "causes": [{"message": message}]});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        e.details = Some(d);
        e
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// 410 Expired, as a watch from a compacted resourceVersion gets it.
    pub fn expired(requested: u64, oldest: u64) -> ApiError {
        ApiError::new(410, "Expired", format!("too old resource version: {requested} ({oldest})"))
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}
