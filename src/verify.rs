//! The verifier: every tag's whole graph — index → child manifests → config and layers —
//! fetched from outside through the API and hashed, the way a `docker pull` would need it.
//! It is what the tests run after every destructive step and what `regsweep verify` runs, so
//! it trusts nothing the sweep computed: it only reads the registry.
//!
//! Each manifest and blob is checked once per repository (tags share them) and its findings
//! are reported under every tag that needs it. A content problem (404, 500, wrong digest or
//! size) is a [`VerifyProblem`]; a registry-wide failure (unreachable, 401) is an `Err`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, Semaphore};

use crate::digest::Digest;
use crate::registry::{RegistryClient, RegistryError, try_map_bounded};

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub repositories: usize,
    pub tags: usize,
    /// Distinct manifests checked (per repository).
    pub manifests: usize,
    /// Distinct blobs fetched and hashed (per repository).
    pub blobs: usize,
    pub problems: Vec<VerifyProblem>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct VerifyProblem {
    pub repository: String,
    /// The tag whose image is broken; empty when the repository's tag list itself failed.
    pub tag: String,
    /// The manifest or blob at fault, when known.
    pub digest: Option<Digest>,
    pub problem: String,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Manifests nest one level (index → image); anything deeper than this is refused rather
/// than followed.
const MAX_DEPTH: usize = 4;

/// A descriptor, as far as the verifier needs it.
#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: Option<u64>,
}

/// The parts of a manifest that name other content: `manifests[]` (index, manifest list),
/// `config` and `layers[]` (image), `fsLayers[].blobSum` (schema1, which 2.8 still serves).
#[derive(Deserialize)]
struct Parsed {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default, rename = "fsLayers")]
    fs_layers: Option<Vec<FsLayer>>,
}

#[derive(Deserialize)]
struct FsLayer {
    #[serde(rename = "blobSum")]
    blob_sum: String,
}

/// One finding below a tag: the content at fault and what is wrong with it.
#[derive(Clone, Debug)]
struct Finding {
    digest: Option<Digest>,
    problem: String,
}

type Findings = Arc<Vec<Finding>>;
type Memo = Mutex<HashMap<(String, Digest), Arc<OnceCell<Findings>>>>;

struct Walk<'a> {
    client: &'a RegistryClient,
    /// Bounds the requests in flight across all tags and all levels of the graph. Held only
    /// around a request, never while waiting on another node, so it cannot deadlock.
    permits: Semaphore,
    manifests: Memo,
    blobs: Memo,
    manifest_count: AtomicUsize,
    blob_count: AtomicUsize,
}

/// A content error becomes a finding; a registry-wide one aborts the walk.
fn finding(e: RegistryError, digest: Option<Digest>) -> Result<Vec<Finding>, RegistryError> {
    if e.is_content_problem() { Ok(vec![Finding { digest, problem: e.to_string() }]) } else { Err(e) }
}

fn size_problem(what: &str, expected: Option<u64>, actual: u64) -> Option<String> {
    expected.filter(|&e| e != actual).map(|e| format!("{what} is {actual} bytes, but its descriptor says {e}"))
}

impl<'a> Walk<'a> {
    fn new(client: &'a RegistryClient) -> Self {
        Walk {
            client,
            permits: Semaphore::new(client.concurrency()),
            manifests: Mutex::default(),
            blobs: Mutex::default(),
            manifest_count: AtomicUsize::new(0),
            blob_count: AtomicUsize::new(0),
        }
    }

    fn cell(memo: &Memo, repo: &str, digest: &Digest) -> Arc<OnceCell<Findings>> {
        memo.lock().unwrap_or_else(|p| p.into_inner()).entry((repo.to_string(), digest.clone())).or_default().clone()
    }

