//! A simulated kubelet and workload controllers for the operator's end-to-end tests: it runs
//! Deployments and Jobs from one namespace as real local processes, through the Kubernetes API
//! (any API server), so the operator meets real registry processes and real `regsweep
//! maintenance` runs.
//!
//! - A Deployment's registry container runs as `docker-registry serve CONFIG` with the
//!   template's env; when the pod template changes the process is replaced (a rollout), and
//!   the Deployment's status reports the rollout the way the real controller does. `replicas: 0`
//!   stops it. One Pod object per running replica, on node `node-1`.
//! - A Job runs its init containers, then its main container, as processes. emptyDir and
//!   ConfigMap volumes become temporary directories, and paths under their mount points in the
//!   command line are rewritten there; `/dev/termination-log` becomes a file whose content is
//!   reported as the container's termination message. Images map to local binaries. The pod
//!   object exists while the Job runs; deleting the Job sends its process SIGTERM, and the pod
//!   object goes once the process has exited.
//!
//! Simplified: one replica per Deployment at most; hostPath volumes are used as they are (so
//! tests mount host directories at their own paths); no restarts, probes or resource limits (but the API server's
//! ResourceQuota admission applies to the pods it creates).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus, Secret,
};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

/// Which local binary stands for which image.
#[derive(Clone)]
pub struct Images {
    /// The registry image's `registry` binary.
    pub registry: PathBuf,
    /// The operator image's `regsweep` binary.
    pub regsweep: PathBuf,
    pub operator_image: String,
}

struct Running {
    hash: String,
    child: tokio::process::Child,
}

pub struct Kubelet {
    stop: tokio::sync::watch::Sender<bool>,
    running: Arc<Mutex<BTreeMap<String, Running>>>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Ok(mut running) = self.running.try_lock() {
            for (_, r) in running.iter_mut() {
                let _ = r.child.start_kill();
            }
        }
    }
}

fn template_hash(d: &Deployment) -> String {
    let text = serde_json::to_string(&d.spec.template).unwrap();
    regsweep::digest::Digest::of(text.as_bytes()).short().to_string()
}

async fn env_of(client: &Client, ns: &str, c: &Container) -> Vec<(String, String)> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            out.push((e.name.clone(), v.clone()));
        } else if let Some(sel) = e.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref())
            && let Ok(s) = secrets.get(&sel.name).await
            && let Some(v) = s.data.as_ref().and_then(|d| d.get(&sel.key))
        {
            out.push((e.name.clone(), String::from_utf8_lossy(&v.0).to_string()));
        }
    }
    out
}

fn command(images: &Images, c: &Container, image_default: &[&str], mounts: &BTreeMap<String, PathBuf>) -> (PathBuf, Vec<String>) {
    let rewrite = |s: &str| -> String {
        for (mount, dir) in mounts {
            if let Some(rest) = s.strip_prefix(mount.as_str()) {
                return format!("{}{rest}", dir.display());
            }
        }
        s.to_string()
    };
    let image = c.image.clone().unwrap_or_default();
    let entry = if image == images.operator_image { images.regsweep.clone() } else { images.registry.clone() };
    let mut words: Vec<String> = match &c.command {
        Some(cmd) => cmd.iter().map(|s| rewrite(s)).collect(),
        None => vec![entry.display().to_string()],
    };
    match &c.args {
        Some(args) => words.extend(args.iter().map(|s| rewrite(s))),
        None if c.command.is_none() => words.extend(image_default.iter().map(|s| s.to_string())),
        None => {}
    }
    let program = PathBuf::from(words.remove(0));
    (program, words)
}

impl Kubelet {
    pub fn start(client: Client, namespace: &str, images: Images) -> Kubelet {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let running: Arc<Mutex<BTreeMap<String, Running>>> = Arc::default();
        let ns = namespace.to_string();
        let state = running.clone();
        tokio::spawn(async move {
            let mut jobs_started = std::collections::BTreeSet::new();
            loop {
                if *stopped.borrow() {
                    break;
                }
                if let Err(e) = deployments(&client, &ns, &images, &state).await {
                    eprintln!("kubelet: deployments: {e}");
                }
                if let Err(e) = jobs(&client, &ns, &images, &mut jobs_started).await {
                    eprintln!("kubelet: jobs: {e}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(150)) => {}
                    _ = stopped.changed() => {}
                }
            }
            for (_, mut r) in std::mem::take(&mut *state.lock().await) {
                let _ = r.child.kill().await;
            }
        });
        Kubelet { stop, running }
    }
}

async fn deployments(client: &Client, ns: &str, images: &Images, state: &Mutex<BTreeMap<String, Running>>) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for d in api.list(&ListParams::default()).await? {
        let name = d.name_any();
        let want = d.spec.replicas.unwrap_or(1).min(1);
        let hash = template_hash(&d);
        let mut running = state.lock().await;
        let current = running.get(&name).map(|r| r.hash.clone());
        if (want == 0 || current.as_deref().is_some_and(|h| h != hash))
            && let Some(mut old) = running.remove(&name)
        {
            if let Some(pid) = old.child.id() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), old.child.wait()).await;
            let _ = pods.delete(&format!("{name}-{}", old.hash), &DeleteParams::default()).await;
        }
        if want == 1 && !running.contains_key(&name) {
            let spec = d.spec.template.spec.clone().unwrap_or_default();
            let c = &spec.containers[0];
            let (program, args) = command(images, c, &["serve", "/etc/docker/registry/config.yml"], &BTreeMap::new());
            let env = env_of(client, ns, c).await;
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(&args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let child = cmd.spawn()?;
            running.insert(name.clone(), Running { hash: hash.clone(), child });
            let labels = d.spec.template.metadata.as_ref().and_then(|m| m.labels.clone());
            let pod = Pod {
                metadata: kube::api::ObjectMeta { name: Some(format!("{name}-{hash}")), labels, ..Default::default() },
                spec: Some(PodSpec { node_name: Some("node-1".into()), ..spec.clone() }),
                status: None,
            };
            let _ = pods.create(&PostParams::default(), &pod).await;
        }
        drop(running);
        // Report the rollout once the registry answers (or nothing runs, for zero replicas).
        let ready = if want == 0 { true } else { registry_answers(&d).await };
        if ready {
            let status = DeploymentStatus {
                observed_generation: d.metadata.generation,
                replicas: Some(want),
                updated_replicas: Some(want),
                available_replicas: Some(want),
                ready_replicas: Some(want),
                ..Default::default()
            };
            if d.status.as_ref() != Some(&status) {
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
            }
        }
    }
    Ok(())
}

