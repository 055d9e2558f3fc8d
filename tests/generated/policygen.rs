//! Random policies (the YAML document users write) and protected references, aimed at the
//! generated registry so that rules and references actually hit something.

use std::fmt::Write as _;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use regsweep::digest::Digest;

use super::matching::{repo_glob, tag_pattern};
use super::model::{DURATION_MENU, Model};

#[derive(Clone, Debug, Default)]
pub struct GenRule {
    pub repositories: Vec<String>,
    pub exclude: Vec<String>,
    pub keep_latest: Option<i64>,
    /// As written, and in seconds.
    pub keep_within: Option<(String, i64)>,
    pub keep_tags: Vec<String>,
    pub delete_tags: Option<Vec<String>>,
    /// None: not written (the default, Keep).
    pub untagged_delete: Option<bool>,
    pub grace: Option<(String, i64)>,
}

impl GenRule {
    pub fn matches(&self, repo: &str) -> bool {
        self.repositories.iter().any(|g| repo_glob(g, repo)) && !self.exclude.iter().any(|g| repo_glob(g, repo))
    }
    pub fn retains(&self) -> bool {
        self.keep_latest.is_some() || self.keep_within.is_some()
    }
    pub fn untagged_delete(&self) -> bool {
        self.untagged_delete == Some(true)
    }
    /// README: the grace period defaults to 24h (the spec's doc comment and `DEFAULT_GRACE`).
    pub fn grace_secs(&self) -> i64 {
        self.grace.as_ref().map_or(24 * 3600, |g| g.1)
    }
}

/// A protected reference, kept structured for the checker.
#[derive(Clone, Debug)]
pub struct GenRef {
    pub text: String,
    /// `protected` (the policy's own list) or `in use` (`--protect`, workloads).
    pub label: &'static str,
    pub host: Option<String>,
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Clone, Debug, Default)]
pub struct GenPolicy {
    pub hosts: Vec<String>,
    pub rules: Vec<GenRule>,
    pub references: Vec<GenRef>,
}

impl GenPolicy {
    /// README: per repository, the first rule that matches wins.
    pub fn rule_for(&self, repo: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(repo))
    }

    pub fn yaml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let list = |v: &[String]| format!("[{}]", v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "));
        let mut y = String::from(
            "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata:\n  name: generated\n  namespace: registry\nspec:\n  registry:\n",
        );
        let _ = writeln!(y, "    hosts: {}", list(&self.hosts));
        y.push_str("  rules:\n");
        for r in &self.rules {
            let _ = writeln!(y, "    - repositories: {}", list(&r.repositories));
            if !r.exclude.is_empty() {
                let _ = writeln!(y, "      exclude: {}", list(&r.exclude));
            }
            if let Some(n) = r.keep_latest {
                let _ = writeln!(y, "      keepLatest: {n}");
            }
            if let Some((w, _)) = &r.keep_within {
                let _ = writeln!(y, "      keepWithin: {w}");
            }
            if !r.keep_tags.is_empty() {
                let _ = writeln!(y, "      keepTags: {}", list(&r.keep_tags));
            }
            if let Some(d) = &r.delete_tags {
                let _ = writeln!(y, "      deleteTags: {}", list(d));
            }
            match r.untagged_delete {
                Some(true) => y.push_str("      untagged: Delete\n"),
                Some(false) => y.push_str("      untagged: Keep\n"),
                None => {}
            }
            if let Some((g, _)) = &r.grace {
                let _ = writeln!(y, "      untaggedGracePeriod: {g}");
            }
        }
        let refs: Vec<String> = self.references.iter().map(|r| r.text.clone()).collect();
        if !refs.is_empty() || !self.hosts.is_empty() {
            y.push_str("  protection:\n    inUse: true\n");
            let _ = writeln!(y, "    references: {}", list(&refs));
        }
        y
    }
}

const KEEP_TAGS: &[&str] =
    &["latest", "stable", "v*", "regex:release-[0-9]+", "release-?", "regex:v[0-9]+\\.[0-9]+\\.[0-9]+", "1.*", "2024.?", "nightly"];
const DELETE_TAGS: &[&str] = &["*", "*", "build-*", "pr-*", "regex:(dev|main)-.*", "v*", "release-*", "nightly", "*-rc", "regex:[0-9.]+"];
const HOSTS: &[&[&str]] = &[&[], &["registry.example.com"], &["registry.example.com"], &["registry.example.com", "reg.svc:5000"]];

