//! The registry HTTP API v2 over reqwest: catalog, tags, manifests, blobs, uploads, with
//! basic or bearer-token auth and errors a person can act on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, LINK, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use super::auth::{TokenResponse, parse_challenge};
use super::error::{RegistryError, from_status};
use crate::digest::{Digest, Hasher};
use crate::media::MANIFEST_ACCEPT;

#[derive(Clone)]
pub struct ClientOptions {
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of an extra CA to trust.
    pub ca_cert: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
    pub timeout: Duration,
    /// Requests in flight at once for bulk work.
    pub concurrency: usize,
}

/// Debug output never shows the password.
impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions { username: None, password: None, ca_cert: None, insecure_skip_tls_verify: false, timeout: Duration::from_secs(30), concurrency: 16 }
    }
}

#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    http: reqwest::Client,
    username: Option<String>,
    password: Option<String>,
    concurrency: usize,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, String>>,
}

/// A manifest as stored: its true digest, media type and exact bytes.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// 404: already deleted (an earlier, interrupted run).
    AlreadyGone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteProbe {
    Refused { status: u16 },
    /// The registry took the upload; it was cancelled, but the registry leaves the session's
    /// hash state on disk under `_uploads/<uuid>`.
    Accepted { upload_uuid: Option<String> },
}

/// The next page from a `Link: </v2/_catalog?last=x&n=1000>; rel="next"` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(LINK)?.to_str().ok()?;
    value.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        Some(part[start..end].to_string())
    })
}

