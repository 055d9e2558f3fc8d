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
/// The operator's identity towards the API server: its requests are checked against the RBAC
/// it declares (`regsweep::operator::rbac`, which the Helm chart grants).
const OPERATOR_USER: &str = "system:serviceaccount:regsweep-system:regsweep";
const OPERATOR_NAMESPACE: &str = "regsweep-system";

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
          volumeMounts: [{{name: data, mountPath: "{d}"}}, {{name: cache, mountPath: /var/cache/registry}}]
      volumes:
        - {{name: data, hostPath: {{path: "{d}"}}}}
        # A claim as a registry's storage would be (this kubelet keeps the data on hostPath and
        # ignores it); ReadWriteOnce pins the sweep Job to the registry's node.
        - {{name: cache, persistentVolumeClaim: {{claimName: registry-cache}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: registry-cache, namespace: registry}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
"#,
            url = cluster.registry_url
        ),
    );
    // Credentials every test policy names: this registry has no auth and ignores them, but the
    // operator reads them for its write probe, as it would for a registry with auth.
    cluster.apply(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: registry-auth, namespace: registry}\ndata: {username: c3dlZXBlcg==, password: aHVudGVyMg==}\n",
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
    start_operator_at(cluster, SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())), None)
}

/// The operator, watching every namespace (None) or the given ones (and scanning the same for
/// images in use, as `regsweep operator --watch-namespace` does).
fn start_operator_at(cluster: &Cluster, listen: SocketAddr, watch: Option<&[&str]>) -> tokio::task::JoinHandle<()> {
    let client = cluster.server.client_as(OPERATOR_USER);
    let watch: Option<Vec<String>> = watch.map(|w| w.iter().map(|n| n.to_string()).collect());
    tokio::spawn(async move {
        let opts = regsweep::operator::run::OperatorOptions {
            config: regsweep::operator::context::OperatorConfig {
                in_use_namespaces: watch.clone(),
                watch_namespaces: watch,
                image: OPERATOR_IMAGE.into(),
                poll: Duration::from_millis(300),
            },
            listen,
            leader_election: None,
        };
        let _ = regsweep::operator::run::run_with_client(client, opts).await;
    })
}

/// Every request the operator made is one its declared RBAC permits, and (with `watched`) was
/// confined to those namespaces, so namespaced Roles would have been enough.
fn assert_requests_permitted(cluster: &Cluster, watched: Option<&[&str]>) -> Vec<apiserver::ResourceRequest> {
    use regsweep::operator::rbac::{Scope, permits};
    let requests = cluster.server.requests_by(OPERATOR_USER);
    assert!(!requests.is_empty(), "the operator made no request as {OPERATOR_USER}");
    for r in &requests {
        let lease = permits(&[Scope::Operator], &r.verb, &r.group, &r.resource) && r.namespace.as_deref() == Some(OPERATOR_NAMESPACE);
        assert!(
            lease || permits(&[Scope::Policies, Scope::InUse], &r.verb, &r.group, &r.resource),
            "the operator made a request its RBAC does not declare (src/operator/rbac.rs): {r:?}"
        );
        if let Some(watched) = watched.filter(|_| !lease) {
            assert!(
                r.namespace.as_deref().is_some_and(|ns| watched.contains(&ns)),
                "a request outside the watched namespaces {watched:?}: {r:?}"
            );
        }
    }
    requests
}

