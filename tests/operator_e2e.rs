//! The operator end to end on this machine: an in-process API server with real semantics, the
//! real `kubectl`, a simulated kubelet that runs the registry Deployment as a real
//! `docker-registry` process and the sweep Job as a real `regsweep maintenance` process, and
//! the operator itself. The same scenario runs on a real cluster with `tests/e2e/kind.sh`.

mod support;

#[path = "support/apiserver/mod.rs"]
mod apiserver;
#[path = "support/kubelet.rs"]
mod kubelet;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use regsweep::maintenance::instance::{find_registry_bin, free_port};
use regsweep::policy::RegistryCleanupPolicy;
use regsweep::registry::{ClientOptions, RegistryClient, WriteProbe};

const OPERATOR_IMAGE: &str = "regsweep:e2e";

struct Cluster {
    server: apiserver::ApiServer,
    _kubelet: kubelet::Kubelet,
    dir: tempfile::TempDir,
    registry_url: String,
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl").arg("--kubeconfig").arg(self.server.kubeconfig_path()).args(args).output().expect("kubectl runs")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn apply(&self, name: &str, yaml: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        self.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
    }

    fn registry(&self) -> RegistryClient {
        RegistryClient::new(&self.registry_url, ClientOptions::default()).unwrap()
    }
}

/// The registry's public configuration on the host: delete disabled, as by default.
fn registry_files(dir: &Path, addr: SocketAddr) {
    std::fs::create_dir_all(dir.join("storage")).unwrap();
    std::fs::write(dir.join("config.yml"), regsweep::demo::public_config(&dir.join("storage"), addr)).unwrap();
}

async fn start() -> Cluster {
    start_with(env!("CARGO_BIN_EXE_regsweep")).await
}

/// A cluster whose "operator image" runs `regsweep_bin` (a broken one makes the Job fail).
async fn start_with(regsweep_bin: &str) -> Cluster {
    support::ensure_registry_installed();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "regsweep=info".into()))
        .with_test_writer()
        .try_init();
    let server = apiserver::ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    registry_files(dir.path(), addr);
    let images = kubelet::Images {
        registry: find_registry_bin(None).unwrap(),
        regsweep: regsweep_bin.into(),
        operator_image: OPERATOR_IMAGE.into(),
    };
    let kubelet = kubelet::Kubelet::start(server.client(), "registry", images);
    let cluster = Cluster { server, _kubelet: kubelet, dir, registry_url: format!("http://{addr}") };
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/registrycleanuppolicies.regsweep.dev.yaml");
    cluster.kubectl_ok(&["apply", "-f", crd]);
    cluster.apply(
        "namespaces.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: registry}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n",
    );
    let d = cluster.dir.path().display().to_string();
    cluster.apply(
        "registry.yaml",
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: docker-registry
  namespace: registry
  annotations: {{test/registry-url: "{url}"}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: registry}}}}
  template:
    metadata: {{labels: {{app: registry}}}}
    spec:
      containers:
        - name: registry
          image: registry:2
          args: ["serve", "{d}/config.yml"]
          env: [{{name: REGISTRY_HTTP_SECRET, value: e2e-secret}}]
          volumeMounts: [{{name: data, mountPath: "{d}"}}]
      volumes:
        - {{name: data, hostPath: {{path: "{d}"}}}}
"#,
            url = cluster.registry_url
        ),
    );
    wait_for("the registry to answer", Duration::from_secs(30), || async { cluster.registry().ping().await.is_ok() }).await;
    cluster
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_operator(cluster: &Cluster) -> tokio::task::JoinHandle<()> {
    start_operator_at(cluster, SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())))
}

fn start_operator_at(cluster: &Cluster, listen: SocketAddr) -> tokio::task::JoinHandle<()> {
    let client = cluster.server.client();
    tokio::spawn(async move {
        let opts = regsweep::operator::run::OperatorOptions {
            config: regsweep::operator::context::OperatorConfig {
                image: OPERATOR_IMAGE.into(),
                in_use_namespaces: None,
                poll: Duration::from_millis(300),
            },
            listen,
            leader_election: None,
        };
        let _ = regsweep::operator::run::run_with_client(client, opts).await;
    })
}

fn policy_yaml(cluster: &Cluster, dry_run: bool) -> String {
    named_policy(cluster, "demo", dry_run)
}