fn header(resp: &Response, name: &str) -> String {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

impl RegistryClient {
    pub fn new(url: &str, opts: ClientOptions) -> Result<Self, RegistryError> {
        let invalid = |cause: String| RegistryError::InvalidUrl { url: url.to_string(), cause };
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        let mut builder = reqwest::Client::builder().timeout(opts.timeout).pool_max_idle_per_host(opts.concurrency.max(1)).no_proxy();
        if let Some(ca) = &opts.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| invalid(format!("cannot read CA file {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| invalid(format!("CA file {} is not PEM: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        if opts.insecure_skip_tls_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| invalid(e.to_string()))?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                base: url.trim_end_matches('/').to_string(),
                http,
                username: opts.username,
                password: opts.password,
                concurrency: opts.concurrency.max(1),
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn url(&self) -> &str {
        &self.inner.base
    }

    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    fn absolute(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.inner.base, path_or_url)
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> RegistryError {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        let url = self.inner.base.clone();
        if cause.to_ascii_lowercase().contains("certificate") || cause.contains("tls") || cause.contains("TLS") {
            RegistryError::Tls { url, cause }
        } else {
            RegistryError::Unreachable { url, cause }
        }
    }

    /// Sends a request with the credentials at hand; on a bearer challenge, fetches a token
    /// for the scope the registry asks for and retries once.
    async fn send(&self, method: Method, path: &str, accept: Option<&str>, body: Option<(&str, Vec<u8>)>, scope_key: &str) -> Result<Response, RegistryError> {
        let build = |token: Option<String>| {
            let mut req = self.inner.http.request(method.clone(), self.absolute(path));
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some((ct, bytes)) = &body {
                req = req.header(CONTENT_TYPE, *ct).body(bytes.clone());
            } else if method == Method::PUT || method == Method::POST {
                req = req.header(reqwest::header::CONTENT_LENGTH, 0);
            }
            match (token, &self.inner.username) {
                (Some(t), _) => req.header(AUTHORIZATION, format!("Bearer {t}")),
                (None, Some(user)) => req.basic_auth(user, self.inner.password.as_ref()),
                (None, None) => req,
            }
        };
        let cached = self.inner.tokens.lock().expect("token cache").get(scope_key).cloned();
        let resp = build(cached.clone()).send().await.map_err(|e| self.transport_error(e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = parse_challenge(&header(&resp, WWW_AUTHENTICATE.as_str()));
        let Some(challenge) = challenge.filter(|c| c.scheme == "bearer") else { return Ok(resp) };
        let token = self.fetch_token(&challenge.params).await?;
        self.inner.tokens.lock().expect("token cache").insert(scope_key.to_string(), token.clone());
        build(Some(token)).send().await.map_err(|e| self.transport_error(e))
    }

    async fn fetch_token(&self, params: &HashMap<String, String>) -> Result<String, RegistryError> {
        let realm = params.get("realm").ok_or_else(|| RegistryError::Unexpected { what: "token challenge".into(), status: 401, body: "no realm in WWW-Authenticate".into() })?;
        let mut req = self.inner.http.get(realm);
        let query: Vec<(&str, &str)> = ["service", "scope"].iter().filter_map(|k| params.get(*k).map(|v| (*k, v.as_str()))).collect();
        req = req.query(&query);
        if let Some(user) = &self.inner.username {
            req = req.basic_auth(user, self.inner.password.as_ref());
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        if !resp.status().is_success() {
            return Err(RegistryError::Unauthorized { url: self.inner.base.clone(), detail: Some(format!("the token service at {realm} answered {}", resp.status())) });
        }
        let token: TokenResponse = resp.json().await.map_err(|e| RegistryError::Unexpected { what: "token response".into(), status: 200, body: e.to_string() })?;
        token.into_token().ok_or_else(|| RegistryError::Unexpected { what: "token response".into(), status: 200, body: "no token in the answer".into() })
    }

    async fn fail(&self, resp: Response, what: String, repository: &str, reference: &str) -> RegistryError {
        let status = resp.status().as_u16();
        let ct = header(&resp, CONTENT_TYPE.as_str());
        let body = resp.bytes().await.unwrap_or_default();
        from_status(&self.inner.base, what, status, &ct, &body, repository, reference)
    }

    /// GET /v2/: reachable, and the credentials work.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let resp = self.send(Method::GET, "/v2/", None, None, "ping").await?;
        if resp.status().is_success() { Ok(()) } else { Err(self.fail(resp, "GET /v2/".into(), "", "").await) }
    }

    /// Every repository, following `Link` pagination; sorted.
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Catalog {
            repositories: Option<Vec<String>>,
        }
        let mut all = Vec::new();
        let mut next = Some("/v2/_catalog?n=1000".to_string());
        while let Some(path) = next.take() {
            let resp = self.send(Method::GET, &path, None, None, "registry:catalog:*").await?;
            if !resp.status().is_success() {
                return Err(self.fail(resp, "list the catalog".into(), "", "").await);
            }
            next = next_link(resp.headers());
            let page: Catalog = resp.json().await.map_err(|e| RegistryError::Unexpected { what: "catalog".into(), status: 200, body: e.to_string() })?;
            all.extend(page.repositories.unwrap_or_default());
        }
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// A repository's tags, sorted (the registry does not sort them).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let mut all = Vec::new();
        let mut next = Some(format!("/v2/{repo}/tags/list"));
        while let Some(path) = next.take() {
            let resp = self.send(Method::GET, &path, None, None, &format!("repository:{repo}:pull")).await?;
            if !resp.status().is_success() {
                return Err(self.fail(resp, format!("list the tags of {repo}"), repo, "").await);
            }
            next = next_link(resp.headers());
            let page: Tags = resp.json().await.map_err(|e| RegistryError::Unexpected { what: format!("tags of {repo}"), status: 200, body: e.to_string() })?;
            all.extend(page.tags.unwrap_or_default());
        }
        all.sort();
        Ok(all)
    }

    /// A manifest by tag or digest, exactly as stored; its bytes must hash to the digest the
    /// registry reports (and to the requested digest).
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self.send(Method::GET, &path, Some(MANIFEST_ACCEPT), None, &format!("repository:{repo}:pull")).await?;
        if !resp.status().is_success() {
            return Err(self.fail(resp, format!("GET manifest {repo}:{reference}"), repo, reference).await);
        }
        let media_type = header(&resp, CONTENT_TYPE.as_str());
        let reported = header(&resp, "docker-content-digest");
        let body = resp.bytes().await.map_err(|e| self.transport_error(e))?.to_vec();
        let actual = Digest::of(&body);
        let what = format!("manifest {repo}:{reference}");
        for expected in [reported.as_str(), reference].into_iter().filter(|e| e.starts_with("sha256:")) {
            if expected != actual.as_str() {
                return Err(RegistryError::DigestMismatch { what, expected: expected.to_string(), actual: actual.to_string() });
            }
        }
        Ok(FetchedManifest { digest: actual, media_type, body })
    }

    /// HEAD of a manifest: None when it does not exist.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self.send(Method::HEAD, &path, Some(MANIFEST_ACCEPT), None, &format!("repository:{repo}:pull")).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.fail(resp, format!("HEAD manifest {repo}:{reference}"), repo, reference).await);
        }
        let digest = Digest::parse(&header(&resp, "docker-content-digest"))
            .map_err(|e| RegistryError::Unexpected { what: format!("HEAD manifest {repo}:{reference}"), status: 200, body: e })?;
        let size = header(&resp, "content-length").parse().unwrap_or(0);
        Ok(Some(ManifestHead { digest, media_type: header(&resp, CONTENT_TYPE.as_str()), size }))
    }

    /// DELETE a manifest by digest (which removes every tag on it in this repository).
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<DeleteOutcome, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{digest}");
        let resp = self.send(Method::DELETE, &path, None, None, &format!("repository:{repo}:*")).await?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK => Ok(DeleteOutcome::Deleted),
            StatusCode::NOT_FOUND => Ok(DeleteOutcome::AlreadyGone),
            _ => Err(self.fail(resp, format!("DELETE manifest {repo}@{digest}"), repo, digest.as_str()).await),
        }
    }

    /// HEAD of a blob: its size, or None when absent.
    pub async fn head_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let resp = self.send(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"), None, None, &format!("repository:{repo}:pull")).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(header(&resp, "content-length").parse().unwrap_or(0))),
            _ => Err(self.fail(resp, format!("HEAD blob {repo}@{digest}"), repo, digest.as_str()).await),
        }
    }

    async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Response, RegistryError> {
        let resp = self.send(Method::GET, &format!("/v2/{repo}/blobs/{digest}"), None, None, &format!("repository:{repo}:pull")).await?;
        if resp.status().is_success() { Ok(resp) } else { Err(self.fail(resp, format!("GET blob {repo}@{digest}"), repo, digest.as_str()).await) }
    }

    /// Streams a blob through sha256 and fails unless it matches; returns its size.
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
        let actual = hasher.finish();
        if &actual != digest {
            return Err(RegistryError::DigestMismatch { what: format!("blob {repo}@{digest}"), expected: digest.to_string(), actual: actual.to_string() });
        }
        Ok(size)
    }

    /// A small blob (an image config) in memory, digest-checked.
    pub async fn fetch_blob(&self, repo: &str, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let body = self.get_blob(repo, digest).await?.bytes().await.map_err(|e| self.transport_error(e))?.to_vec();
        let actual = Digest::of(&body);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch { what: format!("blob {repo}@{digest}"), expected: digest.to_string(), actual: actual.to_string() });
        }
        Ok(body)
    }

    async fn start_upload(&self, repo: &str) -> Result<Response, RegistryError> {
        self.send(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), None, None, &format!("repository:{repo}:pull,push")).await
    }

    /// Uploads a blob (POST, then one monolithic PUT) and returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::of(bytes);
        let resp = self.start_upload(repo).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail(resp, format!("start a blob upload to {repo}"), repo, "").await);
        }
        let location = header(&resp, LOCATION.as_str());
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let resp = self.send(Method::PUT, &put, None, Some(("application/octet-stream", bytes.to_vec())), &format!("repository:{repo}:pull,push")).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.fail(resp, format!("upload blob {digest} to {repo}"), repo, digest.as_str()).await);
        }
        Ok(digest)
    }

    /// PUT a manifest under a tag or its digest; returns the digest the registry stored.
    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Result<Digest, RegistryError> {
        let resp = self
            .send(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"), None, Some((media_type, body.to_vec())), &format!("repository:{repo}:pull,push"))
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.fail(resp, format!("PUT manifest {repo}:{reference}"), repo, reference).await);
        }
        Ok(Digest::of(body))
    }

    /// Tries to start an upload: a frozen registry refuses (405); a writable one accepts, and
    /// the upload is cancelled at once so nothing is left behind.
    pub async fn probe_write(&self, repo: &str) -> Result<WriteProbe, RegistryError> {
        let resp = self.start_upload(repo).await?;
        match resp.status() {
            StatusCode::ACCEPTED => {
                let location = header(&resp, LOCATION.as_str());
                let uuid = header(&resp, "docker-upload-uuid");
                if !location.is_empty() {
                    let _ = self.send(Method::DELETE, &location, None, None, &format!("repository:{repo}:pull,push")).await;
                }
                Ok(WriteProbe::Accepted { upload_uuid: Some(uuid).filter(|u| !u.is_empty()) })
            }
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::SERVICE_UNAVAILABLE => Ok(WriteProbe::Refused { status: resp.status().as_u16() }),
            _ => Err(self.fail(resp, format!("probe a write to {repo}"), repo, "").await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_link_headers() {
        let mut h = HeaderMap::new();
        h.insert(LINK, r#"</v2/_catalog?last=b&n=2>; rel="next""#.parse().unwrap());
        assert_eq!(next_link(&h).as_deref(), Some("/v2/_catalog?last=b&n=2"));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let o = ClientOptions { username: Some("ci".into()), password: Some("hunter2".into()), ..Default::default() };
        let text = format!("{o:?}");
        assert!(text.contains("ci") && text.contains("redacted") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(RegistryClient::new("ftp://x", ClientOptions::default()).is_err());
        assert!(RegistryClient::new("not a url", ClientOptions::default()).is_err());
        assert_eq!(RegistryClient::new("http://r:5000/", ClientOptions::default()).unwrap().url(), "http://r:5000");
    }
}