/// Every permission the operator declares (but the leader Lease, tested with the election,
/// what only admission checks, and `except`: (verb, group, resource) another test uses) was
/// used: the RBAC grants nothing that is not needed.
fn assert_every_permission_used(requests: &[apiserver::ResourceRequest], except: &[(&str, &str, &str)]) {
    use regsweep::operator::rbac::{PERMISSIONS, Scope};
    for p in PERMISSIONS.iter().filter(|p| p.scope != Scope::Operator && !p.admission_only) {
        for verb in p.verbs.iter().filter(|v| !except.contains(&(**v, p.api_group, p.resource))) {
            assert!(
                requests.iter().any(|r| r.group == p.api_group && r.resource == p.resource && &r.verb == verb),
                "declared but never used: {verb} {}/{} ({}); remove it from src/operator/rbac.rs and the chart",
                p.api_group,
                p.resource,
                p.why
            );
        }
    }
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
    doc["spec"]["registry"]["credentialsSecret"] = "registry-auth".into();
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
        if started.elapsed() > Duration::from_secs(240) {
            let dump = cluster.kubectl(&["get", "rcp,deploy,job,pod,events", "-A", "-o", "yaml"]);
            panic!("the run of {name} did not finish:\n{}", String::from_utf8_lossy(&dump.stdout));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the policy's run has frozen the registry.
/// `kubectl delete` without waiting, then waits until the finalizer has let the policy go.
async fn delete_policy(cluster: &Cluster, name: &str) {
    cluster.kubectl_ok(&["delete", "rcp", name, "-n", "registry", "--wait=false"]);
    let api: Api<RegistryCleanupPolicy> = Api::namespaced(cluster.server.client(), "registry");
    wait_for("the policy to be gone", Duration::from_secs(60), || async { api.get_opt(name).await.ok().flatten().is_none() }).await;
}

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
    let _operator = start_operator_at(&cluster, listen, None);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));

    let started = Instant::now();
    while last_run(&cluster).await.is_none() {
        if started.elapsed() > Duration::from_secs(240) {
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
    let response = get("/metrics").await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "OpenMetrics text says so, or Prometheus's classic parser loses the counter types"
    );
    let metrics = response.text().await.unwrap();
    let policy = "namespace=\"registry\",policy=\"demo\"";
    assert!(metrics.contains(&format!("regsweep_runs_total{{{policy},result=\"Succeeded\"}} 1")), "{metrics}");
    assert!(metrics.contains(&format!("regsweep_reclaimed_bytes_total{{{policy}}} {}", run.bytes_reclaimed)), "{metrics}");
    assert!(metrics.contains(&format!("regsweep_registry_frozen{{{policy}}} 0")), "thawed: {metrics}");
    assert!(metrics.contains(&format!("regsweep_last_run_succeeded{{{policy}}} 1")), "{metrics}");
    assert!(metrics.contains(&format!("regsweep_last_success_timestamp_seconds{{{policy}}} {}", run.end.timestamp())), "{metrics}");

    // kubectl shows the result.
    let table = cluster.kubectl_ok(&["get", "rcp", "-n", "registry"]);
    assert!(table.contains("Succeeded"), "{table}");
    assert!(table.contains("Idle"), "{table}");
    // Every request the operator made is declared in its RBAC.
    assert_requests_permitted(&cluster, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quarantined_run_says_until_when_it_can_be_restored_and_restores() {
    let cluster = filled().await;
    let registry = cluster.registry();
    let tags_before = registry.tags("team-a/api").await.unwrap();
    let _operator = start_operator(&cluster);
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&policy_yaml(&cluster, false)).unwrap();
    doc["spec"]["quarantine"]["keepFor"] = "7d".into();
    cluster.apply("policy.yaml", &serde_yaml::to_string(&doc).unwrap());
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert!(run.manifests_deleted > 0 && run.quarantined_bytes > 0, "{run:?}");
    let until = run.quarantined_until.expect("a quarantined run says until when");
    assert!((until - run.start - chrono::Duration::days(7)).num_seconds().abs() < 120, "{until} is 7 days after {}", run.start);
    assert_eq!(status_of(&cluster, "demo").await.unwrap().history[0].quarantined_until, Some(until));
    let wide = cluster.kubectl_ok(&["get", "rcp", "-n", "registry", "-o", "wide"]);
    assert!(wide.contains("RESTORABLE UNTIL") && wide.contains(&until.format("%Y-%m-%d").to_string()), "{wide}");
    let gone = registry.tags("team-a/api").await.unwrap();
    assert!(gone.len() < tags_before.len(), "{gone:?}");

    // Restoring needs no freeze: against the thawed registry, through its API.
    wait_for("the registry to accept writes", Duration::from_secs(30), || async {
        matches!(registry.probe_write("team-a/api").await, Ok(WriteProbe::Accepted { .. }))
    })
    .await;
    use regsweep::quarantine::restore::{Selector, restore};
    restore(&registry, &[Selector::Run(run.id.clone())], false, chrono::Utc::now()).await.unwrap();
    assert_eq!(registry.tags("team-a/api").await.unwrap(), tags_before, "every tag is back");
    let verify = regsweep::verify::verify_registry(&registry).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_changes_nothing() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let tags_before = cluster.registry().tags("team-a/api").await.unwrap();
    // Watching only the registry's namespace: no request may leave it.
    let _operator = start_operator_at(&cluster, SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())), Some(&["registry"]));
    cluster.apply("policy.yaml", &policy_yaml(&cluster, true));
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert!(run.dry_run);
    assert_eq!((run.bytes_reclaimed, run.read_only_seconds), (0, 0));
    assert!(run.manifests_deleted > 0 && run.tags_deleted > 0 && run.bytes_estimated > 0, "what a real run would delete: {run:?}");
    assert!(run.reclaimed.ends_with("(dry run)"), "{}", run.reclaimed);
    assert_eq!(template(&cluster).await, before, "never frozen");
    assert_eq!(cluster.registry().tags("team-a/api").await.unwrap(), tags_before, "nothing deleted");
    assert_requests_permitted(&cluster, Some(&["registry"]));
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
    assert_requests_permitted(&cluster, None);
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
    assert_requests_permitted(&cluster, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_deleted_while_frozen_thaws_first_then_goes() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    wait_frozen(&cluster, "demo").await;
    delete_policy(&cluster, "demo").await;
    assert_thawed(&cluster, &before).await;
    assert_requests_permitted(&cluster, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_sweep_thaws_only_after_its_process_has_exited() {
    // A stand-in for regsweep whose sweep runs until SIGTERM and then takes 2 s to stop, like
    // a sweep draining its in-flight deletes.
    let (cluster, _script) = stand_in_sweep_cluster("sleep 2; exit 143").await;
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    wait_sweep_running(&cluster).await;
    delete_policy(&cluster, "demo").await;
    assert_thawed(&cluster, &before).await;

    wait_for("the sweep's pod to go", Duration::from_secs(30), || async {
        cluster.server.list_selected("v1/pods", "registry", "regsweep.dev/run").unwrap().is_empty()
    })
    .await;
    // The kubelet removes the sweep's pod only once its process has exited; the operator's
    // thaw (its first Deployment patch after the Job's deletion) must come after that.
    let log = cluster.server.requests_by(OPERATOR_USER);
    let job_deleted = log.iter().position(|r| r.verb == "delete" && r.resource == "jobs").expect("the operator deleted the Job");
    let thaw = log[job_deleted..].iter().position(|r| r.verb == "patch" && r.resource == "deployments").expect("a thaw") + job_deleted;
    let everyone = cluster.server.requests_by("");
    let sweep_pod = format!("{}-pod", log[job_deleted].name.as_deref().unwrap_or_default());
    let pod_gone = everyone
        .iter()
        .find(|r| r.verb == "delete" && r.resource == "pods" && r.name.as_deref() == Some(&sweep_pod))
        .expect("the kubelet removed the sweep pod");
    assert!(pod_gone.seq < log[thaw].seq, "the registry was thawed while the sweep still ran");

    let requests = assert_requests_permitted(&cluster, None);
    // Reading another policy's lock only happens with several policies, and a repeated Event
    // is only patched for a policy invalid twice with the same message (the tests below).
    assert_every_permission_used(&requests, &[("get", "regsweep.dev", "registrycleanuppolicies"), ("patch", "events.k8s.io", "events")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_policy_is_reported_and_never_runs() {
    let cluster = start().await;
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    let invalid = |pattern: &str| {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&policy_yaml(&cluster, false)).unwrap();
        doc["spec"]["rules"][0]["keepTags"] = vec![serde_yaml::Value::from(format!("regex:{pattern}"))].into();
        serde_yaml::to_string(&doc).unwrap()
    };
    let reported = |pattern: &'static str| {
        let cluster = &cluster;
        async move {
            wait_for("the policy to be reported invalid", Duration::from_secs(30), || async {
                let status = status_of(cluster, "demo").await.unwrap_or_default();
                status.phase.as_deref() == Some("Invalid")
                    && status.conditions.iter().any(|c| c.type_ == "Degraded" && c.status == "True" && c.message.contains(pattern))
            })
            .await
        }
    };
    // A, then B, then A again: the same Event a second time is a series (kube's recorder
    // patches it), not a new Event.
    cluster.apply("policy.yaml", &invalid("(unclosed"));
    reported("(unclosed").await;
    cluster.apply("policy.yaml", &invalid("[unclosed"));
    reported("[unclosed").await;
    cluster.apply("policy.yaml", &invalid("(unclosed"));
    wait_for("the repeated Event to be counted", Duration::from_secs(30), || async {
        cluster.server.list("events.k8s.io/v1/events", "registry").iter().any(|e| {
            e["reason"] == "InvalidPolicy"
                && e["series"]["count"].as_i64().unwrap_or(0) >= 2
                && e["note"].as_str().unwrap_or("").contains("(unclosed")
        })
    })
    .await;
    assert_eq!(template(&cluster).await, before, "never frozen");
    assert!(cluster.server.list("batch/v1/jobs", "registry").is_empty(), "never swept");
    assert_requests_permitted(&cluster, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_policies_on_one_registry_never_overlap() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    // Two at once (a race for the lock), a third while one of them holds it.
    cluster.apply("policies.yaml", &format!("{}---\n{}", named_policy(&cluster, "first", false), named_policy(&cluster, "second", false)));
    wait_for("a run to freeze the registry", Duration::from_secs(60), || async {
        regsweep::operator::lock::holder(
            &Api::<Deployment>::namespaced(cluster.server.client(), "registry").get("docker-registry").await.unwrap(),
        )
        .is_some()
    })
    .await;
    // The policy that lost the race says so on itself, with an Event, while it waits.
    wait_for("the waiting policy to report the lock", Duration::from_secs(60), || async {
        let mut found = false;
        for name in ["first", "second"] {
            found |= status_of(&cluster, name).await.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "RegistryLocked" && c.message.contains("locked by"))
            });
        }
        found
    })
    .await;
    assert!(cluster.server.list("events.k8s.io/v1/events", "registry").iter().any(|e| e["reason"] == "RegistryLocked"));
    cluster.apply("third.yaml", &named_policy(&cluster, "third", false));
    let mut runs = Vec::new();
    for name in ["first", "second", "third"] {
        let run = wait_finished(&cluster, name).await;
        assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{name}: {}", run.message);
        runs.push(run);
    }
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            assert!(a.end <= b.start || b.end <= a.start, "runs overlapped: {a:?} {b:?}");
        }
    }
    assert_thawed(&cluster, &before).await;

    let requests = assert_requests_permitted(&cluster, None);
    // Deleting a running Job only happens when a sweep is stopped, and a repeated Event is only
    // patched for a policy invalid twice with the same message (the tests above).
    assert_every_permission_used(&requests, &[("delete", "batch", "jobs"), ("patch", "events.k8s.io", "events")]);
}

