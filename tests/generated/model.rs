//! A generated registry: repositories with nested names, Docker and OCI images, indexes and
//! manifest lists (children shared or also tagged), tag history, untagged manifests of every
//! age, cosign signature tags with and without their subject, OCI `subject` referrers, layers
//! and whole images shared across repositories. Everything is derived from one seed, so a
//! failing case is rerun with `REGSWEEP_GEN_SEED=<n>`.
//!
//! The model is the truth the invariant checker works from; the snapshot the planner sees is
//! built from it (in memory), written from it (on disk), or pushed from it (to a registry).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, RngCore};
use regsweep::digest::Digest;
use regsweep::media;
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Image {
        config: Digest,
        layers: Vec<Digest>,
    },
    Index {
        children: Vec<Digest>,
    },
    /// A manifest the snapshot cannot read (in-memory cases only).
    Unknown,
}

/// What the generator made a manifest for; only for dumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Image,
    Index,
    Child,
    Signature,
    Referrer,
    History,
    Untagged,
    Unreadable,
}

#[derive(Clone, Debug)]
pub struct Mf {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
    pub kind: Kind,
    pub subject: Option<Digest>,
    /// When it was first pushed into this repository (its revision link's mtime).
    pub pushed: DateTime<Utc>,
    pub role: Role,
}

impl Mf {
    pub fn children(&self) -> &[Digest] {
        match &self.kind {
            Kind::Index { children } => children,
            _ => &[],
        }
    }

    /// Blobs (not manifests) this manifest needs.
    pub fn blobs(&self) -> Vec<Digest> {
        match &self.kind {
            Kind::Image { config, layers } => std::iter::once(config.clone()).chain(layers.iter().cloned()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn is_index(&self) -> bool {
        matches!(self.kind, Kind::Index { .. })
    }
}

#[derive(Clone, Debug)]
pub struct TagM {
    pub name: String,
    pub digest: Digest,
    /// Its `current/link`'s mtime.
    pub pushed: DateTime<Utc>,
}

#[derive(Clone, Debug, Default)]
pub struct RepoM {
    pub name: String,
    pub manifests: BTreeMap<Digest, Mf>,
    pub tags: BTreeMap<String, TagM>,
    /// Every tag push in order; a tag's last push is its current digest, the earlier ones are
    /// its history (`tags/<tag>/index/`).
    pub tag_pushes: Vec<(String, Digest)>,
}

impl RepoM {
    /// Tags pointing at `d`.
    pub fn tags_on(&self, d: &Digest) -> Vec<&str> {
        self.tags.values().filter(|t| &t.digest == d).map(|t| t.name.as_str()).collect()
    }

    pub fn has_unknown(&self) -> bool {
        self.manifests.values().any(|m| m.kind == Kind::Unknown)
    }
}

#[derive(Clone, Debug)]
pub struct Model {
    pub seed: u64,
    pub now: DateTime<Utc>,
    pub repos: BTreeMap<String, RepoM>,
    /// Every blob's bytes: configs, layers and manifest bodies.
    pub blobs: BTreeMap<Digest, Vec<u8>>,
}

/// How big a registry to make.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub max_repos: usize,
    pub max_images: usize,
    /// Upper bound on tags over the whole registry (the maintenance cases stay small).
    pub max_tags: usize,
    /// Allow manifests the snapshot cannot read (only in memory: the registry refuses them).
    pub unknown: bool,
}

pub const PLAN_SIZE: Size = Size { max_repos: 7, max_images: 7, max_tags: 60, unknown: true };
pub const LIVE_SIZE: Size = Size { max_repos: 4, max_images: 4, max_tags: 18, unknown: false };

pub const REPO_NAMES: &[&str] = &[
    "app",
    "team-a",
    "team-a/app",
    "team-a/web",
    "team-a/api/v2",
    "team-b/worker",
    "team-b/app",
    "x/y",
    "x/y/z",
    "base/alpine",
    "legacy/tool",
    "tools",
];

const TAG_NAMES: &[&str] = &[
    "latest",
    "stable",
    "dev",
    "v1.0.0",
    "v1.1.0",
    "v2.0.0",
    "v2.1",
    "release-1",
    "release-12",
    "release-3-rc",
    "build-101",
    "build-102",
    "build-103",
    "build-7",
    "pr-1",
    "pr-22",
    "main-abc",
    "main-def",
    "nightly",
    "1.0",
    "2024.1",
];

/// Ages a push can have. Whole seconds; a few are exactly the durations the policies use, so
/// the boundaries of keepWithin and untaggedGracePeriod are exercised.
pub const DURATION_MENU: &[(&str, i64)] = &[
    ("90m", 90 * 60),
    ("2h", 2 * 3600),
    ("12h", 12 * 3600),
    ("24h", 24 * 3600),
    ("1d", 24 * 3600),
    ("7d", 7 * 86400),
    ("30d", 30 * 86400),
];

fn random_age(rng: &mut StdRng) -> Duration {
    let secs = match rng.random_range(0..100) {
        0..45 => rng.random_range(0..120 * 86400),
        45..70 => rng.random_range(0..48 * 3600),
        70..85 => DURATION_MENU.choose(rng).unwrap().1,
        _ => rng.random_range(0..40 * 86400),
    };
    Duration::seconds(secs)
}

fn random_bytes(rng: &mut StdRng, min: usize, max: usize) -> Vec<u8> {
    let mut v = vec![0u8; rng.random_range(min..=max)];
    rng.fill_bytes(&mut v);
    v
}

fn random_digest(rng: &mut StdRng) -> Digest {
    Digest::of(&random_bytes(rng, 16, 16))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Docker,
    Oci,
}

struct Gen<'a> {
    rng: &'a mut StdRng,
    size: Size,
    model: Model,
    /// Layers that several repositories share (a base image).
    base_layers: Vec<Digest>,
    tag_count: usize,
}

impl Gen<'_> {
    fn blob(&mut self, bytes: Vec<u8>) -> Digest {
        let d = Digest::of(&bytes);
        self.model.blobs.insert(d.clone(), bytes);
        d
    }