    /// Everything wrong below one tag.
    async fn tag(&self, repo: &str, tag: &str) -> Result<Vec<Finding>, RegistryError> {
        let fetched = {
            let _permit = self.permits.acquire().await.expect("semaphore open");
            self.client.get_manifest(repo, tag).await
        };
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => return finding(e, None),
        };
        let cell = Self::cell(&self.manifests, repo, &fetched.digest);
        let findings = cell.get_or_try_init(|| self.contents(repo, fetched.digest.clone(), fetched.body, 0)).await?;
        Ok(findings.to_vec())
    }

    /// A child manifest by digest, checked once per repository.
    async fn child(&self, repo: &str, desc: &Descriptor, depth: usize) -> Result<Findings, RegistryError> {
        let digest = match Digest::parse(&desc.digest) {
            Ok(d) => d,
            Err(e) => return Ok(Arc::new(vec![Finding { digest: None, problem: format!("unusable child digest: {e}") }])),
        };
        let cell = Self::cell(&self.manifests, repo, &digest);
        cell.get_or_try_init(|| async {
            let fetched = {
                let _permit = self.permits.acquire().await.expect("semaphore open");
                self.client.get_manifest(repo, &digest.as_str()).await
            };
            match fetched {
                Ok(f) => {
                    let mut findings: Vec<Finding> = size_problem(&format!("manifest {digest}"), desc.size, f.body.len() as u64)
                        .map(|problem| Finding { digest: Some(digest.clone()), problem })
                        .into_iter()
                        .collect();
                    findings.extend(self.contents(repo, digest.clone(), f.body, depth).await?.iter().cloned());
                    Ok(Arc::new(findings))
                }
                Err(e) => finding(e, Some(digest.clone())).map(Arc::new),
            }
        })
        .await
        .cloned()
    }

    /// What a manifest's body names, checked: child manifests, or config and layers.
    async fn contents(&self, repo: &str, digest: Digest, body: Vec<u8>, depth: usize) -> Result<Findings, RegistryError> {
        self.manifest_count.fetch_add(1, Ordering::Relaxed);
        let at_fault = |problem: String| Ok(Arc::new(vec![Finding { digest: Some(digest.clone()), problem }]));
        let parsed: Parsed = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => return at_fault(format!("manifest is not valid JSON: {e}")),
        };
        let mut findings = Vec::new();
        if let Some(children) = parsed.manifests {
            if depth >= MAX_DEPTH {
                return at_fault(format!("indexes nest deeper than {MAX_DEPTH} levels"));
            }
            let results = futures::future::join_all(children.iter().map(|c| Box::pin(self.child(repo, c, depth + 1)))).await;
            for r in results {
                findings.extend(r?.iter().cloned());
            }
        } else if parsed.config.is_some() || parsed.layers.is_some() || parsed.fs_layers.is_some() {
            let schema1 = parsed.fs_layers.unwrap_or_default().into_iter().map(|l| Descriptor { digest: l.blob_sum, size: None });
            let blobs: Vec<Descriptor> = parsed.config.into_iter().chain(parsed.layers.unwrap_or_default()).chain(schema1).collect();
            let results = futures::future::join_all(blobs.iter().map(|b| self.blob(repo, b))).await;
            for r in results {
                findings.extend(r?.iter().cloned());
            }
        } else {
            return at_fault("manifest names neither child manifests nor a config and layers".into());
        }
        Ok(Arc::new(findings))
    }

    /// A blob fetched and hashed, once per repository.
    async fn blob(&self, repo: &str, desc: &Descriptor) -> Result<Findings, RegistryError> {
        let digest = match Digest::parse(&desc.digest) {
            Ok(d) => d,
            Err(e) => return Ok(Arc::new(vec![Finding { digest: None, problem: format!("unusable blob digest: {e}") }])),
        };
        let cell = Self::cell(&self.blobs, repo, &digest);
        cell.get_or_try_init(|| async {
            self.blob_count.fetch_add(1, Ordering::Relaxed);
            let fetched = {
                let _permit = self.permits.acquire().await.expect("semaphore open");
                self.client.fetch_blob_verified(repo, &digest).await
            };
            let findings = match fetched {
                Ok(size) => size_problem(&format!("blob {digest}"), desc.size, size)
                    .map(|problem| Finding { digest: Some(digest.clone()), problem })
                    .into_iter()
                    .collect(),
                Err(e) => finding(e, Some(digest.clone()))?,
            };
            Ok(Arc::new(findings))
        })
        .await
        .cloned()
    }
}

/// Verifies the given (repository, tag) pairs.
pub async fn verify_tags(client: &RegistryClient, tags: &[(String, String)]) -> Result<VerifyReport, RegistryError> {
    let walk = Walk::new(client);
    let per_tag = try_map_bounded(tags, client.concurrency(), |(repo, tag)| {
        let walk = &walk;
        async move {
            let findings = walk.tag(repo, tag).await?;
            Ok::<_, RegistryError>(findings.into_iter().map(|f| VerifyProblem {
                repository: repo.clone(),
                tag: tag.clone(),
                digest: f.digest,
                problem: f.problem,
            }))
        }
    })
    .await?;
    // A shared blob can be reached twice below one tag (an index's children sharing a layer).
    let problems: BTreeSet<VerifyProblem> = per_tag.into_iter().flatten().collect();
    let report = VerifyReport {
        repositories: tags.iter().map(|(r, _)| r).collect::<BTreeSet<_>>().len(),
        tags: tags.len(),
        manifests: walk.manifest_count.load(Ordering::Relaxed),
        blobs: walk.blob_count.load(Ordering::Relaxed),
        problems: problems.into_iter().collect(),
    };
    tracing::info!(
        repositories = report.repositories,
        tags = report.tags,
        manifests = report.manifests,
        blobs = report.blobs,
        problems = report.problems.len(),
        "verified"
    );
    Ok(report)
}

/// Verifies every tag of every repository in the catalog. A repository without tags (all
/// deleted) is fine; one whose tag list fails is a problem with an empty tag.
pub async fn verify_registry(client: &RegistryClient) -> Result<VerifyReport, RegistryError> {
    let repos = client.catalog().await?;
    let listed = try_map_bounded(&repos, client.concurrency(), |repo| async move {
        match client.tags(repo).await {
            Ok(tags) => Ok((repo, tags, None)),
            Err(RegistryError::RepositoryUnknown { .. }) => Ok((repo, Vec::new(), None)),
            Err(e) if e.is_content_problem() => Ok((repo, Vec::new(), Some(e.to_string()))),
            Err(e) => Err(e),
        }
    })
    .await?;
    let mut tags = Vec::new();
    let mut listing_problems = Vec::new();
    for (repo, repo_tags, problem) in listed {
        tags.extend(repo_tags.into_iter().map(|t| (repo.clone(), t)));
        if let Some(problem) = problem {
            listing_problems.push(VerifyProblem { repository: repo.clone(), tag: String::new(), digest: None, problem });
        }
    }
    let mut report = verify_tags(client, &tags).await?;
    report.repositories = repos.len();
    report.problems.extend(listing_problems);
    report.problems.sort();
    Ok(report)
}
