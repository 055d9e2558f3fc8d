//! Reachability and listings: `GET /v2/`, `_catalog` and `tags/list`, following `Link`
//! pagination. Both lists come back sorted: the registry does not sort tags.

use std::collections::HashSet;

use reqwest::Method;
use serde::Deserialize;

use super::client::{Call, RegistryClient, pull_scope};
use super::error::{RegistryError, Subject};
use super::link::next_link;

/// One page of `_catalog` or `tags/list`; `{"tags":null}` is a repository with no tags left.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    repositories: Option<Vec<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The catalog's page size: the registry's maximum.
const CATALOG_PAGE: usize = 1000;

impl RegistryClient {
    /// `GET /v2/`: the registry is reachable, speaks API v2 and accepts the credentials.
    pub async fn ping(&self) -> Result<(), RegistryError> {
        let resp = self.send(Call::new(Method::GET, "/v2/", String::new())).await?;
        if resp.status().is_success() { Ok(()) } else { Err(self.fail(resp, "GET /v2/".into(), Subject::Registry).await) }
    }

    /// Every repository name, sorted.
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        let first = format!("/v2/_catalog?n={CATALOG_PAGE}");
        self.list_pages(first, "registry:catalog:*".into(), "list the catalog", Subject::Registry, |p| p.repositories).await
    }

    /// A repository's tags, sorted; empty when every tag was deleted.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        let what = format!("list the tags of {repo}");
        self.list_pages(format!("/v2/{repo}/tags/list"), pull_scope(repo), &what, Subject::Repository(repo), |p| p.tags).await
    }

    async fn list_pages(
        &self,
        first: String,
        scope: String,
        what: &str,
        subject: Subject<'_>,
        field: fn(Page) -> Option<Vec<String>>,
    ) -> Result<Vec<String>, RegistryError> {
        let mut all = Vec::new();
        let mut visited = HashSet::new();
        let mut next = Some(first);
        while let Some(path) = next.take() {
            if !visited.insert(path.clone()) {
                tracing::warn!(what, "the registry's Link header points back at a page already read; stopping");
                break;
            }
            let resp = self.send(Call::new(Method::GET, &path, scope.clone())).await?;
            if !resp.status().is_success() {
                return Err(self.fail(resp, what.to_string(), subject).await);
            }
            next = next_link(resp.headers());
            let status = resp.status().as_u16();
            let page: Page = resp.json().await.map_err(|e| RegistryError::Unexpected {
                what: what.to_string(),
                status,
                body: format!("not the expected JSON: {e}"),
            })?;
            all.extend(field(page).unwrap_or_default());
        }
        all.sort();
        all.dedup();
        tracing::debug!(what, count = all.len(), pages = visited.len(), "listed");
        Ok(all)
    }
}