    fn time(&mut self) -> DateTime<Utc> {
        self.model.now - random_age(self.rng)
    }

    fn image_body(
        &mut self,
        format: Format,
        subject: Option<(&Mf, Option<&str>)>,
        cosign_payload: Option<&Digest>,
    ) -> (String, Kind, Vec<u8>) {
        let (manifest_type, config_type, layer_type) = match format {
            Format::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG, media::DOCKER_LAYER),
            Format::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG, media::OCI_LAYER),
        };
        let mut layers: Vec<(Digest, usize, &str)> = Vec::new();
        if let Some(subject) = cosign_payload {
            let payload = serde_json::to_vec(&json!({
                "critical": {"image": {"docker-manifest-digest": subject.to_string()}, "type": "cosign container image signature"},
                "optional": {"nonce": self.rng.random::<u64>()},
            }))
            .unwrap();
            let n = payload.len();
            layers.push((self.blob(payload), n, "application/vnd.dev.cosign.simplesigning.v1+json"));
        } else {
            if !self.base_layers.is_empty() && self.rng.random_bool(0.4) {
                let d = self.base_layers.choose(self.rng).unwrap().clone();
                let n = self.model.blobs[&d].len();
                layers.push((d, n, layer_type));
            }
            for _ in 0..self.rng.random_range(1..=2) {
                let bytes = random_bytes(self.rng, 32, 300);
                let n = bytes.len();
                layers.push((self.blob(bytes), n, layer_type));
            }
        }
        let (config_bytes, config_type) = if subject.is_some() && self.rng.random_bool(0.5) {
            // The OCI empty config of artifacts: one blob shared by every such referrer.
            (b"{}".to_vec(), "application/vnd.oci.empty.v1+json")
        } else {
            let diff_ids: Vec<String> = layers.iter().map(|(d, _, _)| d.to_string()).collect();
            let cfg = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "config": {"Labels": {"nonce": self.rng.random::<u64>().to_string()}}});
            (serde_json::to_vec(&cfg).unwrap(), config_type)
        };
        let config_len = config_bytes.len();
        let config = self.blob(config_bytes);
        let mut body = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "size": config_len, "digest": config.to_string()},
            "layers": layers.iter().map(|(d, s, t)| json!({"mediaType": t, "size": s, "digest": d.to_string()})).collect::<Vec<_>>(),
        });
        if let Some((subject, artifact_type)) = subject {
            body["subject"] = json!({"mediaType": subject.media_type, "size": subject.body.len(), "digest": subject.digest.to_string()});
            if let Some(a) = artifact_type {
                body["artifactType"] = json!(a);
            }
        }
        let body = serde_json::to_vec(&body).unwrap();
        (manifest_type.to_string(), Kind::Image { config, layers: layers.into_iter().map(|(d, _, _)| d).collect() }, body)
    }

    /// Adds a manifest, `made` being its (media type, content, body).
    fn add(
        &mut self,
        repo: &mut RepoM,
        made: (String, Kind, Vec<u8>),
        subject: Option<Digest>,
        pushed: DateTime<Utc>,
        role: Role,
    ) -> Digest {
        let (media_type, kind, body) = made;
        let digest = self.blob(body.clone());
        repo.manifests.entry(digest.clone()).or_insert(Mf { digest: digest.clone(), media_type, body, kind, subject, pushed, role });
        digest
    }

    fn image(&mut self, repo: &mut RepoM, format: Format, pushed: DateTime<Utc>, role: Role) -> Digest {
        let (mt, kind, body) = self.image_body(format, None, None);
        self.add(repo, (mt, kind, body), None, pushed, role)
    }

    fn index(&mut self, repo: &mut RepoM, format: Format, children: &[Digest], pushed: DateTime<Utc>) -> Digest {
        let media_type = match format {
            Format::Docker => media::DOCKER_MANIFEST_LIST,
            Format::Oci => media::OCI_INDEX,
        };
        let arches = ["amd64", "arm64", "s390x", "ppc64le", "riscv64"];
        let descriptors: Vec<_> = children
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let m = &repo.manifests[c];
                json!({"mediaType": m.media_type, "size": m.body.len(), "digest": c.to_string(),
                    "platform": {"architecture": arches[i % arches.len()], "os": "linux"}})
            })
            .collect();
        let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media_type, "manifests": descriptors})).unwrap();
        self.add(repo, (media_type.to_string(), Kind::Index { children: children.to_vec() }, body), None, pushed, Role::Index)
    }

    /// A tag push; a tag's push times are kept distinct within a repository, so "the newest N"
    /// has one answer.
    fn tag(&mut self, repo: &mut RepoM, name: &str, digest: &Digest, pushed: DateTime<Utc>) {
        if self.tag_count >= self.size.max_tags && !repo.tags.contains_key(name) {
            return;
        }
        let mut pushed = pushed;
        while repo.tags.values().any(|t| t.name != name && t.pushed == pushed) {
            pushed -= Duration::seconds(1);
        }
        if !repo.tags.contains_key(name) {
            self.tag_count += 1;
        }
        repo.tag_pushes.push((name.to_string(), digest.clone()));
        repo.tags.insert(name.to_string(), TagM { name: name.to_string(), digest: digest.clone(), pushed });
    }

    fn fresh_tag(&mut self, repo: &RepoM) -> Option<String> {
        let free: Vec<&&str> = TAG_NAMES.iter().filter(|t| !repo.tags.contains_key(**t)).collect();
        free.choose(self.rng).map(|t| t.to_string())
    }

    fn repo(&mut self, name: &str, others: &[RepoM]) -> RepoM {
        let mut repo = RepoM { name: name.to_string(), ..Default::default() };
        let formats = [Format::Docker, Format::Oci];
        let n_images = self.rng.random_range(1..=self.size.max_images);
        let mut images = Vec::new();
        for _ in 0..n_images {
            let format = *formats.choose(self.rng).unwrap();
            let pushed = self.time();
            // Sometimes the very image another repository has (same digest, own push time).
            let copied = others.iter().flat_map(|r| r.manifests.values()).filter(|m| m.role == Role::Image).collect::<Vec<_>>();
            let d = if !copied.is_empty() && self.rng.random_bool(0.15) {
                let m = (*copied.choose(self.rng).unwrap()).clone();
                let d = m.digest.clone();
                repo.manifests.insert(d.clone(), Mf { pushed, role: Role::Image, ..m });
                d
            } else {
                self.image(&mut repo, format, pushed, Role::Image)
            };
            images.push(d.clone());
            // Tagged once, twice (a shared digest), or not at all.
            let n_tags = *[0, 1, 1, 1, 1, 2].choose(self.rng).unwrap();
            for _ in 0..n_tags {
                if let Some(t) = self.fresh_tag(&repo) {
                    let at = pushed + Duration::seconds(self.rng.random_range(0..3 * 86400)).min(self.model.now - pushed);
                    self.tag(&mut repo, &t, &d, at);
                }
            }
            if n_tags == 0 {
                repo.manifests.get_mut(&d).unwrap().role = Role::Untagged;
            }
        }
        // Indexes and manifest lists over fresh (untagged) platform images and existing ones.
        for _ in 0..self.rng.random_range(0..=2) {
            let format = *formats.choose(self.rng).unwrap();
            let pushed = self.time();
            let mut children = Vec::new();
            for _ in 0..self.rng.random_range(1..=3) {
                let reuse = images.iter().filter(|d| repo.manifests[*d].media_type == image_type(format)).cloned().collect::<Vec<_>>();
                if !reuse.is_empty() && self.rng.random_bool(0.3) {
                    let d = reuse.choose(self.rng).unwrap().clone();
                    if !children.contains(&d) {
                        children.push(d);
                    }
                } else {
                    let child_pushed = pushed - Duration::seconds(self.rng.random_range(0..120));
                    children.push(self.image(&mut repo, format, child_pushed, Role::Child));
                }
            }
            // An index sharing a child with an earlier index.
            let earlier: Vec<Digest> = repo
                .manifests
                .values()
                .filter(|m| m.role == Role::Child && m.media_type == image_type(format) && !children.contains(&m.digest))
                .map(|m| m.digest.clone())
                .collect();
            if !earlier.is_empty() && self.rng.random_bool(0.3) {
                children.push(earlier.choose(self.rng).unwrap().clone());
            }
            let idx = self.index(&mut repo, format, &children, pushed);
            if self.rng.random_bool(0.85)
                && let Some(t) = self.fresh_tag(&repo)
            {
                self.tag(&mut repo, &t, &idx, pushed);
            } else {
                repo.manifests.get_mut(&idx).unwrap().role = Role::Untagged;
            }
            // A child that is also tagged on its own.
            if self.rng.random_bool(0.2)
                && let Some(t) = self.fresh_tag(&repo)
            {
                let c = children.choose(self.rng).unwrap().clone();
                self.tag(&mut repo, &t, &c, pushed);
            }
            images.push(idx);
        }
        // Tag history: a tag re-pushed, its old digest left behind untagged.
        for _ in 0..self.rng.random_range(0..=2) {
            let current: Vec<TagM> = repo.tags.values().filter(|t| !repo.manifests[&t.digest].is_index()).cloned().collect();
            let Some(tag) = current.choose(self.rng).cloned() else { break };
            let format = if repo.manifests[&tag.digest].media_type == media::DOCKER_MANIFEST { Format::Docker } else { Format::Oci };
            let older = tag.pushed - Duration::seconds(self.rng.random_range(3600..60 * 86400));
            let old = self.image(&mut repo, format, older, Role::History);
            // The old push comes first; the current one is re-applied after it.
            let pos = repo.tag_pushes.iter().position(|(t, _)| t == &tag.name).unwrap();
            repo.tag_pushes.insert(pos, (tag.name.clone(), old));
        }
        // Cosign signatures, attestations and SBOMs, by tag; some of a subject not here.
        let subjects: Vec<Digest> = repo
            .manifests
            .values()
            .filter(|m| matches!(m.role, Role::Image | Role::Index | Role::Untagged | Role::History | Role::Child))
            .map(|m| m.digest.clone())
            .collect();
        for _ in 0..self.rng.random_range(0..=2) {
            // A signature of a signature or SBOM (cosign signs attestations too).
            let signed: Vec<Digest> = repo.manifests.values().filter(|m| m.role == Role::Signature).map(|m| m.digest.clone()).collect();
            let subject = if !signed.is_empty() && self.rng.random_bool(0.15) {
                signed.choose(self.rng).unwrap().clone()
            } else if self.rng.random_bool(0.2) || subjects.is_empty() {
                // Absent: another repository's manifest, or one that was never pushed.
                others
                    .iter()
                    .flat_map(|r| r.manifests.keys())
                    .cloned()
                    .collect::<Vec<_>>()
                    .choose(self.rng)
                    .cloned()
                    .unwrap_or_else(|| random_digest(self.rng))
            } else {
                subjects.choose(self.rng).unwrap().clone()
            };
            let suffix = *["sig", "att", "sbom"].choose(self.rng).unwrap();
            let tag = format!("sha256-{}.{suffix}", subject.hex());
            if repo.tags.contains_key(&tag) {
                continue;
            }
            let (mt, kind, body) = self.image_body(Format::Oci, None, Some(&subject));
            let pushed = match repo.manifests.get(&subject) {
                Some(s) => s.pushed + Duration::seconds(self.rng.random_range(1..600)),
                None => self.time(),
            };
            let pushed = pushed.min(self.model.now);
            let d = self.add(&mut repo, (mt, kind, body), None, pushed, Role::Signature);
            self.tag(&mut repo, &tag, &d, pushed);
            if !repo.tags.contains_key(&tag) {
                // Over the tag budget: do not leave an untagged signature behind.
                repo.manifests.remove(&d);
            }
        }
        // OCI referrers (subject), mostly untagged; some of a subject not in the repository.
        for _ in 0..self.rng.random_range(0..=2) {
            let dangling;
            let subject = if self.rng.random_bool(0.15) || subjects.is_empty() {
                let fake_body = random_bytes(self.rng, 40, 40);
                dangling = Mf {
                    digest: Digest::of(&fake_body),
                    media_type: media::OCI_MANIFEST.into(),
                    body: fake_body,
                    kind: Kind::Unknown,
                    subject: None,
                    pushed: self.model.now,
                    role: Role::Image,
                };
                &dangling
            } else {
                let d = subjects.choose(self.rng).unwrap();
                &repo.manifests[d].clone()
            };
            let artifact = ["application/spdx+json", "application/vnd.example.sbom.v1", "application/vnd.dev.cosign.artifact.sig.v1+json"]
                .choose(self.rng)
                .copied();
            let (mt, kind, body) = self.image_body(Format::Oci, Some((subject, artifact)), None);
            let pushed = self.time();
            let d = self.add(&mut repo, (mt, kind, body), Some(subject.digest.clone()), pushed, Role::Referrer);
            if self.rng.random_bool(0.15)
                && let Some(t) = self.fresh_tag(&repo)
            {
                self.tag(&mut repo, &t, &d, pushed);
            }
        }
        // A manifest the snapshot cannot read.
        if self.size.unknown && self.rng.random_bool(0.07) {
            let body = format!("{{\"schemaVersion\":1,\"name\":\"{}\",\"fsLayers\":[]}}", self.rng.random::<u64>()).into_bytes();
            let pushed = self.time();
            let d = self.add(&mut repo, (String::new(), Kind::Unknown, body), None, pushed, Role::Unreadable);
            if self.rng.random_bool(0.3)
                && let Some(t) = self.fresh_tag(&repo)
            {
                self.tag(&mut repo, &t, &d, pushed);
            }
        }
        // Tag push times never precede their manifest's first push.
        for t in repo.tags.values_mut() {
            let m = &repo.manifests[&t.digest];
            if t.pushed < m.pushed {
                t.pushed = m.pushed;
            }
        }
        dedupe_tag_times(&mut repo);
        repo
    }
}