/// Two `regsweep operator` processes, configured as the chart's two-replica install is: both
/// ready, one acts; when it is killed the other takes over the Lease and the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_one_leader_and_a_takeover() {
    let cluster = filled().await;
    let mut replicas = start_replicas(&cluster, &["replica-a", "replica-b"]).await;
    let holder = || lease_holder(&cluster);
    wait_for("a leader", Duration::from_secs(30), || async { holder().is_some() }).await;
    let leader = holder().unwrap();

    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    let first = wait_finished(&cluster, "demo").await;
    assert_eq!(first.result, regsweep::operator::phase::RunResult::Succeeded, "{}", first.message);

    // Kill the leader (SIGKILL: it cannot hand over); the standby takes the Lease once it
    // expires, and runs the next change of the policy.
    let at = replicas.iter().position(|(name, _, _)| *name == leader).expect("the leader is one of the replicas");
    let (_, _, mut killed) = replicas.remove(at);
    killed.start_kill().unwrap();
    let _ = killed.wait().await;
    let standby = replicas[0].0.clone();
    wait_for("the standby to take the Lease", Duration::from_secs(45), || async { holder().as_deref() == Some(standby.as_str()) }).await;
    cluster.kubectl_ok(&["-n", "registry", "patch", "rcp", "demo", "--type=merge", "-p", r#"{"spec":{"dryRun":true}}"#]);
    wait_for("the second run", Duration::from_secs(60), || async {
        last_run(&cluster).await.is_some_and(|r| r.id != first.id && r.result == regsweep::operator::phase::RunResult::Succeeded)
    })
    .await;
    let verify = regsweep::verify::verify_registry(&cluster.registry()).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
    let requests = assert_requests_permitted(&cluster, None);
    assert!(requests.iter().any(|r| r.resource == "leases" && r.verb == "update"), "the Lease was renewed or taken over");
}

/// `regsweep operator` processes configured as the chart's multi-replica install is (in the
/// operator's namespace, with its own user's kubeconfig), each waited for until ready:
/// (name, metrics address, process).
async fn start_replicas(cluster: &Cluster, names: &[&str]) -> Vec<(String, SocketAddr, tokio::process::Child)> {
    cluster.server.create_namespace(OPERATOR_NAMESPACE).unwrap();
    let kubeconfig = cluster.dir.path().join("operator-kubeconfig");
    cluster.server.write_kubeconfig(&kubeconfig, Some(OPERATOR_USER));
    let mut replicas = Vec::new();
    for name in names {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
            .args(["operator", &format!("--listen={listen}"), &format!("--image={OPERATOR_IMAGE}"), "--poll-seconds=1"])
            .args(["--leader-election", "--lease-name=sweeper-regsweep"])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env("POD_NAME", name)
            .env("REGSWEEP_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        replicas.push((name.to_string(), listen, child));
    }
    for (name, listen, _) in &replicas {
        wait_for(&format!("{name} to be ready"), Duration::from_secs(30), || async {
            reqwest::get(format!("http://{listen}/readyz")).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
    replicas
}

fn lease_holder(cluster: &Cluster) -> Option<String> {
    cluster
        .server
        .get("coordination.k8s.io/v1/leases", OPERATOR_NAMESPACE, "sweeper-regsweep")
        .map(|l| l["spec"]["holderIdentity"].as_str().unwrap_or_default().to_string())
}

/// A leader whose Lease renewals fail stops acting before the Lease can expire for the
/// standby (15 s): it exits, non-zero, within two thirds of the duration after its last
/// renewal, and the standby leads once renewals work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_cannot_renew_its_lease_stops_before_the_standby_may_take_over() {
    let cluster = start().await;
    let mut replicas = start_replicas(&cluster, &["replica-a", "replica-b"]).await;
    wait_for("a leader", Duration::from_secs(30), || async { lease_holder(&cluster).is_some() }).await;
    let leader = lease_holder(&cluster).unwrap();
    let renewed = || {
        cluster.server.get("coordination.k8s.io/v1/leases", OPERATOR_NAMESPACE, "sweeper-regsweep").and_then(|l| {
            l["spec"]["renewTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        })
    };
    // Let it renew once, so the fault starts from a renewal the test knows.
    let first = renewed().unwrap();
    wait_for("a renewal", Duration::from_secs(15), || async { renewed().is_some_and(|t| t > first) }).await;

    cluster.server.inject_fault("update", "leases", 500);
    let last_renewal = renewed().unwrap();
    let at = replicas.iter().position(|(name, _, _)| *name == leader).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), replicas[at].2.wait())
        .await
        .expect("the leader whose renewals fail must exit; it kept running")
        .unwrap();
    let stopped = chrono::Utc::now();
    assert!(!status.success(), "stepping down is a failure the Deployment restarts: {status}");
    let held = (stopped - last_renewal).to_std().unwrap();
    assert!(held < Duration::from_secs(15), "it exited {held:?} after its last renewal, after the Lease (15 s) may have expired");
    assert_eq!(lease_holder(&cluster).as_deref(), Some(leader.as_str()), "nobody else could take the Lease meanwhile");

    cluster.server.clear_faults();
    let standby = replicas[1 - at].0.clone();
    wait_for("the standby to take the Lease", Duration::from_secs(45), || async {
        lease_holder(&cluster).as_deref() == Some(standby.as_str())
    })
    .await;
    assert!(replicas[1 - at].2.try_wait().unwrap().is_none(), "the standby keeps running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_on_a_lease() {
    use regsweep::operator::leader::Elector;
    let server = apiserver::ApiServer::start().await;
    server.create_namespace(OPERATOR_NAMESPACE).unwrap();
    let ttl = Duration::from_secs(2);
    let a = Elector::new(server.client_as(OPERATOR_USER), OPERATOR_NAMESPACE, "regsweep-operator", "a", ttl);
    let b = Elector::new(server.client_as(OPERATOR_USER), OPERATOR_NAMESPACE, "regsweep-operator", "b", ttl);
    assert!(a.try_acquire_or_renew().await.unwrap(), "the first candidate leads");
    assert!(!b.try_acquire_or_renew().await.unwrap(), "the second waits");
    assert!(a.try_acquire_or_renew().await.unwrap(), "the leader renews");
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    assert!(b.try_acquire_or_renew().await.unwrap(), "an expired Lease is taken over");
    assert!(!a.try_acquire_or_renew().await.unwrap(), "the old leader has lost it");

    // The election uses exactly the Lease permission it declares, in its own namespace.
    use regsweep::operator::rbac::{PERMISSIONS, Scope, permits};
    let requests = server.requests_by(OPERATOR_USER);
    for r in &requests {
        assert!(permits(&[Scope::Operator], &r.verb, &r.group, &r.resource), "undeclared: {r:?}");
        assert_eq!(r.namespace.as_deref(), Some(OPERATOR_NAMESPACE), "{r:?}");
    }
    let lease = PERMISSIONS.iter().find(|p| p.scope == Scope::Operator).unwrap();
    for verb in lease.verbs {
        assert!(requests.iter().any(|r| &r.verb == verb), "declared but unused: {verb} leases");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_credentials_secret_is_reported_before_anything_is_frozen() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    cluster.kubectl_ok(&["delete", "secret", "registry-auth", "-n", "registry"]);
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    wait_for("the missing Secret to be reported on the policy", Duration::from_secs(60), || async {
        status_of(&cluster, "demo").await.is_some_and(|s| {
            s.conditions.iter().any(|c| c.type_ == "Degraded" && c.status == "True" && c.message.contains("registry-auth"))
        })
    })
    .await;
    let status = status_of(&cluster, "demo").await.unwrap();
    assert!(status.run.is_none(), "no run was started: {:?}", status.run);
    assert_eq!(template(&cluster).await, before, "the registry was never frozen");
    let events = cluster.server.list("events.k8s.io/v1/events", "registry");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "SecretError"
                && e["note"].as_str().is_some_and(|n| n.contains("registry-auth") && n.contains("not frozen"))),
        "{events:?}"
    );
    // Once the Secret is back, the next check lets the run go.
    cluster.apply(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: registry-auth, namespace: registry}\ndata: {username: c3dlZXBlcg==, password: aHVudGVyMg==}\n",
    );
    let run = tokio::time::timeout(Duration::from_secs(90), wait_finished(&cluster, "demo")).await.expect("the run went ahead");
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert_thawed(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probe_that_fails_while_frozen_still_thaws_within_max_read_only() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&policy_yaml(&cluster, false)).unwrap();
    doc["spec"]["maintenance"]["maxReadOnlyDuration"] = "8s".into();
    let started = Instant::now();
    cluster.apply("policy.yaml", &serde_yaml::to_string(&doc).unwrap());
    // Fault injection: the credentials vanish the moment the freeze is recorded, before the
    // write probe that must prove it (the rollout alone takes longer than this loop).
    let rcp = "regsweep.dev/v1alpha1/registrycleanuppolicies";
    loop {
        let frozen = cluster.server.get(rcp, "registry", "demo").is_some_and(|p| !p["status"]["run"]["frozenAt"].is_null());
        if frozen {
            cluster.server.delete("v1/secrets", "registry", "registry-auth").unwrap();
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never frozen");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Failed, "{}", run.message);
    assert!(run.message.contains("maxReadOnlyDuration"), "{}", run.message);
    assert!(run.message.contains("registry-auth"), "the probe's error is said: {}", run.message);
    assert!(started.elapsed() < Duration::from_secs(45), "thawed soon after the deadline: {:?}", started.elapsed());
    assert_thawed(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_down_with_a_url_sweeps_and_thaws() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let replicas = |c: &Cluster| {
        let c = c.server.client();
        async move { Api::<Deployment>::namespaced(c, "registry").get("docker-registry").await.unwrap().spec.replicas }
    };
    let replicas_before = replicas(&cluster).await;
    let _operator = start_operator(&cluster);
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&policy_yaml(&cluster, false)).unwrap();
    doc["spec"]["maintenance"]["mode"] = "ScaleDown".into();
    cluster.apply("policy.yaml", &serde_yaml::to_string(&doc).unwrap());
    let run = tokio::time::timeout(Duration::from_secs(120), wait_finished(&cluster, "demo")).await.expect("the run finished");
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert_eq!(replicas(&cluster).await, replicas_before, "the replicas are restored");
    assert_thawed(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_edited_mid_run_keeps_the_run_on_the_spec_it_started_with() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    wait_frozen(&cluster, "demo").await;
    // Mid-run, the policy now names another (missing) Deployment and a dead URL.
    let patch = serde_json::json!({"spec": {"registry": {"deployment": "some-other-registry", "url": "http://127.0.0.1:9"}}});
    cluster.server.patch("regsweep.dev/v1alpha1/registrycleanuppolicies", "registry", "demo", patch).unwrap();
    let run = tokio::time::timeout(Duration::from_secs(120), wait_finished(&cluster, "demo")).await.expect("the run finished");
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert_thawed(&cluster, &before).await;
}

/// `scripts/operator-demo.sh`: the whole operator on this machine, for a person to watch with
/// the real `kubectl` — until SIGTERM or SIGINT, then everything is stopped and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "runs until interrupted; start it with scripts/operator-demo.sh"]
async fn operator_on_one_machine() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = (signal(SignalKind::terminate()).unwrap(), signal(SignalKind::interrupt()).unwrap());
    let cluster = filled().await;
    let kubeconfig =
        std::env::var_os("REGSWEEP_DEMO_KUBECONFIG").map(std::path::PathBuf::from).unwrap_or_else(|| cluster.dir.path().join("kubeconfig"));
    cluster.server.write_kubeconfig(&kubeconfig, None);
    let _operator = start_operator(&cluster);
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&policy_yaml(&cluster, false)).unwrap();
    doc["metadata"]["name"] = "nightly".into();
    cluster.apply("policy.yaml", &serde_yaml::to_string(&doc).unwrap());
    let k = kubeconfig.display();
    println!("kubeconfig: {k}");
    println!("registry:   {}", cluster.registry_url);
    println!("watch:      kubectl --kubeconfig {k} get rcp -n registry -w");
    println!("details:    kubectl --kubeconfig {k} describe rcp -n registry nightly");
    println!("edit:       kubectl --kubeconfig {k} edit rcp -n registry nightly     (a new generation runs again)");
    println!("break it:   kubectl --kubeconfig {k} delete secret -n registry registry-auth");
    println!("stop:       Ctrl-C or SIGTERM");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    println!("stopping: the operator, the registry and every file of this demo go");
    if std::env::var_os("REGSWEEP_DEMO_KUBECONFIG").is_some() {
        let _ = std::fs::remove_file(&kubeconfig);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_deployment_deleted_mid_run_ends_the_run_and_says_so() {
    let (cluster, _script) = stand_in_sweep_cluster("exit 143").await;
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    wait_sweep_running(&cluster).await;
    cluster.kubectl_ok(&["delete", "deployment", "docker-registry", "-n", "registry", "--wait=false"]);
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Failed, "{}", run.message);
    assert!(run.message.contains("docker-registry was deleted during the run"), "{}", run.message);
    let status = status_of(&cluster, "demo").await.unwrap();
    assert!(status.run.is_none(), "no run is left in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_job_is_not_restarted_on_a_reverted_freeze() {
    let (cluster, _script) = stand_in_sweep_cluster("exit 143").await;
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    wait_sweep_running(&cluster).await;
    // Fault injection: another tool reverts the read-only switch and the Job disappears, together.
    let job = cluster.server.get("regsweep.dev/v1alpha1/registrycleanuppolicies", "registry", "demo").unwrap()["status"]["run"]["job"]
        .as_str()
        .unwrap()
        .to_string();
    // Requests before this point made the one Job (a create retried after a conflict is a 409).
    let before_fault = cluster.server.requests_by(OPERATOR_USER).len();
    let mut deploy = cluster.server.get("apps/v1/deployments", "registry", "docker-registry").unwrap();
    let env = deploy["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    let reverted: Vec<_> = env.into_iter().filter(|e| e["name"] != "REGISTRY_STORAGE_MAINTENANCE_READONLY").collect();
    deploy["spec"]["template"]["spec"]["containers"][0]["env"] = reverted.into();
    cluster.server.update("apps/v1/deployments", "registry", deploy).unwrap();
    cluster.server.delete("batch/v1/jobs", "registry", &job).unwrap();
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Failed, "{}", run.message);
    assert!(run.message.contains("freeze") || run.message.contains("read-only"), "{}", run.message);
    let after = cluster.server.requests_by(OPERATOR_USER);
    let recreated = after[before_fault..].iter().filter(|r| r.verb == "create" && r.resource == "jobs").count();
    assert_eq!(recreated, 0, "no second sweep was started on a writable registry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_use_protection_knows_the_registry_by_its_service_without_hosts() {
    let cluster = filled().await;
    let _operator = start_operator(&cluster);
    // Workloads pull the registry by its Service's name; the policy lists no hosts.
    cluster.apply(
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: docker-registry, namespace: registry}\nspec:\n  selector: {app: registry}\n  ports: [{port: 5000}]\n",
    );
    cluster.apply(
        "workload.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: apps}\nspec:\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec:\n      containers: [{name: api, image: \"docker-registry.registry.svc:5000/team-a/api:build-101\"}]\n",
    );
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&policy_yaml(&cluster, false)).unwrap();
    doc["spec"]["registry"]["hosts"] = serde_yaml::Value::Sequence(Vec::new());
    cluster.apply("policy.yaml", &serde_yaml::to_string(&doc).unwrap());
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert!(run.in_use_protected >= 1, "{run:?}");
    wait_for("the registry to accept writes", Duration::from_secs(30), || async {
        matches!(cluster.registry().probe_write("team-a/api").await, Ok(WriteProbe::Accepted { .. }))
    })
    .await;
    let tags = cluster.registry().tags("team-a/api").await.unwrap();
    assert!(tags.contains(&"build-101".to_string()), "the image in use survived: {tags:?}");
    assert!(!tags.contains(&"build-102".to_string()), "its old sibling, not in use, went: {tags:?}");
}

/// A cluster whose "sweep" is a stand-in that runs until SIGTERM, then runs `on_term`: a fault
/// injected while it runs always lands mid-sweep. The script's directory must outlive the
/// cluster.
async fn stand_in_sweep_cluster(on_term: &str) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("stand-in-sweep");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nif [ \"$1\" = copy-self ]; then cp \"$0\" \"$2\"; chmod 755 \"$2\"; exit 0; fi\ntrap '{on_term}' TERM\nwhile :; do sleep 0.1; done\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cluster = start_with(script.to_str().unwrap()).await;
    regsweep::demo::fill(&cluster.registry(), &regsweep::storage::Layout::new(cluster.dir.path().join("storage"))).await.unwrap();
    (cluster, dir)
}

async fn wait_sweep_running(cluster: &Cluster) {
    wait_for("the sweep to run", Duration::from_secs(60), || async {
        cluster.server.list_selected("v1/pods", "registry", "regsweep.dev/run").unwrap().iter().any(|p| p["status"]["phase"] == "Running")
    })
    .await;
}

/// The operator comes back (after an upgrade, say) long after a scheduled tick: with a
/// starting deadline the tick is skipped and reported (Event, status) and the registry is
/// left alone; without one the tick runs at once, as a CronJob's would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_missed_beyond_its_starting_deadline_is_skipped_and_reported() {
    use chrono::{Datelike, TimeZone, Utc};
    let cluster = filled().await;
    let before = template(&cluster).await;
    let year = Utc::now().year();
    let (last_tick, next_tick) =
        (Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0).unwrap());
    for (name, deadline) in [("late", Some(300)), ("no-deadline", None)] {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&named_policy(&cluster, name, name == "no-deadline")).unwrap();
        doc["spec"]["schedule"] = "0 0 1 1 *".into();
        if let Some(d) = deadline {
            doc["spec"]["startingDeadlineSeconds"] = d.into();
        }
        cluster.apply(&format!("{name}.yaml"), &serde_yaml::to_string(&doc).unwrap());
        // What the operator wrote before it went away: the tick a year before the last one.
        let previous = Utc.with_ymd_and_hms(year - 1, 1, 1, 0, 0, 0).unwrap();
        cluster
            .server
            .patch_status(
                "regsweep.dev/v1alpha1/registrycleanuppolicies",
                "registry",
                name,
                serde_json::json!({"status": {"lastScheduleTime": previous.to_rfc3339()}}),
            )
            .unwrap();
    }
    let _operator = start_operator(&cluster);

    let ran = wait_finished(&cluster, "no-deadline").await;
    assert_eq!(ran.result, regsweep::operator::phase::RunResult::Succeeded, "{}", ran.message);
    wait_for("the missed tick to be reported", Duration::from_secs(30), || async {
        cluster.server.list("events.k8s.io/v1/events", "registry").iter().any(|e| {
            e["reason"] == "MissedSchedule" && e["regarding"]["name"] == "late" && e["note"].as_str().is_some_and(|n| n.contains("300s"))
        })
    })
    .await;
    let status = status_of(&cluster, "late").await.unwrap();
    assert!(status.last_run.is_none() && status.run.is_none(), "the missed tick did not run: {status:?}");
    assert_eq!(status.last_schedule_time, Some(last_tick), "the skipped tick is recorded, so it is not run later either");
    assert_eq!(status.next_run_time, Some(next_tick));
    assert_eq!(template(&cluster).await, before, "the registry was never frozen for it");
}

/// In a namespace with a ResourceQuota on compute resources every container of every pod
/// must declare them, the sweep's init container too: otherwise the sweep pod is refused
/// while the registry waits frozen. The policy's `maintenance.resources` go to the sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweep_runs_in_a_namespace_whose_resource_quota_requires_resources() {
    let cluster = filled().await;
    let resources = r#"{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"cpu":"500m","memory":"256Mi"}}"#;
    let registry_patch = format!(r#"[{{"op":"add","path":"/spec/template/spec/containers/0/resources","value":{resources}}}]"#);
    cluster.kubectl_ok(&["-n", "registry", "patch", "deploy", "docker-registry", "--type=json", "-p", &registry_patch]);
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: compute, namespace: registry}\nspec:\n  hard: {requests.cpu: '4', requests.memory: 4Gi, limits.cpu: '8', limits.memory: 8Gi}\n";
    cluster.apply("quota.yaml", quota);
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&policy_yaml(&cluster, false)).unwrap();
    doc["spec"]["maintenance"]["maxReadOnlyDuration"] = "60s".into();
    doc["spec"]["maintenance"]["resources"] = serde_yaml::from_str(resources).unwrap();
    cluster.apply("policy.yaml", &serde_yaml::to_string(&doc).unwrap());
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert_thawed(&cluster, &before).await;
    let sweep_pods = cluster.server.requests_by("").into_iter().filter(|r| r.verb == "create" && r.resource == "pods").count();
    assert!(sweep_pods >= 1, "the kubelet created pods through the quota");
}

/// The controller's cache lags behind the operator's own writes (watch events arrive 3 s
/// late): a reconcile that starts from the stale copy must not overwrite the run in flight
/// (it used to report "lock held" on the stale status, which erased the run and leaked the
/// lock). The run still freezes, sweeps, thaws and reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_watch_cache_never_loses_the_run_in_flight() {
    let cluster = filled().await;
    cluster.server.delay_watches(Duration::from_millis(3000));
    let before = template(&cluster).await;
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &policy_yaml(&cluster, false));
    let run = wait_finished(&cluster, "demo").await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert_thawed(&cluster, &before).await;
    // From the run's start to its end, every stored version of the policy carries it.
    let versions = cluster.server.versions("regsweep.dev/v1alpha1/registrycleanuppolicies", "registry", "demo");
    let status = |v: &serde_json::Value, k: &str| v["status"][k].clone();
    let started = versions.iter().position(|v| !status(v, "run").is_null()).expect("the run was recorded");
    let ended = versions.iter().position(|v| !status(v, "lastRun").is_null()).expect("the run ended");
    for v in &versions[started..ended] {
        assert!(!status(v, "run").is_null(), "the run in flight was erased from the status: {:#}", v["status"]);
    }
    let own_lock = cluster.server.list("events.k8s.io/v1/events", "registry").into_iter().find(|e| e["reason"] == "RegistryLocked");
    assert!(own_lock.is_none(), "the policy was told its own run holds the lock: {own_lock:?}");
}

