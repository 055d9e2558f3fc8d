//! In-use protection: the images that workloads reference, filtered to those that name this
//! registry under one of `spec.registry.hosts`. Pods give both their spec images and the
//! digests they actually run (`status.containerStatuses[].imageID`); workload templates
//! (Deployments, StatefulSets, DaemonSets, ReplicaSets kept for rollback, Jobs, CronJobs) give
//! what will run on the next reschedule.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};

use crate::policy::reference::same_host;

/// A reference to this registry found in the cluster, and who uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InUse {
    /// `host/repository[:tag][@digest]`, as the workload wrote it (runtime prefixes removed).
    pub reference: String,
    /// `Kind namespace/name` of each user, for the reason shown in the plan.
    pub users: Vec<String>,
}

/// Splits an image reference into host and the rest, the way container runtimes do: the first
/// component is a host only when it has a '.' or ':' or is `localhost`; otherwise the image is
/// on Docker Hub (`nginx`, `library/nginx`), which is never this registry.
fn host_of(image: &str) -> Option<(&str, &str)> {
    let (first, rest) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some((first, rest))
}

/// Strips what runtimes put before an image ID (`docker-pullable://`, `docker://`).
fn strip_runtime_prefix(image: &str) -> &str {
    image.split_once("://").map_or(image, |(_, rest)| rest)
}

/// The reference when it names this registry, else None. With no known host, every image
/// that names a registry host might be this one, and is kept: protecting too much is safe,
/// protecting nothing loses images.
pub fn for_registry(image: &str, hosts: &[String]) -> Option<String> {
    let image = strip_runtime_prefix(image.trim());
    let (host, rest) = host_of(image)?;
    if rest.is_empty() || !(hosts.is_empty() || hosts.iter().any(|h| same_host(host, h))) {
        return None;
    }
    Some(image.to_string())
}

/// The names workloads may pull this registry by: `spec.registry.hosts`, plus the URL's
/// `host:port` (in-cluster, usually the Service, which pods pull by too), with a Service
/// name's short and fully qualified forms (`svc.ns.svc` and `svc.ns.svc.cluster.local`).
pub fn known_hosts(hosts: &[String], url: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = hosts.to_vec();
    let authority = url.and_then(|u| reqwest::Url::parse(u).ok()).and_then(|u| {
        let host = u.host_str()?.to_string();
        Some(match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        })
    });
    if let Some(a) = authority {
        let (host, port) = a.split_once(':').map_or((a.as_str(), None), |(h, p)| (h, Some(p)));
        let with_port = |h: String| port.map_or(h.clone(), |p| format!("{h}:{p}"));
        let mut names = vec![with_port(host.to_string())];
        if let Some(short) = host.strip_suffix(".cluster.local") {
            names.push(with_port(short.to_string()));
        } else if host.ends_with(".svc") {
            names.push(with_port(format!("{host}.cluster.local")));
        }
        for n in names {
            if !out.iter().any(|h| h.eq_ignore_ascii_case(&n)) {
                out.push(n);
            }
        }
    }
    out
}

/// Images of a pod spec: init, regular and ephemeral containers.
pub fn spec_images(spec: &PodSpec) -> Vec<&str> {
    let init = spec.init_containers.iter().flatten().filter_map(|c| c.image.as_deref());
    let main = spec.containers.iter().filter_map(|c| c.image.as_deref());
    let ephemeral = spec.ephemeral_containers.iter().flatten().filter_map(|c| c.image.as_deref());
    init.chain(main).chain(ephemeral).collect()
}

/// Images a pod runs: its spec, and the digests the kubelet resolved them to.
pub fn pod_images(pod: &Pod) -> Vec<&str> {
    let mut images = pod.spec.as_ref().map(spec_images).unwrap_or_default();
    if let Some(status) = &pod.status {
        let statuses = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
        images.extend(statuses.map(|s| s.image_id.as_str()).filter(|id| !id.is_empty()));
    }
    images
}

/// Collects references by reference, remembering every user.
#[derive(Default)]
pub struct InUseIndex {
    refs: BTreeMap<String, Vec<String>>,
}

impl InUseIndex {
    pub fn add<'a>(&mut self, user: &str, images: impl IntoIterator<Item = &'a str>, hosts: &[String]) {
        for image in images {
            if let Some(r) = for_registry(image, hosts) {
                let users = self.refs.entry(r).or_default();
                if !users.iter().any(|u| u == user) {
                    users.push(user.to_string());
                }
            }
        }
    }

    pub fn into_list(self) -> Vec<InUse> {
        self.refs.into_iter().map(|(reference, users)| InUse { reference, users }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::policy::reference::ProtectedRef;

    fn hosts() -> Vec<String> {
        vec!["registry.example.com".into(), "docker-registry.registry.svc:5000".into()]
    }

    #[test]
    fn matches_this_registry_under_any_of_its_names() {
        let h = hosts();
        assert_eq!(for_registry("registry.example.com/team/app:v1", &h).as_deref(), Some("registry.example.com/team/app:v1"));
        assert!(for_registry("registry.example.com:443/team/app:v1", &h).is_some(), "port given, host known without one");
        assert!(for_registry("docker-registry.registry.svc:5000/app:v1", &h).is_some());
        assert!(for_registry("docker-registry.registry.svc/app:v1", &h).is_some(), "no port, host known with one");
        assert!(for_registry("docker-registry.registry.svc:5001/app:v1", &h).is_none(), "another port is another registry");
        let d = Digest::of(b"x");
        let by_digest = for_registry(&format!("docker-pullable://registry.example.com/app@{d}"), &h).unwrap();
        assert_eq!(by_digest, format!("registry.example.com/app@{d}"));
        let both = for_registry(&format!("registry.example.com/app:v1@{d}"), &h).unwrap();
        let p = ProtectedRef::parse(&both).unwrap();
        assert!(p.matches("app", None, &d), "tag plus digest protects the digest");
    }

    #[test]
    fn implicit_docker_hub_names_never_match() {
        let mut h = hosts();
        h.push("docker.io".into());
        for image in ["nginx", "nginx:1.25", "library/nginx:1", "team/app:v1", "app@sha256:abc"] {
            assert!(for_registry(image, &h).is_none(), "{image}");
        }
        assert!(for_registry("registry.example.com", &h).is_none(), "a bare host is no image");
    }

    #[test]
    fn an_index_collects_users_once() {
        let mut idx = InUseIndex::default();
        idx.add("Pod default/web-1", ["registry.example.com/web:1", "nginx:1", "registry.example.com/web:1"], &hosts());
        idx.add("Deployment default/web", ["registry.example.com/web:1"], &hosts());
        let list = idx.into_list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].users, vec!["Pod default/web-1", "Deployment default/web"]);
    }

    #[test]
    fn hosts_come_from_the_url_too_and_none_known_protects_every_registry_image() {
        let h = known_hosts(&["registry.example.com".into()], Some("http://docker-registry.registry.svc:5000"));
        assert_eq!(h, ["registry.example.com", "docker-registry.registry.svc:5000", "docker-registry.registry.svc.cluster.local:5000"]);
        assert_eq!(known_hosts(&[], Some("https://r.registry.svc.cluster.local")), ["r.registry.svc.cluster.local", "r.registry.svc"]);
        assert!(known_hosts(&[], None).is_empty());
        assert_eq!(for_registry("anything.example:5000/app:v1", &[]).as_deref(), Some("anything.example:5000/app:v1"));
        assert_eq!(for_registry("nginx:1.25", &[]), None, "Docker Hub is never this registry");
    }
}