fn image_type(format: Format) -> &'static str {
    match format {
        Format::Docker => media::DOCKER_MANIFEST,
        Format::Oci => media::OCI_MANIFEST,
    }
}

/// Distinct tag push times within a repository (a colliding tag moves a second earlier), so
/// "the newest N" has one answer; the checker still tolerates ties.
fn dedupe_tag_times(repo: &mut RepoM) {
    let mut seen = BTreeSet::new();
    let names: Vec<String> = repo.tags.keys().cloned().collect();
    for n in names {
        let t = repo.tags.get_mut(&n).unwrap();
        while !seen.insert(t.pushed) {
            t.pushed -= Duration::seconds(1);
        }
    }
}

/// The registry for one seed. `now` is when the plan is made (in memory: a fixed instant;
/// against the real registry: the wall clock, whole seconds).
pub fn generate(rng: &mut StdRng, seed: u64, size: Size, now: DateTime<Utc>) -> Model {
    let model = Model { seed, now, repos: BTreeMap::new(), blobs: BTreeMap::new() };
    let mut g = Gen { rng, size, model, base_layers: Vec::new(), tag_count: 0 };
    for _ in 0..g.rng.random_range(1..=3) {
        let bytes = random_bytes(g.rng, 64, 400);
        let d = g.blob(bytes);
        g.base_layers.push(d);
    }
    let mut names: Vec<&str> = REPO_NAMES.to_vec();
    names.shuffle(g.rng);
    // Often a repository and one nested in it (`team-a` and `team-a/app`): emptying the
    // parent must not touch the child.
    if g.rng.random_bool(0.35) {
        let (parent, child) = *[("team-a", "team-a/app"), ("x/y", "x/y/z"), ("team-a", "team-a/api/v2")].choose(g.rng).unwrap();
        names.retain(|n| *n != parent && *n != child);
        names.insert(0, child);
        names.insert(0, parent);
    }
    let n = g.rng.random_range(1..=size.max_repos);
    let mut done: Vec<RepoM> = Vec::new();
    for name in names.into_iter().take(n) {
        let repo = g.repo(name, &done);
        done.push(repo);
    }
    for r in done {
        g.model.repos.insert(r.name.clone(), r);
    }
    // Blobs nothing references would be left by GC regardless; keep only the referenced ones
    // (and the manifests themselves).
    let mut used: BTreeSet<Digest> = BTreeSet::new();
    for r in g.model.repos.values() {
        for m in r.manifests.values() {
            used.insert(m.digest.clone());
            used.extend(m.blobs());
        }
    }
    g.model.blobs.retain(|d, _| used.contains(d));
    g.model
}

