//! A snapshot read through the registry API (`plan --url`): a preview from outside, or for
//! storage drivers other than the filesystem. The API cannot list untagged manifests nor tell
//! push times, so by default an image's age is its config's `created` field (when it was
//! built: what `docker image ls` shows), said in the plan; [`Ages::Unknown`] skips those
//! requests and leaves every age-based rule keeping everything.
//!
//! Every repository's tags are read as one stream with at most `concurrency` requests in
//! flight, so a registry of many small repositories is read as fast as one large one.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::snapshot::{Content, Manifest, Repository, Snapshot, Tag, TimeSource, parse_manifest};
use crate::digest::Digest;
use crate::registry::{RegistryClient, RegistryError};

/// Where an API snapshot takes image ages from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Ages {
    /// The config's `created` field (one more request per tag, cached per config).
    #[default]
    Config,
    /// No ages: age-based rules keep everything.
    Unknown,
}

pub async fn read_api(client: &RegistryClient, ages: Ages) -> Result<Snapshot, RegistryError> {
    let times = match ages {
        Ages::Config => TimeSource::ConfigCreated,
        Ages::Unknown => TimeSource::Unknown,
    };
    let mut snap = Snapshot { source: client.url().to_string(), sees_untagged: false, times, ..Default::default() };
    let limit = client.concurrency();
    let names = client.catalog().await?;
    let listed: Vec<(String, Vec<String>)> = futures::stream::iter(names.into_iter().map(|name| async move {
        let tags = client.tags(&name).await?;
        Ok::<_, RegistryError>((name, tags))
    }))
    .buffer_unordered(limit)
    .try_collect()
    .await?;
    let created_cache = Mutex::new(HashMap::new());
    let work = listed.iter().flat_map(|(name, tags)| tags.iter().map(move |t| (name.as_str(), t.as_str())));
    let fetched: Vec<(&str, String, Manifest, Vec<Manifest>)> = futures::stream::iter(work.map(|(name, tag)| {
        let cache = &created_cache;
        async move { read_tag(client, name, tag, ages, cache).await.map(|(t, m, c)| (name, t, m, c)) }
    }))
    .buffer_unordered(limit)
    .try_collect()
    .await?;
    for (name, _) in &listed {
        snap.repositories.insert(name.clone(), Repository { name: name.clone(), ..Default::default() });
    }
    for (name, tag, manifest, children) in fetched {
        let repo = snap.repositories.get_mut(name).expect("listed above");
        repo.tags.insert(tag.clone(), Tag { name: tag, digest: manifest.digest.clone(), pushed: manifest.pushed });
        for m in std::iter::once(manifest).chain(children) {
            repo.manifests.insert(m.digest.clone(), m);
        }
    }
    Ok(snap)
}

async fn read_manifest(client: &RegistryClient, repo: &str, reference: &str) -> Result<Manifest, RegistryError> {
    let fetched = client.get_manifest(repo, reference).await?;
    let (media_type, content, subject) = parse_manifest(&fetched.body);
    let media_type = if fetched.media_type.is_empty() { media_type } else { fetched.media_type.clone() };
    Ok(Manifest { digest: fetched.digest, media_type, pushed: None, content, subject })
}

type CreatedCache = Mutex<HashMap<(String, Digest), Option<DateTime<Utc>>>>;

async fn read_tag(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    ages: Ages,
    cache: &CreatedCache,
) -> Result<(String, Manifest, Vec<Manifest>), RegistryError> {
    let mut manifest = read_manifest(client, repo, tag).await?;
    let mut children = Vec::new();
    for child in manifest.children().to_vec() {
        children.push(read_manifest(client, repo, &child.as_str()).await?);
    }
    if ages == Ages::Config {
        // An index's age is that of its first image's config.
        let config = match &manifest.content {
            Content::Image { config, .. } => Some(config.clone()),
            _ => children.iter().find_map(|c| match &c.content {
                Content::Image { config, .. } => Some(config.clone()),
                _ => None,
            }),
        };
        if let Some(config) = config {
            let key = (repo.to_string(), config);
            let known = cache.lock().expect("cache lock").get(&key).copied();
            manifest.pushed = match known {
                Some(created) => created,
                None => {
                    let c = created(client, repo, &key.1).await?;
                    cache.lock().expect("cache lock").insert(key, c);
                    c
                }
            };
        }
    }
    Ok((tag.to_string(), manifest, children))
}

async fn created(client: &RegistryClient, repo: &str, config: &Digest) -> Result<Option<DateTime<Utc>>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct Config {
        created: Option<DateTime<Utc>>,
    }
    let body = client.fetch_blob(repo, config).await?;
    Ok(serde_json::from_slice::<Config>(&body).ok().and_then(|c| c.created))
}