/// The registry answers on the address in its config (tests put `http.addr` there).
async fn registry_answers(d: &Deployment) -> bool {
    let Some(addr) = d.metadata.annotations.as_ref().and_then(|a| a.get("test/registry-url")) else { return true };
    reqwest::get(format!("{addr}/v2/")).await.is_ok()
}

async fn jobs(client: &Client, ns: &str, images: &Images, started: &mut std::collections::BTreeSet<String>) -> anyhow::Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    for job in api.list(&ListParams::default()).await? {
        let uid = job.uid().unwrap_or_default();
        if !started.insert(uid) {
            continue;
        }
        let (client, ns, images) = (client.clone(), ns.to_string(), images.clone());
        tokio::spawn(async move {
            if let Err(e) = run_job(&client, &ns, &images, job).await {
                eprintln!("kubelet: job: {e}");
            }
        });
    }
    Ok(())
}

async fn run_job(client: &Client, ns: &str, images: &Images, job: Job) -> anyhow::Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let name = job.name_any();
    let template = job.spec.clone().unwrap_or_default().template;
    let spec = template.spec.clone().unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let mut mounts: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut volume_dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for v in spec.volumes.iter().flatten() {
        let path = dir.path().join(&v.name);
        if v.empty_dir.is_some() {
            std::fs::create_dir_all(&path)?;
            volume_dirs.insert(v.name.clone(), path);
        } else if let Some(cm) = &v.config_map {
            std::fs::create_dir_all(&path)?;
            let map = Api::<ConfigMap>::namespaced(client.clone(), ns).get(&cm.name).await?;
            for (k, val) in map.data.unwrap_or_default() {
                std::fs::write(path.join(k), val)?;
            }
            volume_dirs.insert(v.name.clone(), path);
        }
    }
    let all_containers: Vec<&Container> = spec.init_containers.iter().flatten().chain(spec.containers.iter()).collect();
    for c in &all_containers {
        for m in c.volume_mounts.iter().flatten() {
            if let Some(d) = volume_dirs.get(&m.name) {
                mounts.insert(m.mount_path.clone(), d.clone());
            }
        }
    }
    let termination = dir.path().join("termination-log");
    mounts.insert("/dev/termination-log".into(), termination.clone());
    // The pod exists while it runs (phase Running), as on a real node. A pod the API server
    // refuses (a ResourceQuota, say) never runs: the Job stays without an active pod, as the
    // real Job controller leaves it while it retries.
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod_name = format!("{name}-pod");
    let pod = Pod {
        metadata: kube::api::ObjectMeta { name: Some(pod_name.clone()), labels, ..Default::default() },
        spec: Some(spec.clone()),
        status: None,
    };
    pods.create(&PostParams::default(), &pod).await?;
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": JobStatus { start_time: Some(now.clone()), active: Some(1), ..Default::default() }})),
    )
    .await?;
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}}))).await?;
    let mut exit_ok = true;
    let mut logs = String::new();
    for c in &all_containers {
        let (program, args) = command(images, c, &[], &mounts);
        let env = env_of(client, ns, c).await;
        let mut child = tokio::process::Command::new(&program)
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stderr = child.stderr.take().expect("piped stderr");
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            text
        });
        // A deleted Job stops its pod: SIGTERM, and the pod object goes once the process has
        // exited (a real pod lingers, terminating, for the same time).
        let status = loop {
            tokio::select! {
                status = child.wait() => break status?,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    let gone = api.get_opt(&name).await?.is_none_or(|j| j.metadata.deletion_timestamp.is_some());
                    if gone {
                        if let Some(pid) = child.id() {
                            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
                        }
                        let _ = child.wait().await;
                        pods.delete(&pod_name, &DeleteParams::default()).await?;
                        return Ok(());
                    }
                }
            }
        };
        logs = reader.await.unwrap_or_default();
        if !status.success() {
            exit_ok = false;
            break;
        }
    }
    let message = std::fs::read_to_string(&termination)
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| logs.lines().rev().take(5).collect::<Vec<_>>().join("\n"));
    let pod_status = PodStatus {
        phase: Some(if exit_ok { "Succeeded" } else { "Failed" }.into()),
        container_statuses: Some(vec![ContainerStatus {
            name: spec.containers[0].name.clone(),
            image: spec.containers[0].image.clone().unwrap_or_default(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: if exit_ok { 0 } else { 1 },
                    message: Some(message.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(json!({"status": pod_status}))).await?;
    let condition = JobCondition {
        type_: if exit_ok { "Complete" } else { "Failed" }.into(),
        status: "True".into(),
        message: (!exit_ok).then(|| message.clone()),
        ..Default::default()
    };
    let status = JobStatus {
        start_time: Some(now),
        succeeded: exit_ok.then_some(1),
        failed: (!exit_ok).then_some(1),
        active: Some(0),
        conditions: Some(vec![condition]),
        ..Default::default()
    };
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(())
}
