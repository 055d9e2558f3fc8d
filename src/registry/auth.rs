//! Authentication: HTTP basic, and the bearer-token challenge flow of token-auth registries
//! (`401` + `WWW-Authenticate: Bearer realm=...,service=...,scope=...` → ask the realm for a
//! token with the basic credentials, if any → retry with `Authorization: Bearer`).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

use super::error::RegistryError;

/// Username and password. Debug never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// A parsed `WWW-Authenticate` challenge; the scheme is lowercased, as are parameter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull,push"`
/// (quoted values may hold commas; unquoted values end at a comma). None when malformed.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim_end(), &after[end..])
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

/// Bearer tokens by scope (`repository:team/app:pull`, `registry:catalog:*`), so each scope
/// costs one token request per client, not one per call.
#[derive(Default)]
pub struct TokenCache(Mutex<HashMap<String, String>>);

impl TokenCache {
    pub fn get(&self, scope: &str) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(scope).cloned()
    }

    pub fn put(&self, scope: &str, token: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(scope.to_string(), token);
    }
}

/// The token endpoint's answer: `token` or, per OAuth2, `access_token`.
#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// Asks the challenge's realm for a token (with the basic credentials when given).
pub async fn fetch_token(
    http: &reqwest::Client,
    registry: &str,
    challenge: &Challenge,
    credentials: Option<&Credentials>,
) -> Result<String, RegistryError> {
    let unexpected = |body: String| RegistryError::Unexpected { what: "get a bearer token".into(), status: 401, body };
    let realm = challenge.params.get("realm").ok_or_else(|| unexpected("the registry's WWW-Authenticate challenge has no realm".into()))?;
    let query: Vec<(&str, &str)> = ["service", "scope"].iter().filter_map(|k| challenge.params.get(*k).map(|v| (*k, v.as_str()))).collect();
    let mut req = http.get(realm).query(&query);
    if let Some(c) = credentials {
        req = req.basic_auth(&c.username, c.password.as_ref());
    }
    tracing::debug!(realm = %realm, scope = challenge.params.get("scope").map(String::as_str).unwrap_or(""), "requesting a bearer token");
    let resp = req.send().await.map_err(|e| RegistryError::Unreachable { url: realm.clone(), cause: super::client::error_chain(&e) })?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(RegistryError::Unauthorized {
            url: registry.to_string(),
            had_credentials: credentials.is_some(),
            detail: Some(format!("its token service at {realm} answered {status}")),
        });
    }
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(RegistryError::Unexpected {
            what: format!("get a bearer token from {realm}"),
            status: status.as_u16(),
            body: super::error::trim_body(&body),
        });
    }
    let token: TokenResponse =
        resp.json().await.map_err(|e| unexpected(format!("the token service at {realm} answered something that is not a token: {e}")))?;
    token
        .token
        .or(token.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unexpected(format!("the token service at {realm} answered without a token")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.com/token");
        assert_eq!(c.params["service"], "registry.example.com");
        assert_eq!(c.params["scope"], "repository:team/app:pull,push");
    }

    #[test]
    fn parses_other_forms() {
        let c = parse_challenge(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!((c.scheme.as_str(), c.params["realm"].as_str()), ("basic", "basic-realm"));
        // Unquoted values, spaces around separators, an error parameter on an expired token.
        let c = parse_challenge(r#"BEARER Realm=https://a/token , service=reg, error="invalid_token""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://a/token");
        assert_eq!(c.params["service"], "reg");
        assert_eq!(c.params["error"], "invalid_token");
        assert_eq!(parse_challenge("Bearer").unwrap().params.len(), 0);
    }

    #[test]
    fn rejects_malformed_challenges() {
        assert!(parse_challenge("Bearer realm").is_none());
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials { username: "ci".into(), password: Some("hunter2".into()) };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