fn named_policy(cluster: &Cluster, name: &str, dry_run: bool) -> String {
    let demo: serde_yaml::Value = serde_yaml::from_str(regsweep::demo::DEMO_POLICY).unwrap();
    let mut doc = demo.clone();
    doc["metadata"]["namespace"] = "registry".into();
    doc["metadata"]["name"] = name.into();
    doc["spec"]["registry"]["deployment"] = "docker-registry".into();
    doc["spec"]["registry"]["url"] = cluster.registry_url.clone().into();
    doc["spec"]["dryRun"] = dry_run.into();
    serde_yaml::to_string(&doc).unwrap()
}

async fn last_run(cluster: &Cluster) -> Option<regsweep::policy::RunSummary> {
    last_run_of(cluster, "demo").await
}

async fn status_of(cluster: &Cluster, name: &str) -> Option<regsweep::policy::RegistryCleanupPolicyStatus> {
    let api: Api<RegistryCleanupPolicy> = Api::namespaced(cluster.server.client(), "registry");
    api.get_opt(name).await.ok().flatten().and_then(|p| p.status)
}

async fn last_run_of(cluster: &Cluster, name: &str) -> Option<regsweep::policy::RunSummary> {
    status_of(cluster, name).await.and_then(|s| s.last_run)
}

