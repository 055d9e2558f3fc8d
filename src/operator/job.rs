//! The sweep Job, cloned from the registry's pod template: the same image (so the same
//! `registry` binary for the private instance and `garbage-collect`), configuration, env,
//! volumes and security context. An init container copies the `regsweep` binary from the
//! operator's image into a shared emptyDir; the run's policy and protected references come
//! from a ConfigMap owned by the run. No service account token is mounted.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, PodTemplateSpec, ResourceRequirements, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::freeze::{FreezeError, READ_ONLY_ENV, registry_container};

pub const BIN_DIR: &str = "/opt/regsweep";
pub const RUN_DIR: &str = "/etc/regsweep";
const BIN_VOLUME: &str = "regsweep-bin";
const RUN_VOLUME: &str = "regsweep-run";
/// Where the registry image reads its configuration unless its args say otherwise: 2.x
/// images, and 3.x ones (`registry:3`, `distribution/distribution:3`).
pub const DEFAULT_REGISTRY_CONFIG: &str = "/etc/docker/registry/config.yml";
pub const DEFAULT_REGISTRY3_CONFIG: &str = "/etc/distribution/config.yml";

pub struct JobInputs<'a> {
    pub deployment: &'a Deployment,
    pub container: Option<&'a str>,
    pub policy: &'a str,
    pub run_id: &'a str,
    /// The operator's own image, which carries the `regsweep` binary.
    pub operator_image: &'a str,
    /// The ConfigMap with `policy.yaml` and `protect.txt`.
    pub config_map: &'a str,
    /// Pin to this node (the registry pod's) for ReadWriteOnce volumes.
    pub node: Option<&'a str>,
    pub public_url: Option<&'a str>,
    pub credentials_secret: Option<&'a str>,
    pub owner: OwnerReference,
    pub active_deadline_seconds: i64,
    /// How long the sweep may take to stop after SIGTERM (the pod's grace period).
    pub termination_grace_seconds: i64,
    /// The sweep container's resources; None: the registry container's.
    pub resources: Option<ResourceRequirements>,
    /// A review run: plan only, and save the plan on the volume for the run that executes it.
    pub review: bool,
    /// Execute at most the plan this review run saved.
    pub approved_run: Option<&'a str>,
}

/// The init container only copies one binary; it still declares resources, so a namespace
/// with a ResourceQuota (which demands them) admits the pod while the registry waits frozen.
fn install_resources() -> ResourceRequirements {
    let q = |cpu: &str, memory: &str| {
        BTreeMap::from([("cpu".to_string(), Quantity(cpu.into())), ("memory".to_string(), Quantity(memory.into()))])
    };
    ResourceRequirements { requests: Some(q("10m", "16Mi")), limits: Some(q("200m", "64Mi")), ..Default::default() }
}

pub fn labels(policy: &str, run_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_string(), "regsweep".to_string()),
        ("app.kubernetes.io/name".to_string(), "regsweep-sweep".to_string()),
        ("regsweep.dev/policy".to_string(), policy.to_string()),
        ("regsweep.dev/run".to_string(), run_id.to_string()),
    ])
}

/// Kubernetes names are at most 63 characters in labels and Job names.
pub fn job_name(policy: &str, run_id: &str) -> String {
    let mut prefix: String = format!("regsweep-{policy}");
    prefix.truncate(63 - run_id.len() - 1);
    format!("{}-{run_id}", prefix.trim_end_matches('-'))
}

/// The registry's configuration path: the argument after `serve`, else the container's
/// `REGISTRY_CONFIGURATION_PATH`, else the default of the image's major version.
fn config_path(c: &Container) -> String {
    let words: Vec<&String> = c.command.iter().flatten().chain(c.args.iter().flatten()).collect();
    let from_args = words.iter().position(|w| w.as_str() == "serve").and_then(|i| words.get(i + 1)).map(|s| s.to_string());
    let from_env =
        || c.env.iter().flatten().find(|e| e.name == "REGISTRY_CONFIGURATION_PATH").and_then(|e| e.value.clone()).filter(|v| !v.is_empty());
    from_args.or_else(from_env).unwrap_or_else(|| {
        if c.image.as_deref().is_some_and(is_distribution_3) { DEFAULT_REGISTRY3_CONFIG } else { DEFAULT_REGISTRY_CONFIG }.to_string()
    })
}