/// A repository glob aimed at one of the generated names.
fn repo_glob_for(rng: &mut StdRng, names: &[&str]) -> String {
    let name = *names.choose(rng).unwrap();
    let segs: Vec<&str> = name.split('/').collect();
    match rng.random_range(0..12) {
        0 => "**".into(),
        1 | 2 => name.to_string(),
        3 if segs.len() >= 2 => format!("{}/*", segs[0]),
        4 if segs.len() >= 2 => format!("{}/**", segs[0]),
        5 if segs.len() == 1 => "*".into(),
        6 => format!("**/{}", segs[segs.len() - 1]),
        7 if segs.len() >= 3 => format!("{}/**/{}", segs[0], segs[segs.len() - 1]),
        8 => {
            // One character made a `?`.
            let mut chars: Vec<char> = name.chars().collect();
            let i = rng.random_range(0..chars.len());
            if chars[i] != '/' {
                chars[i] = '?';
            }
            chars.into_iter().collect()
        }
        9 => "nothing/*".into(),
        10 if segs.len() >= 2 => format!("{}/*{}", segs[0], &segs[1][segs[1].len() - 1..]),
        _ => name.to_string(),
    }
}

fn duration(rng: &mut StdRng) -> (String, i64) {
    let (s, secs) = DURATION_MENU.choose(rng).unwrap();
    (s.to_string(), *secs)
}

fn rule(rng: &mut StdRng, names: &[&str], invalid: bool) -> GenRule {
    let mut r = GenRule::default();
    for _ in 0..rng.random_range(1..=2) {
        let g = repo_glob_for(rng, names);
        if !r.repositories.contains(&g) {
            r.repositories.push(g);
        }
    }
    if rng.random_bool(0.3) {
        let g = repo_glob_for(rng, names);
        if g != "**" {
            r.exclude.push(g);
        }
    }
    r.keep_latest = match rng.random_range(0..10) {
        0..3 => None,
        3 => Some(0),
        _ => Some(rng.random_range(0..=4)),
    };
    r.keep_within = rng.random_bool(0.45).then(|| duration(rng));
    for _ in 0..rng.random_range(0..=2) {
        let t = KEEP_TAGS.choose(rng).unwrap().to_string();
        if !r.keep_tags.contains(&t) {
            r.keep_tags.push(t);
        }
    }
    if rng.random_bool(0.45) {
        let mut list = Vec::new();
        for _ in 0..rng.random_range(1..=2) {
            let t = DELETE_TAGS.choose(rng).unwrap().to_string();
            if !list.contains(&t) {
                list.push(t);
            }
        }
        r.delete_tags = Some(list);
    }
    r.untagged_delete = match rng.random_range(0..10) {
        0..3 => None,
        3..5 => Some(false),
        _ => Some(true),
    };
    if rng.random_bool(0.6) {
        r.grace = Some(match rng.random_range(0..8) {
            0 => ("0s".into(), 0),
            1 => ("1m".into(), 60),
            _ => duration(rng),
        });
    }
    if invalid {
        // Something the validation must refuse.
        match rng.random_range(0..4) {
            0 => r.keep_latest = Some(-1),
            1 => r.keep_within = Some(("soon".into(), 0)),
            2 => r.delete_tags = Some(Vec::new()),
            _ => r.exclude = r.repositories.clone(),
        }
    }
    r
}