impl Model {
    pub fn tag_count(&self) -> usize {
        self.repos.values().map(|r| r.tags.len()).sum()
    }

    /// A short human dump for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let age = |t: DateTime<Utc>| super::fmt_age(self.now - t);
        for r in self.repos.values() {
            let _ = writeln!(s, "  repo {}", r.name);
            for m in r.manifests.values() {
                let tags = r.tags_on(&m.digest);
                let _ = write!(s, "    {} {:?} {} age {}", m.digest.short(), m.role, short_type(&m.media_type), age(m.pushed));
                if !m.children().is_empty() {
                    let _ = write!(s, " children [{}]", m.children().iter().map(|c| c.short().to_string()).collect::<Vec<_>>().join(" "));
                }
                if let Some(sub) = &m.subject {
                    let _ = write!(s, " subject {}{}", sub.short(), if r.manifests.contains_key(sub) { "" } else { " (absent)" });
                }
                if !tags.is_empty() {
                    let _ =
                        write!(s, " tags {}", tags.iter().map(|t| format!("{t}@{}", age(r.tags[*t].pushed))).collect::<Vec<_>>().join(" "));
                }
                s.push('\n');
            }
        }
        s
    }
}

pub fn short_type(mt: &str) -> &'static str {
    match mt {
        media::DOCKER_MANIFEST => "docker",
        media::DOCKER_MANIFEST_LIST => "docker-list",
        media::OCI_MANIFEST => "oci",
        media::OCI_INDEX => "oci-index",
        _ => "unknown",
    }
}