fn with_spec(cluster: &Cluster, extra: &[(&str, serde_yaml::Value)]) -> String {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&policy_yaml(cluster, false)).unwrap();
    for (key, value) in extra {
        doc["spec"][*key] = value.clone();
    }
    serde_yaml::to_string(&doc).unwrap()
}

/// Waits for a plan to be pending in `phase`.
async fn wait_pending(cluster: &Cluster, phase: &str) -> regsweep::policy::RegistryCleanupPolicyStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = status_of(cluster, "demo").await
            && s.pending_plan.is_some()
            && s.run.is_none()
            && s.phase.as_deref() == Some(phase)
        {
            return s;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let dump = cluster.kubectl(&["get", "rcp,job,pod", "-A", "-o", "yaml"]);
            panic!("no plan became pending in {phase}:\n{}", String::from_utf8_lossy(&dump.stdout));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for a run that executed a plan (not a review) to finish.
async fn wait_executed(cluster: &Cluster) -> regsweep::policy::RunSummary {
    let started = Instant::now();
    loop {
        if let Some(run) = last_run(cluster).await.filter(|r| !r.review) {
            return run;
        }
        assert!(started.elapsed() < Duration::from_secs(240), "no run executed the plan: {:?}", status_of(cluster, "demo").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition(status: &regsweep::policy::RegistryCleanupPolicyStatus, type_: &str) -> (String, String) {
    let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manual_approval_waits_and_the_annotation_starts_the_run() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let tags_before = cluster.registry().tags("team-a/api").await.unwrap();
    let _operator = start_operator(&cluster);
    cluster.apply("policy.yaml", &with_spec(&cluster, &[("approval", "Manual".into())]));
    let status = wait_pending(&cluster, "AwaitingApproval").await;
    let pending = status.pending_plan.clone().unwrap();
    assert!(pending.id.starts_with("plan-") && pending.tags_deleted > 0 && !pending.largest.is_empty(), "{pending:?}");
    assert!(pending.details.contains("kubectl logs") && pending.details.contains(".regsweep/plans/"), "{}", pending.details);
    assert_eq!(condition(&status, "Ready"), ("True".into(), "AwaitingApproval".into()), "reconciled: kstatus reads Ready");
    assert_eq!(condition(&status, "Stalled").0, "False", "waiting for a person is not a failure");
    assert!(status.last_run.as_ref().is_some_and(|r| r.review && r.plan_id == pending.id));
    assert_eq!(template(&cluster).await, before, "nothing is frozen while the plan waits");
    assert_eq!(cluster.registry().tags("team-a/api").await.unwrap(), tags_before);

    // An id that is not the pending plan's is refused, and runs nothing.
    let annotate = |id: &str| format!("{}={id}", regsweep::operator::review::APPROVE_ANNOTATION);
    cluster.kubectl_ok(&["annotate", "rcp", "demo", "-n", "registry", &annotate("plan-00000000000000000000"), "--overwrite"]);
    wait_for("the approval to be refused", Duration::from_secs(30), || async {
        status_of(&cluster, "demo").await.and_then(|s| s.pending_plan).is_some_and(|p| p.refused.is_some())
    })
    .await;
    assert_eq!(template(&cluster).await, before);

    cluster.kubectl_ok(&["annotate", "rcp", "demo", "-n", "registry", &annotate(&pending.id), "--overwrite"]);
    let run = wait_executed(&cluster).await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert_eq!(run.plan_id, pending.id);
    assert_eq!(run.tags_deleted, pending.tags_deleted, "nothing changed since the review: the approved plan ran whole");
    assert!(status_of(&cluster, "demo").await.unwrap().pending_plan.is_none());
    assert_thawed(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plan_over_its_limit_is_held_until_the_limit_is_raised() {
    let cluster = filled().await;
    let before = template(&cluster).await;
    let tags_before = cluster.registry().tags("team-a/api").await.unwrap();
    let _operator = start_operator(&cluster);
    let limits = |n: u64| serde_yaml::to_value(serde_json::json!({"maxDeletedTags": n})).unwrap();
    cluster.apply("policy.yaml", &with_spec(&cluster, &[("limits", limits(1))]));
    let status = wait_pending(&cluster, "Held").await;
    let pending = status.pending_plan.clone().unwrap();
    let over = pending.over_limit.clone().expect("held over the limit");
    assert!(over.contains("maxDeletedTags 1") && over.contains("nothing was changed"), "{over}");
    assert_eq!(condition(&status, "Stalled"), ("True".into(), "OverLimit".into()));
    wait_for("an OverLimit Event", Duration::from_secs(30), || async {
        cluster.server.list("events.k8s.io/v1/events", "registry").iter().any(|e| e["reason"] == "OverLimit")
    })
    .await;
    assert_eq!(template(&cluster).await, before, "a held run never freezes");
    assert_eq!(cluster.registry().tags("team-a/api").await.unwrap(), tags_before);

    // Raising the limit is a new generation: a new review, within the limit, then the run.
    cluster.apply("policy.yaml", &with_spec(&cluster, &[("limits", limits(10_000))]));
    let run = wait_executed(&cluster).await;
    assert_eq!(run.result, regsweep::operator::phase::RunResult::Succeeded, "{}", run.message);
    assert!(run.tags_deleted > 0);
    assert!(status_of(&cluster, "demo").await.unwrap().pending_plan.is_none());
    assert_thawed(&cluster, &before).await;
}