/// A policy's rules and hosts; about one in twenty is invalid on purpose, and the order of
/// rules is random enough that some are shadowed (both count as rejections by `compile`).
pub fn policy(rng: &mut StdRng, model: &Model) -> GenPolicy {
    let names: Vec<&str> = model.repos.keys().map(String::as_str).collect();
    let mut p = GenPolicy { hosts: HOSTS.choose(rng).unwrap().iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let n = rng.random_range(1..=3);
    let invalid_at = rng.random_bool(0.05).then(|| rng.random_range(0..n));
    for i in 0..n {
        p.rules.push(rule(rng, &names, invalid_at == Some(i)));
    }
    // A catch-all rule goes last, mostly: before others it shadows them.
    if rng.random_bool(0.9) {
        p.rules.sort_by_key(|r| r.repositories.iter().any(|g| g == "**") && r.exclude.is_empty());
    }
    p
}

/// Protected references: by tag, tag glob, repository glob, digest, tag and digest, a bare
/// repository, cosign tags (exactly and by glob), other registries, and names that do not
/// exist. `policy_level` ones must name this registry (validation refuses the others).
pub fn references(rng: &mut StdRng, model: &Model, hosts: &[String], label: &'static str, count: usize) -> Vec<GenRef> {
    let mut out = Vec::new();
    let repos: Vec<&super::model::RepoM> = model.repos.values().collect();
    for _ in 0..count {
        let repo = *repos.choose(rng).unwrap();
        let tags: Vec<&str> = repo.tags.keys().map(String::as_str).collect();
        let cosign: Vec<&str> = tags.iter().copied().filter(|t| super::matching::cosign_subject(t).is_some()).collect();
        let digests: Vec<&Digest> = repo.manifests.keys().collect();
        let mut host: Option<String> = match (hosts.first(), rng.random_range(0..6)) {
            (Some(h), 0 | 1) => Some(h.clone()),
            (Some(h), 2) if !h.contains(':') => Some(format!("{h}:443")),
            (None, 0) => Some("registry.example.com".into()),
            _ => None,
        };
        let mut repo_text = repo.name.clone();
        let (mut tag, mut digest): (Option<String>, Option<Digest>) = (None, None);
        match rng.random_range(0..14) {
            0..3 if !tags.is_empty() => tag = Some(tags.choose(rng).unwrap().to_string()),
            3 => tag = Some(["v*", "build-*", "*", "release-*", "pr-?"].choose(rng).unwrap().to_string()),
            4 if !tags.is_empty() => {
                let segs: Vec<&str> = repo.name.split('/').collect();
                repo_text = if segs.len() >= 2 { format!("{}/*", segs[0]) } else { "*".into() };
                tag = Some(tags.choose(rng).unwrap().to_string());
            }
            5 | 6 => digest = Some((*digests.choose(rng).unwrap()).clone()),
            7 if !tags.is_empty() => {
                tag = Some(tags.choose(rng).unwrap().to_string());
                digest = Some((*digests.choose(rng).unwrap()).clone());
            }
            8 => {}
            9 | 10 if !cosign.is_empty() => tag = Some(cosign.choose(rng).unwrap().to_string()),
            11 if !cosign.is_empty() => tag = Some(["sha256-*", "*.sig", "sha256-*.att"].choose(rng).unwrap().to_string()),
            12 if label == "in use" => {
                // Another registry: protects nothing here.
                host = Some(if hosts.iter().any(|h| h == "reg.svc:5000") { "reg.svc:5001".into() } else { "docker.io".into() });
                if hosts.is_empty() {
                    // With no hosts configured any host names this registry (checked as such).
                    host = Some("docker.io".into());
                }
                tag = tags.choose(rng).map(|t| t.to_string());
            }
            _ => tag = Some("no-such-tag".into()),
        }
        let mut text = String::new();
        if let Some(h) = &host {
            let _ = write!(text, "{h}/");
        }
        text.push_str(&repo_text);
        if let Some(t) = &tag {
            let _ = write!(text, ":{t}");
        }
        if let Some(d) = &digest {
            let _ = write!(text, "@{d}");
        }
        out.push(GenRef { text, label, host, repo: repo_text, tag, digest });
    }
    out
}

impl GenRef {
    fn applies(&self, hosts: &[String], repo: &str) -> bool {
        super::matching::names_registry(self.host.as_deref(), hosts) && repo_glob(&self.repo, repo)
    }

    /// README: a protected reference names tags by tag (or glob), manifests by digest; a
    /// reference with both names the digest (src/policy/reference.rs: "the digest wins");
    /// a bare repository names every tag in it. The README does not say whether a bare
    /// repository protects untagged manifests; src/policy/reference.rs says no.
    pub fn protects_tag(&self, hosts: &[String], repo: &str, tag: &str, digest: &Digest) -> bool {
        self.applies(hosts, repo)
            && match (&self.digest, &self.tag) {
                (Some(d), _) => d == digest,
                (None, Some(t)) => tag_pattern(t, tag),
                (None, None) => true,
            }
    }

    pub fn protects_manifest(&self, hosts: &[String], repo: &str, digest: &Digest) -> bool {
        self.applies(hosts, repo) && self.digest.as_ref() == Some(digest)
    }
}
