//! The client itself: one connection pool, credentials and a token cache behind an `Arc`, so
//! clones are cheap and share everything. Every request goes through `RegistryClient::send`,
//! which handles basic auth, the bearer challenge (fetch a token, retry once) and transport
//! errors. The API calls live in `listing`, `manifests`, `blobs` and `probe`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{Credentials, TokenCache, fetch_token, parse_challenge};
use super::error::{Answer, RegistryError, Subject, classify};
use super::options::ClientOptions;

/// A registry HTTP API v2 client. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

/// Shows the URL and the username, never a password or token.
impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("url", &self.inner.base)
            .field("username", &self.inner.credentials.as_ref().map(|c| c.username.as_str()))
            .field("concurrency", &self.inner.concurrency)
            .finish()
    }
}

struct Inner {
    /// The URL as given, without a trailing slash.
    base: String,
    /// `scheme://host:port` of the base URL: where credentials may go.
    origin: String,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    concurrency: usize,
    tokens: TokenCache,
}

/// One API request: a path under the base URL (or an absolute URL the registry handed out,
/// such as an upload `Location`), and the token scope it needs.
pub(super) struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub accept: Option<&'a str>,
    /// Content type and bytes.
    pub body: Option<(&'a str, &'a [u8])>,
    pub scope: String,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: &'a str, scope: String) -> Self {
        Call { method, path, accept: None, body: None, scope }
    }
    pub fn accept(mut self, accept: &'a str) -> Self {
        self.accept = Some(accept);
        self
    }
    pub fn body(mut self, content_type: &'a str, bytes: &'a [u8]) -> Self {
        self.body = Some((content_type, bytes));
        self
    }
}

/// Token scopes, as a token-auth registry asks for them.
pub(super) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}
pub(super) fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}
pub(super) fn delete_scope(repo: &str) -> String {
    format!("repository:{repo}:delete")
}

/// A header as a string ("" when absent or not text).
pub(super) fn header(resp: &Response, name: impl reqwest::header::AsHeaderName) -> String {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// An error and all its sources, on one line: reqwest's own message alone ("error sending
/// request") does not say what went wrong. Its outer "error sending request for url (...)"
/// is dropped when there is a cause, since messages name the registry anyway.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = if e.source().is_some() { e.source() } else { Some(e) };
    while let Some(s) = next {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = s.source();
    }
    parts.join(": ")
}

