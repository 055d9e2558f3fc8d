//! Protected image references: `[host[:port]/]repository[:tag][@sha256:…]`, where repository
//! and tag may be globs. They come from `spec.protection.references`, from `--protect`, and
//! (in the operator) from the images running workloads use.

use crate::digest::Digest;

use super::pattern::{RepoGlob, TagPattern};

#[derive(Clone, Debug)]
pub struct ProtectedRef {
    /// The reference as written, for the reason shown in the plan.
    pub source: String,
    pub host: Option<String>,
    pub repository: RepoGlob,
    pub tag: Option<TagPattern>,
    pub digest: Option<Digest>,
}

/// Docker's rule: the first path component is a registry host when it contains '.' or ':'
/// or is `localhost`; otherwise the whole string is a repository path.
fn split_host(s: &str) -> (Option<&str>, &str) {
    match s.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => (Some(first), rest),
        _ => (None, s),
    }
}

impl ProtectedRef {
    pub fn parse(source: &str) -> Result<Self, String> {
        let text = source.trim();
        if text.is_empty() {
            return Err("an empty image reference protects nothing".into());
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d).map_err(|e| format!("reference {source:?}: {e}"))?)),
            None => (text, None),
        };
        let (host, path) = split_host(rest);
        // A ':' after the last '/' separates the tag (a ':' before it belongs to host:port).
        let (repo, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        if repo.is_empty() {
            return Err(format!("reference {source:?} names no repository"));
        }
        let repository = RepoGlob::new(repo).map_err(|e| format!("reference {source:?}: {e}"))?;
        let tag = match tag {
            Some(t) => Some(TagPattern::new(t).map_err(|e| format!("reference {source:?}: {e}"))?),
            None => None,
        };
        Ok(ProtectedRef { source: source.to_string(), host: host.map(str::to_string), repository, tag, digest })
    }

    /// Whether this reference's host names the registry known by `hosts`. A reference without
    /// a host is taken to name this registry; so is any host when `hosts` is empty (protecting
    /// too much is safe, protecting too little loses images).
    pub fn names_registry(&self, hosts: &[String]) -> bool {
        match &self.host {
            None => true,
            Some(_) if hosts.is_empty() => true,
            Some(h) => hosts.iter().any(|known| same_host(h, known)),
        }
    }

    /// Whether the reference protects this tag (`tag` is None for an untagged manifest).
    pub fn matches(&self, repository: &str, tag: Option<&str>, digest: &Digest) -> bool {
        if !self.repository.is_match(repository) {
            return false;
        }
        match (&self.digest, &self.tag) {
            (Some(d), _) => d == digest,
            (None, Some(t)) => tag.is_some_and(|tag| t.is_match(tag)),
            // A bare repository protects every tag in it.
            (None, None) => tag.is_some(),
        }
    }
}

/// `registry.example.com` and `registry.example.com:443` are the same host when one side
/// gives no port; two different explicit ports are different registries.
pub fn same_host(a: &str, b: &str) -> bool {
    let (ah, ap) = a.rsplit_once(':').map_or((a, None), |(h, p)| (h, Some(p)));
    let (bh, bp) = b.rsplit_once(':').map_or((b, None), |(h, p)| (h, Some(p)));
    ah.eq_ignore_ascii_case(bh) && (ap.is_none() || bp.is_none() || ap == bp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn parses_host_repo_tag_digest() {
        let r = ProtectedRef::parse("registry.example.com:5000/team-a/app:v1").unwrap();
        assert_eq!(r.host.as_deref(), Some("registry.example.com:5000"));
        assert!(r.matches("team-a/app", Some("v1"), &d("x")));
        assert!(!r.matches("team-a/app", Some("v2"), &d("x")));
        assert!(!r.matches("team-a/app", None, &d("x")));

        let dig = d("img");
        let r = ProtectedRef::parse(&format!("localhost/app:v1@{dig}")).unwrap();
        assert_eq!(r.host.as_deref(), Some("localhost"));
        assert!(r.matches("app", None, &dig), "the digest wins over the tag");
        assert!(!r.matches("app", Some("v1"), &d("other")));

        let r = ProtectedRef::parse("team-a/app").unwrap();
        assert!(r.host.is_none());
        assert!(r.matches("team-a/app", Some("anything"), &d("x")));
    }

    #[test]
    fn globs_in_references() {
        let r = ProtectedRef::parse("registry.example.com/base/*:stable").unwrap();
        assert!(r.matches("base/alpine", Some("stable"), &d("x")));
        assert!(!r.matches("base/alpine/sub", Some("stable"), &d("x")));
    }

    #[test]
    fn hosts_with_and_without_port() {
        let hosts = vec!["registry.example.com".to_string(), "docker-registry.registry.svc:5000".to_string()];
        let r = |s: &str| ProtectedRef::parse(s).unwrap();
        assert!(r("registry.example.com:443/a:1").names_registry(&hosts));
        assert!(r("docker-registry.registry.svc/a:1").names_registry(&hosts));
        assert!(!r("docker-registry.registry.svc:5001/a:1").names_registry(&hosts));
        assert!(!r("docker.io/library/nginx:1").names_registry(&hosts));
        assert!(r("a:1").names_registry(&hosts));
        assert!(r("anything.example/a:1").names_registry(&[]));
    }

    #[test]
    fn rejects_bad_references() {
        assert!(ProtectedRef::parse("").is_err());
        assert!(ProtectedRef::parse("app@sha256:zz").is_err());
        assert!(ProtectedRef::parse("App:v1").is_err());
        assert!(ProtectedRef::parse("host.example/:v1").is_err());
    }
}
