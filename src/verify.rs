//! The verifier: every tag's whole graph (index → manifests → config → layers), fetched from
//! outside and hashed. What the tests run after every destructive step, and `regsweep verify`.

use std::collections::HashSet;
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::digest::Digest;
use crate::registry::{RegistryClient, RegistryError};
use crate::storage::{Content, snapshot::parse_manifest};

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub repositories: usize,
    pub tags: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub problems: Vec<VerifyProblem>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifyProblem {
    pub repository: String,
    pub tag: String,
    pub digest: Option<Digest>,
    pub problem: String,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Whether an error is about the content (reported per tag) rather than the registry as a
/// whole (which aborts the walk).
fn is_content_error(e: &RegistryError) -> bool {
    matches!(e, RegistryError::ManifestUnknown { .. } | RegistryError::DigestMismatch { .. } | RegistryError::Unexpected { .. })
}

struct Walk<'a> {
    client: &'a RegistryClient,
    /// (repository, digest) already verified.
    seen: Mutex<HashSet<(String, Digest)>>,
    counts: Mutex<(usize, usize)>,
}

impl Walk<'_> {
    fn first_time(&self, repo: &str, d: &Digest) -> bool {
        self.seen.lock().expect("seen").insert((repo.to_string(), d.clone()))
    }

    /// Verifies a manifest and everything below it; content problems become strings.
    async fn manifest(&self, repo: &str, reference: &str, problems: &mut Vec<(Option<Digest>, String)>) -> Result<(), RegistryError> {
        let fetched = match self.client.get_manifest(repo, reference).await {
            Ok(f) => f,
            Err(e) if is_content_error(&e) => {
                problems.push((Digest::parse(reference).ok(), e.to_string()));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if !self.first_time(repo, &fetched.digest) {
            return Ok(());
        }
        self.counts.lock().expect("counts").0 += 1;
        match parse_manifest(&fetched.body).1 {
            Content::Index { children } => {
                for child in children {
                    Box::pin(self.manifest(repo, child.as_str(), problems)).await?;
                }
            }
            Content::Image { config, layers } => {
                for blob in std::iter::once(config).chain(layers) {
                    if !self.first_time(repo, &blob) {
                        continue;
                    }
                    match self.client.fetch_blob_verified(repo, &blob).await {
                        Ok(_) => self.counts.lock().expect("counts").1 += 1,
                        Err(e) if is_content_error(&e) => problems.push((Some(blob.clone()), e.to_string())),
                        Err(e) => return Err(e),
                    }
                }
            }
            Content::Unknown { why } => problems.push((Some(fetched.digest), format!("manifest not understood: {why}"))),
        }
        Ok(())
    }
}

/// Verifies the given tags.
pub async fn verify_tags(client: &RegistryClient, tags: &[(String, String)]) -> Result<VerifyReport, RegistryError> {
    let walk = Walk { client, seen: Mutex::new(HashSet::new()), counts: Mutex::new((0, 0)) };
    let results: Vec<Vec<VerifyProblem>> = futures::stream::iter(tags.iter().map(|(repo, tag)| {
        let walk = &walk;
        async move {
            let mut problems = Vec::new();
            walk.manifest(repo, tag, &mut problems).await?;
            Ok::<_, RegistryError>(
                problems.into_iter().map(|(digest, problem)| VerifyProblem { repository: repo.clone(), tag: tag.clone(), digest, problem }).collect(),
            )
        }
    }))
    .buffer_unordered(client.concurrency())
    .try_collect()
    .await?;
    let (manifests, blobs) = *walk.counts.lock().expect("counts");
    let repositories = tags.iter().map(|(r, _)| r).collect::<HashSet<_>>().len();
    Ok(VerifyReport { repositories, tags: tags.len(), manifests, blobs, problems: results.into_iter().flatten().collect() })
}

/// Verifies every tag of every repository in the catalog.
pub async fn verify_registry(client: &RegistryClient) -> Result<VerifyReport, RegistryError> {
    let mut tags = Vec::new();
    let repos = client.catalog().await?;
    for repo in &repos {
        tags.extend(client.tags(repo).await?.into_iter().map(|t| (repo.clone(), t)));
    }
    let mut report = verify_tags(client, &tags).await?;
    report.repositories = repos.len();
    Ok(report)
}