/// Waits for the policy's run to finish, dumping the cluster when it does not.
async fn wait_finished(cluster: &Cluster, name: &str) -> regsweep::policy::RunSummary {
    let started = Instant::now();
    loop {
        if let Some(run) = last_run_of(cluster, name).await {
            return run;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let dump = cluster.kubectl(&["get", "rcp,deploy,job,pod,events", "-A", "-o", "yaml"]);
            panic!("the run of {name} did not finish:\n{}", String::from_utf8_lossy(&dump.stdout));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the policy's run has frozen the registry.
async fn wait_frozen(cluster: &Cluster, name: &str) {
    wait_for("the registry to be frozen", Duration::from_secs(60), || async {
        status_of(cluster, name).await.and_then(|s| s.run).is_some_and(|r| r.frozen_at.is_some())
    })
    .await;
}

async fn template(cluster: &Cluster) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    Api::<Deployment>::namespaced(cluster.server.client(), "registry").get("docker-registry").await.unwrap().spec.template
}

async fn assert_thawed(cluster: &Cluster, before: &k8s_openapi::api::core::v1::PodTemplateSpec) {
    let after = Api::<Deployment>::namespaced(cluster.server.client(), "registry").get("docker-registry").await.unwrap();
    assert_eq!(&after.spec.template, before, "the Deployment is restored exactly");
    assert!(regsweep::operator::lock::holder(&after).is_none(), "the lock is released");
    wait_for("the registry to accept writes", Duration::from_secs(30), || async {
        matches!(cluster.registry().probe_write("team-a/api").await, Ok(WriteProbe::Accepted { .. }))
    })
    .await;
    let verify = regsweep::verify::verify_registry(&cluster.registry()).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
}

async fn filled() -> Cluster {
    let cluster = start().await;
    regsweep::demo::fill(&cluster.registry(), &regsweep::storage::Layout::new(cluster.dir.path().join("storage"))).await.unwrap();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_is_frozen_swept_thawed_and_reported() {
    let cluster = start().await;
    regsweep::demo::fill(&cluster.registry(), &regsweep::storage::Layout::new(cluster.dir.path().join("storage"))).await.unwrap();
    // A workload elsewhere runs an image the rules would delete: in-use protection keeps it.
    cluster.apply(
        "workload.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: apps}\nspec:\n  containers: [{name: api, image: registry.example.com/team-a/api:build-101}]\n",
    );
    let deployments: Api<Deployment> = Api::namespaced(cluster.server.client(), "registry");
    let before = deployments.get("docker-registry").await.unwrap();
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let _operator = start_operator_at(&cluster, listen);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));

    let started = Instant::now();
    while last_run(&cluster).await.is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let dump = cluster.kubectl(&["get", "rcp,deploy,job,pod,events", "-A", "-o", "yaml"]);
            panic!("the run did not finish:\n{}", String::from_utf8_lossy(&dump.stdout));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let run = last_run(&cluster).await.unwrap();
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert!(run.manifests_deleted > 0 && run.bytes_reclaimed > 0, "{run:?}");
    assert!(run.in_use_protected >= 1, "{run:?}");
    assert!(run.read_only_seconds >= 0);

    // Thawed: the Deployment's template is exactly as before, the lock is gone, pushes work.
    let after = deployments.get("docker-registry").await.unwrap();
    assert_eq!(after.spec.template, before.spec.template, "the Deployment is restored exactly");
    assert!(regsweep::operator::lock::holder(&after).is_none());
    wait_for("the registry to accept writes", Duration::from_secs(30), || async {
        matches!(cluster.registry().probe_write("team-a/api").await, Ok(WriteProbe::Accepted { .. }))
    })
    .await;
    let registry = cluster.registry();
    let verify = regsweep::verify::verify_registry(&registry).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
    let tags = registry.tags("team-a/api").await.unwrap();
    assert!(tags.contains(&"build-101".to_string()), "in use, so kept: {tags:?}");
    assert!(!tags.contains(&"build-102".to_string()), "old and unused, so deleted: {tags:?}");

    // Nothing of the run is left behind but its Job (which has a TTL).
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(cluster.server.client(), "registry");
    let left: Vec<String> = configmaps
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.starts_with("regsweep-"))
        .collect();
    assert!(left.is_empty(), "run ConfigMaps left: {left:?}");

    // Metrics and probes.
    let get = |path: &str| reqwest::get(format!("http://{listen}{path}"));
    assert_eq!(get("/livez").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200, "ready once the cache has synced");
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("regsweep_runs_total{result=\"Succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains(&format!("regsweep_bytes_reclaimed_total {}", run.bytes_reclaimed)), "{metrics}");

    // kubectl shows the result.
    let table = cluster.kubectl_ok(&["get", "rcp", "-n", "registry"]);
    assert!(table.contains("Succeeded"), "{table}");
    assert!(table.contains("Idle"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_changes_nothing() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let tags_before = cluster.registry().tags("team-a/api").await.unwrap();
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, true));
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert!(run.dry_run);
    assert_eq!((run.manifests_deleted, run.bytes_reclaimed, run.read_only_seconds), (0, 0, 0));
    assert_eq!(template(&cluster).await, before, "never frozen");
    assert_eq!(cluster.registry().tags("team-a/api").await.unwrap(), tags_before, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_sweep_thaws_and_reports_degraded() {
    // The "operator image" cannot even install regsweep: the Job fails.
    let cluster = start_with("/bin/false").await;
    regsweep::demo::fill(&cluster.registry(), &regsweep::storage::Layout::new(cluster.dir.path().join("storage"))).await.unwrap();
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Failed);
    assert!(run.message.contains("Job failed"), "{}", run.message);
    assert_thawed(&cluster, &before).await;
    let status = status_of(&cluster, "demo").await.unwrap();
    let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "LastRunFailed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_successor_operator_thaws_what_a_killed_one_froze() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let first = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    wait_frozen(&cluster, "demo").await;
    first.abort();
    let _ = first.await;
    // Nobody acts now: the registry stays frozen until a successor takes over.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(last_run(&cluster).await.is_none());
    let _second = start_operator(&cluster);
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert_thawed(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_deleted_while_frozen_thaws_first_then_goes() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    wait_frozen(&cluster, "demo").await;
    cluster.kubectl_ok(&["delete", "rcp", "demo", "-n", "registry", "--wait=false"]);
    let api: Api<RegistryCleanupPolicy> = Api::namespaced(cluster.server.client(), "registry");
    wait_for("the policy to be gone", Duration::from_secs(60), || async { api.get_opt("demo").await.ok().flatten().is_none() }).await;
    assert_thawed(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_policies_on_one_registry_never_overlap() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    cluster.apply("policies.yaml", &format!("{}---\n{}", named_policy(&cluster, "first", false), named_policy(&cluster, "second", false)));
    let (a, b) = (wait_finished(&cluster, "first").await, wait_finished(&cluster, "second").await);
    assert_eq!(
        (a.result, b.result),
        (regsweep::operator::phase::RunResult::Succeeded, regsweep::operator::phase::RunResult::Succeeded),
        "{} / {}",
        a.message,
        b.message
    );
    assert!(a.end <= b.start || b.end <= a.start, "runs overlapped: {a:?} {b:?}");
    assert_thawed(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_on_a_lease() {
    use regsweep::operator::leader::Elector;
    let server = apiserver::ApiServer::start().await;
    server.create_namespace("regsweep-system").unwrap();
    let ttl = Duration::from_secs(2);
    let a = Elector::new(server.client(), "regsweep-system", "regsweep-operator", "a", ttl);
    let b = Elector::new(server.client(), "regsweep-system", "regsweep-operator", "b", ttl);
    assert!(a.try_acquire_or_renew().await.unwrap(), "the first candidate leads");
    assert!(!b.try_acquire_or_renew().await.unwrap(), "the second waits");
    assert!(a.try_acquire_or_renew().await.unwrap(), "the leader renews");
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    assert!(b.try_acquire_or_renew().await.unwrap(), "an expired Lease is taken over");
    assert!(!a.try_acquire_or_renew().await.unwrap(), "the old leader has lost it");
}