/// `registry:3`, `docker.io/library/registry:3.0.0`, `distribution/distribution:3.1@sha256:…`.
fn is_distribution_3(image: &str) -> bool {
    let name_and_tag = image.split('@').next().unwrap_or(image);
    let tag = name_and_tag.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map(|(_, t)| t);
    tag.is_some_and(|t| t.trim_start_matches('v').starts_with('3'))
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.into(), key: key.into(), optional: Some(false) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn build(i: &JobInputs) -> Result<Job, FreezeError> {
    let (index, _) = registry_container(i.deployment, i.container)?;
    let template = &i.deployment.spec.template;
    let pod = template.spec.clone().unwrap_or_default();
    let registry = &pod.containers[index];

    let mut args = vec![
        "maintenance".to_string(),
        "--file".into(),
        format!("{RUN_DIR}/policy.yaml"),
        "--config".into(),
        config_path(registry),
        "--protect-file".into(),
        format!("{RUN_DIR}/protect.txt"),
        "--summary-file".into(),
        "/dev/termination-log".into(),
        "--run-id".into(),
        i.run_id.into(),
        "--log-format".into(),
        "json".into(),
    ];
    if let Some(url) = i.public_url {
        args.extend(["--url".into(), url.into()]);
    }
    if i.review {
        args.extend(["--dry-run".into(), "--save-plan".into()]);
    }
    if let Some(run) = i.approved_run {
        args.extend(["--approved-run".into(), run.into()]);
    }
    // The Job runs beside a frozen registry: it must not inherit the read-only switch's
    // absence or presence from the template, so drop it; the private instance strips it anyway.
    let mut env: Vec<EnvVar> = registry.env.iter().flatten().filter(|e| e.name != READ_ONLY_ENV).cloned().collect();
    if let Some(secret) = i.credentials_secret {
        env.push(secret_env("REGSWEEP_REGISTRY_USERNAME", secret, "username"));
        env.push(secret_env("REGSWEEP_REGISTRY_PASSWORD", secret, "password"));
    }
    let mut mounts = registry.volume_mounts.clone().unwrap_or_default();
    mounts.push(VolumeMount { name: BIN_VOLUME.into(), mount_path: BIN_DIR.into(), read_only: Some(true), ..Default::default() });
    mounts.push(VolumeMount { name: RUN_VOLUME.into(), mount_path: RUN_DIR.into(), read_only: Some(true), ..Default::default() });
    let sweep = Container {
        name: "sweep".into(),
        image: registry.image.clone(),
        image_pull_policy: registry.image_pull_policy.clone(),
        command: Some(vec![format!("{BIN_DIR}/regsweep")]),
        args: Some(args),
        env: Some(env),
        env_from: registry.env_from.clone(),
        volume_mounts: Some(mounts),
        security_context: registry.security_context.clone(),
        resources: i.resources.clone().or_else(|| registry.resources.clone()),
        working_dir: registry.working_dir.clone(),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let install = Container {
        name: "install-regsweep".into(),
        image: Some(i.operator_image.into()),
        args: Some(vec!["copy-self".into(), format!("{BIN_DIR}/regsweep")]),
        volume_mounts: Some(vec![VolumeMount { name: BIN_VOLUME.into(), mount_path: BIN_DIR.into(), ..Default::default() }]),
        security_context: registry.security_context.clone(),
        resources: Some(install_resources()),
        ..Default::default()
    };
    let mut volumes = pod.volumes.clone().unwrap_or_default();
    volumes.push(Volume { name: BIN_VOLUME.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() });
    volumes.push(Volume {
        name: RUN_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource { name: i.config_map.into(), ..Default::default() }),
        ..Default::default()
    });
    let affinity = match i.node {
        Some(node) => Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        None => pod.affinity.clone(),
    };
    let labels = labels(i.policy, i.run_id);
    let namespace = i.deployment.metadata.namespace.clone();
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(i.policy, i.run_id)),
            namespace: namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![i.owner.clone()]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(24 * 3600),
            active_deadline_seconds: Some(i.active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    termination_grace_period_seconds: Some(i.termination_grace_seconds),
                    automount_service_account_token: Some(false),
                    init_containers: Some(vec![install]),
                    containers: vec![sweep],
                    volumes: Some(volumes),
                    security_context: pod.security_context.clone(),
                    image_pull_secrets: pod.image_pull_secrets.clone(),
                    tolerations: pod.tolerations.clone(),
                    node_selector: pod.node_selector.clone(),
                    affinity,
                    priority_class_name: pod.priority_class_name.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "docker-registry", "namespace": "registry"},
            "spec": {
                "selector": {"matchLabels": {"app": "registry"}},
                "template": {
                    "metadata": {"labels": {"app": "registry"}},
                    "spec": {
                        "serviceAccountName": "registry",
                        "securityContext": {"runAsUser": 1000, "fsGroup": 1000},
                        "imagePullSecrets": [{"name": "pull"}],
                        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "registry-data"}}, {"name": "config", "configMap": {"name": "registry-config"}}],
                        "containers": [{
                            "name": "registry", "image": "registry:2.8.3",
                            "args": ["serve", "/etc/registry/config.yml"],
                            "env": [{"name": "REGISTRY_HTTP_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}, {"name": READ_ONLY_ENV, "value": "{\"enabled\":true}"}],
                            "envFrom": [{"configMapRef": {"name": "registry-env"}}],
                            "ports": [{"containerPort": 5000}],
                            "livenessProbe": {"httpGet": {"path": "/", "port": 5000}},
                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/registry"}, {"name": "config", "mountPath": "/etc/registry"}],
                            "securityContext": {"readOnlyRootFilesystem": true}
                        }]
                    }
                }
            }
        }))
        .unwrap()
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "regsweep.dev/v1alpha1".into(),
            kind: "RegistryCleanupPolicy".into(),
            name: "nightly".into(),
            uid: "u".into(),
            controller: Some(true),
            ..Default::default()
        }
    }

    fn inputs<'a>(d: &'a Deployment, node: Option<&'a str>) -> JobInputs<'a> {
        JobInputs {
            deployment: d,
            container: None,
            policy: "nightly",
            run_id: "abc123",
            operator_image: "ghcr.io/regsweep/regsweep:0.1.0",
            config_map: "regsweep-nightly-abc123",
            node,
            public_url: Some("http://docker-registry.registry.svc:5000"),
            credentials_secret: Some("registry-auth"),
            owner: owner(),
            active_deadline_seconds: 3600,
            termination_grace_seconds: 45,
            resources: None,
            review: false,
            approved_run: None,
        }
    }

    #[test]
    fn copies_what_the_registry_needs_and_nothing_more() {
        let d = deployment();
        let job = build(&inputs(&d, None)).unwrap();
        let spec = job.spec.unwrap();
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry:2.8.3"), "the registry's image, so its registry binary");
        assert!(c.ports.is_none() && c.liveness_probe.is_none(), "no ports or probes");
        let args = c.args.as_ref().unwrap();
        assert!(args.windows(2).any(|w| w[0] == "--config" && w[1] == "/etc/registry/config.yml"), "{args:?}");
        assert!(
            args.iter().all(|a| !a.contains("registry-auth") && !a.to_lowercase().contains("password")),
            "no credentials on the command line"
        );
        let env = c.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "REGISTRY_HTTP_SECRET"));
        assert!(env.iter().all(|e| e.name != READ_ONLY_ENV));
        assert!(env.iter().any(|e| e.name == "REGSWEEP_REGISTRY_PASSWORD" && e.value.is_none()), "password from the Secret");
        assert_eq!(c.env_from, d.spec.template.spec.as_ref().unwrap().containers[0].env_from);
        assert_eq!(c.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
        assert_eq!(pod.security_context.as_ref().unwrap().run_as_user, Some(1000));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert!(pod.service_account_name.is_none(), "not the registry's service account");
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "pull");
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let volumes: Vec<&str> = pod.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, vec!["data", "config", BIN_VOLUME, RUN_VOLUME]);
        assert_eq!(pod.init_containers.as_ref().unwrap()[0].image.as_deref(), Some("ghcr.io/regsweep/regsweep:0.1.0"));
        assert!(pod.affinity.is_none());
        assert_eq!(spec.backoff_limit, Some(0));
        assert!(spec.ttl_seconds_after_finished.is_some());
        assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "RegistryCleanupPolicy");
        assert_eq!(job.metadata.namespace.as_deref(), Some("registry"));
    }

    #[test]
    fn the_grace_period_and_resources_are_set_for_both_containers() {
        let d = deployment();
        let pod = build(&inputs(&d, None)).unwrap().spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(45), "an abort waits this long, then SIGKILL");
        let install = &pod.init_containers.as_ref().unwrap()[0];
        let res = install.resources.as_ref().expect("a ResourceQuota namespace needs them");
        assert!(res.requests.as_ref().unwrap().contains_key("memory") && res.limits.as_ref().unwrap().contains_key("cpu"));
        assert!(pod.containers[0].resources.is_none(), "the registry container declares none here");
        let wanted =
            ResourceRequirements { limits: Some(BTreeMap::from([("memory".to_string(), Quantity("512Mi".into()))])), ..Default::default() };
        let mut i = inputs(&d, None);
        i.resources = Some(wanted.clone());
        let pod = build(&i).unwrap().spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers[0].resources.as_ref(), Some(&wanted), "the policy's resources win");
    }

    #[test]
    fn a_review_saves_its_plan_and_an_approved_run_executes_it() {
        let d = deployment();
        let args = |i: &JobInputs| build(i).unwrap().spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
        let plain = args(&inputs(&d, None));
        assert!(!plain.iter().any(|a| a == "--dry-run" || a == "--save-plan" || a == "--approved-run"), "{plain:?}");
        let review = args(&JobInputs { review: true, ..inputs(&d, None) });
        assert!(review.iter().any(|a| a == "--dry-run") && review.iter().any(|a| a == "--save-plan"), "{review:?}");
        let approved = args(&JobInputs { approved_run: Some("r1"), ..inputs(&d, None) });
        assert!(approved.windows(2).any(|w| w[0] == "--approved-run" && w[1] == "r1"), "{approved:?}");
    }

    #[test]
    fn the_configuration_path_follows_args_env_and_the_registry_version() {
        let container = |image: &str, args: Option<Vec<String>>, env: Option<(&str, &str)>| Container {
            image: Some(image.into()),
            args,
            env: env.map(|(k, v)| vec![EnvVar { name: k.into(), value: Some(v.into()), ..Default::default() }]),
            ..Default::default()
        };
        assert_eq!(config_path(&container("registry:3", Some(vec!["serve".into(), "/c.yml".into()]), None)), "/c.yml");
        assert_eq!(config_path(&container("registry:3", None, Some(("REGISTRY_CONFIGURATION_PATH", "/e.yml")))), "/e.yml");
        assert_eq!(config_path(&container("registry:3.0.0", None, None)), DEFAULT_REGISTRY3_CONFIG);
        assert_eq!(config_path(&container("ghcr.io/distribution/distribution:3.1@sha256:ab", None, None)), DEFAULT_REGISTRY3_CONFIG);
        assert_eq!(config_path(&container("registry:2.8.3", None, None)), DEFAULT_REGISTRY_CONFIG);
        assert_eq!(config_path(&container("localhost:5000/registry", None, None)), DEFAULT_REGISTRY_CONFIG);
    }

    #[test]
    fn pins_to_the_registry_node_for_read_write_once() {
        let d = deployment();
        let job = build(&inputs(&d, Some("node-7"))).unwrap();
        let affinity = job.spec.unwrap().template.spec.unwrap().affinity.unwrap();
        let term = &affinity.node_affinity.unwrap().required_during_scheduling_ignored_during_execution.unwrap().node_selector_terms[0];
        let field = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!((field.key.as_str(), field.values.as_ref().unwrap()[0].as_str()), ("metadata.name", "node-7"));
    }

    #[test]
    fn names_fit_kubernetes_limits() {
        let long = "a".repeat(80);
        let name = job_name(&long, "abc123");
        assert!(name.len() <= 63 && name.ends_with("-abc123"), "{name}");
    }
}