/// `url` without its userinfo (`user:password@`), for anything printed, logged or written.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let text = parsed.to_string();
            if url.ends_with('/') { text } else { text.trim_end_matches('/').to_string() }
        }
        Ok(_) => url.to_string(),
        // Not a URL: still never print what looks like `scheme://userinfo@`.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => format!("{}{}", &url[..s + 3], &url[at + 1..]),
            _ => url.to_string(),
        },
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(h) => h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl RegistryClient {
    /// A client for the registry at `url` (`http://` or `https://`, optionally with a port).
    /// Fails on a malformed URL or an unreadable CA file; does not contact the registry.
    /// A URL may carry credentials (`http://user:password@host`): they are used when no
    /// username is given, and removed from every URL the client shows or logs.
    pub fn new(url: &str, mut opts: ClientOptions) -> Result<Self, RegistryError> {
        let written = url;
        let redacted = redact_url(written);
        let url = redacted.as_str();
        let invalid = |cause: String| RegistryError::InvalidUrl { url: url.to_string(), cause: cause.replace(written, url) };
        let mut parsed = Url::parse(written).map_err(|e| invalid(e.to_string()))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            let decode = |s: &str| percent_decode(s);
            if opts.username.is_none() {
                opts.username = Some(decode(parsed.username()));
                opts.password = parsed.password().map(decode);
            }
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
        }
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        let mut ca_certs = Vec::new();
        if let Some(ca) = &opts.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| invalid(format!("cannot read the CA file {}: {e}", ca.display())))?;
            ca_certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid(format!("the CA file {} is not PEM: {e}", ca.display())))?;
            if ca_certs.is_empty() {
                return Err(invalid(format!("the CA file {} holds no certificate", ca.display())));
            }
        }
        if opts.insecure_skip_tls_verify {
            tracing::warn!(url, "TLS certificate verification is off for this registry");
        }
        // `system_roots: false` trusts only the CA file: for an image without a CA bundle
        // (a minimal registry image running the sweep), where the system store cannot load.
        let build = |system_roots: bool| {
            let mut builder = reqwest::Client::builder()
                .timeout(opts.timeout)
                .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
                .pool_max_idle_per_host(opts.concurrency.max(1))
                .user_agent(concat!("regsweep/", env!("CARGO_PKG_VERSION")));
            // A loopback registry (the private instance, tests) must never go through a proxy
            // from the environment; anything else honours HTTPS_PROXY/NO_PROXY as usual.
            if is_loopback(&parsed) {
                builder = builder.no_proxy();
            }
            builder = if system_roots { builder.tls_certs_merge(ca_certs.clone()) } else { builder.tls_certs_only(ca_certs.clone()) };
            builder.tls_danger_accept_invalid_certs(opts.insecure_skip_tls_verify).build()
        };
        let http = match build(true) {
            Ok(http) => http,
            Err(e) if parsed.scheme() == "http" || !ca_certs.is_empty() => {
                tracing::debug!(url, error = %error_chain(&e), "no system CA certificates; trusting only the CA file");
                build(false).map_err(|e| invalid(error_chain(&e)))?
            }
            Err(e) => {
                return Err(invalid(format!(
                    "{}: install the system's CA certificates (the ca-certificates package) or pass the registry's CA with --ca-cert",
                    error_chain(&e)
                )));
            }
        };
        let credentials = match (opts.username, opts.password) {
            (Some(username), password) if !username.is_empty() => Some(Credentials { username, password }),
            (_, Some(_)) => {
                tracing::warn!(url, "a registry password was given without a username; it is not used");
                None
            }
            _ => None,
        };
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                base: url.trim_end_matches('/').to_string(),
                origin: parsed.origin().ascii_serialization(),
                http,
                credentials,
                concurrency: opts.concurrency.max(1),
                tokens: TokenCache::default(),
            }),
        })
    }

    /// The registry's URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// How many requests bulk work should keep in flight.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// A path (`/v2/...`) under the base URL, or an absolute URL as the registry handed it out.
    fn resolve(&self, path: &str) -> Result<Url, RegistryError> {
        let text = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.inner.base)
        };
        Url::parse(&text).map_err(|e| RegistryError::Unexpected {
            what: "follow a URL from the registry".into(),
            status: 0,
            body: format!("{text:?}: {e}"),
        })
    }

    pub(super) fn transport_error(&self, e: reqwest::Error) -> RegistryError {
        let cause = error_chain(&e);
        let lower = cause.to_ascii_lowercase();
        let url = self.inner.base.clone();
        if ["certificate", "tls", "ssl", "handshake", "unknownissuer", "corrupt message"].iter().any(|k| lower.contains(k)) {
            RegistryError::Tls { url, cause }
        } else if e.is_timeout() {
            RegistryError::Unreachable { url, cause: format!("no answer in time ({cause})") }
        } else {
            RegistryError::Unreachable { url, cause }
        }
    }

    /// Sends a call with the credentials at hand. On a bearer challenge, fetches a token for
    /// the call's scope, caches it and retries once. Credentials only ever go to the
    /// registry's own origin, never to a host an upload `Location` or `Link` points at.
    pub(super) async fn send(&self, call: Call<'_>) -> Result<Response, RegistryError> {
        let url = self.resolve(call.path)?;
        let ours = url.origin().ascii_serialization() == self.inner.origin;
        if !ours {
            tracing::warn!(
                host = url.host_str().unwrap_or(""),
                "the registry redirected a request to another host; sending it without credentials"
            );
        }
        let cached = if ours { self.inner.tokens.get(&call.scope) } else { None };
        let resp = self.attempt(&call, &url, ours, cached.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED || !ours {
            return Ok(resp);
        }
        let Some(challenge) = parse_challenge(&header(&resp, WWW_AUTHENTICATE)).filter(|c| c.scheme == "bearer") else {
            return Ok(resp);
        };
        let token = fetch_token(&self.inner.http, &self.inner.base, &challenge, self.inner.credentials.as_ref()).await?;
        self.inner.tokens.put(&call.scope, token.clone());
        self.attempt(&call, &url, ours, Some(&token)).await
    }

    async fn attempt(&self, call: &Call<'_>, url: &Url, ours: bool, token: Option<&str>) -> Result<Response, RegistryError> {
        let mut req = self.inner.http.request(call.method.clone(), url.clone());
        if let Some(accept) = call.accept {
            req = req.header(ACCEPT, accept);
        }
        match call.body {
            Some((content_type, bytes)) => req = req.header(CONTENT_TYPE, content_type).body(bytes.to_vec()),
            None if call.method == Method::PUT || call.method == Method::POST => req = req.header(CONTENT_LENGTH, 0),
            None => {}
        }
        match (token, &self.inner.credentials) {
            (Some(t), _) if ours => req = req.header(AUTHORIZATION, format!("Bearer {t}")),
            (None, Some(c)) if ours => req = req.basic_auth(&c.username, c.password.as_ref()),
            _ => {}
        }
        let started = Instant::now();
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        // The path only: upload URLs carry the registry's signed `_state` in the query.
        tracing::debug!(method = %call.method, path = url.path(), status = resp.status().as_u16(), ms = started.elapsed().as_millis() as u64, "registry request");
        Ok(resp)
    }

    /// Reads a failed response and maps it to an error.
    pub(super) async fn fail(&self, resp: Response, what: String, subject: Subject<'_>) -> RegistryError {
        let status = resp.status().as_u16();
        let content_type = header(&resp, CONTENT_TYPE);
        let body = resp.bytes().await.unwrap_or_default();
        let error = classify(
            &self.inner.base,
            what,
            subject,
            Answer { status, content_type: &content_type, body: &body },
            self.inner.credentials.is_some(),
        );
        tracing::debug!(category = error.category(), status, "registry refused a request");
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urls() {
        assert_eq!(RegistryClient::new("ftp://x", ClientOptions::default()).unwrap_err().category(), "invalid-url");
        assert!(RegistryClient::new("not a url", ClientOptions::default()).is_err());
        assert_eq!(RegistryClient::new("http://r:5000/", ClientOptions::default()).unwrap().url(), "http://r:5000");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let opts = ClientOptions { ca_cert: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        let err = RegistryClient::new("https://r", opts).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn resolves_paths_and_absolute_urls() {
        let c = RegistryClient::new("http://127.0.0.1:5000/", ClientOptions::default()).unwrap();
        assert_eq!(c.resolve("/v2/").unwrap().as_str(), "http://127.0.0.1:5000/v2/");
        assert_eq!(c.resolve("https://other/v2/x").unwrap().host_str(), Some("other"));
        assert!(is_loopback(&Url::parse("http://[::1]:5000").unwrap()));
        assert!(is_loopback(&Url::parse("http://localhost").unwrap()));
        assert!(!is_loopback(&Url::parse("https://registry.example").unwrap()));
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_used_and_never_shown() {
        assert_eq!(redact_url("http://user:s3cret@registry.example.com:5000/x"), "http://registry.example.com:5000/x");
        assert_eq!(redact_url("https://user@host"), "https://host");
        assert_eq!(redact_url("http://host:5000"), "http://host:5000");
        assert_eq!(redact_url("not a url://u:p@host/x"), "not a url://host/x");
        let c = RegistryClient::new("http://bob:p%40ss@127.0.0.1:5000/", ClientOptions::default()).unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:5000");
        let debug = format!("{c:?}");
        assert!(!debug.contains("p@ss") && !debug.contains("p%40ss") && debug.contains("bob"), "{debug}");
        assert_eq!(c.inner.credentials.as_ref().and_then(|c| c.password.as_deref()), Some("p@ss"));
        let err = RegistryClient::new("ftp://bob:s3cret@host", ClientOptions::default()).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
