//! A snapshot read through the registry API (`plan --url`): a preview from outside, or for
//! storage drivers other than the filesystem. The API cannot list untagged manifests nor tell
//! push times; with `age_from_config` an image's age is its config's `created` field.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::snapshot::{Content, Manifest, Repository, Snapshot, Tag, parse_manifest};
use crate::digest::Digest;
use crate::registry::{RegistryClient, RegistryError};

pub async fn read_api(client: &RegistryClient, age_from_config: bool) -> Result<Snapshot, RegistryError> {
    let mut snap = Snapshot { source: client.url().to_string(), sees_untagged: false, ..Default::default() };
    let limit = client.concurrency();
    for name in client.catalog().await? {
        let tags = client.tags(&name).await?;
        let fetched: Vec<(String, Manifest, Vec<Manifest>)> = futures::stream::iter(tags.into_iter().map(|tag| {
            let name = name.clone();
            async move { read_tag(client, &name, tag, age_from_config).await }
        }))
        .buffer_unordered(limit)
        .try_collect()
        .await?;
        let mut repo = Repository { name: name.clone(), ..Default::default() };
        for (tag, manifest, children) in fetched {
            repo.tags.insert(tag.clone(), Tag { name: tag, digest: manifest.digest.clone(), pushed: manifest.pushed });
            for m in std::iter::once(manifest).chain(children) {
                repo.manifests.insert(m.digest.clone(), m);
            }
        }
        snap.repositories.insert(name, repo);
    }
    Ok(snap)
}

async fn read_manifest(client: &RegistryClient, repo: &str, reference: &str) -> Result<(Manifest, usize), RegistryError> {
    let fetched = client.get_manifest(repo, reference).await?;
    let (media_type, content, subject) = parse_manifest(&fetched.body);
    let media_type = if fetched.media_type.is_empty() { media_type } else { fetched.media_type.clone() };
    Ok((Manifest { digest: fetched.digest, media_type, pushed: None, content, subject }, fetched.body.len()))
}

async fn read_tag(
    client: &RegistryClient,
    repo: &str,
    tag: String,
    age_from_config: bool,
) -> Result<(String, Manifest, Vec<Manifest>), RegistryError> {
    let (mut manifest, _) = read_manifest(client, repo, &tag).await?;
    let mut children = Vec::new();
    for child in manifest.children().to_vec() {
        children.push(read_manifest(client, repo, child.as_str()).await?.0);
    }
    if age_from_config {
        let config = match &manifest.content {
            Content::Image { config, .. } => Some(config.clone()),
            _ => children.iter().find_map(|c| match &c.content {
                Content::Image { config, .. } => Some(config.clone()),
                _ => None,
            }),
        };
        if let Some(config) = config {
            manifest.pushed = created(client, repo, &config).await?;
        }
    }
    Ok((tag, manifest, children))
}

async fn created(client: &RegistryClient, repo: &str, config: &Digest) -> Result<Option<DateTime<Utc>>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Config {
        created: Option<DateTime<Utc>>,
    }
    let body = client.fetch_blob(repo, config).await?;
    Ok(serde_json::from_slice::<Config>(&body).ok().and_then(|c| c.created))
}
