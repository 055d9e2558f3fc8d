//! Fetching what a run needs to decide its next step: the registry Deployment and its pods,
//! the sweep Job and its termination message, the registry volume's access modes, and a write
//! probe against the public URL.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::error::Error;
use super::freeze::{FreezeMethod, is_frozen};
use super::phase::{JobView, RunPhase, World};
use super::rollout::{Rollout, rollout};
use crate::policy::{RegistryCleanupPolicy, RunOutcome, RunState, compile};
use crate::registry::{ClientOptions, RegistryClient, WriteProbe};

pub async fn deployment(client: &Client, ns: &str, policy: &RegistryCleanupPolicy) -> Result<Deployment, Error> {
    let name = policy.spec.registry.deployment.as_deref().ok_or(Error::NoDeployment)?;
    Api::<Deployment>::namespaced(client.clone(), ns).get_opt(name).await?.ok_or_else(|| Error::DeploymentNotFound(name.to_string()))
}

/// Access modes of the PVCs the registry pod mounts, and whether it uses hostPath storage.
pub async fn storage_access(client: &Client, ns: &str, deploy: &Deployment) -> Result<Vec<String>, Error> {
    let volumes = deploy.spec.template.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut modes = Vec::new();
    for v in volumes {
        if let Some(claim) = v.persistent_volume_claim {
            if let Some(pvc) = pvcs.get_opt(&claim.claim_name).await? {
                modes.extend(pvc.spec.and_then(|s| s.access_modes).unwrap_or_default());
            }
        } else if v.host_path.is_some() {
            // A node-local directory behaves like ReadWriteOnce.
            modes.push("ReadWriteOnce".into());
        }
    }
    Ok(modes)
}

/// Names workloads may pull the registry by, from the Services whose selector picks the
/// registry's pods: `name.ns.svc[.cluster.local]:port`, `name.ns:port`, and the ClusterIP
/// with its port (a node's runtime often cannot resolve cluster DNS and pulls by IP).
pub async fn service_hosts(client: &Client, ns: &str, deploy: &Deployment) -> Result<Vec<String>, Error> {
    let labels = deploy.spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let services = Api::<Service>::namespaced(client.clone(), ns).list(&ListParams::default()).await?;
    let mut hosts = Vec::new();
    for svc in services {
        let spec = svc.spec.clone().unwrap_or_default();
        let selector = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() || !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        let name = svc.name_any();
        for port in spec.ports.iter().flatten() {
            let p = port.port;
            hosts.extend([format!("{name}.{ns}.svc:{p}"), format!("{name}.{ns}.svc.cluster.local:{p}"), format!("{name}.{ns}:{p}")]);
            if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") {
                hosts.push(format!("{ip}:{p}"));
            }
        }
    }
    Ok(hosts)
}

/// The node a running registry pod is on (for pinning the Job next to a ReadWriteOnce volume).
pub async fn registry_node(client: &Client, ns: &str, deploy: &Deployment) -> Result<Option<String>, Error> {
    let labels = deploy.spec.selector.match_labels.clone().unwrap_or_default();
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default().labels(&selector.join(","))).await?;
    Ok(pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).find_map(|p| p.spec.and_then(|s| s.node_name)))
}

/// The Job's state, on success the compact summary it left as its termination message, and
/// whether a pod of the run has not ended yet (a deleted Job's pod lives on while it stops).
pub async fn job(client: &Client, ns: &str, name: &str, run_id: &str) -> Result<(JobView, Option<RunOutcome>, bool), Error> {
    let pods =
        Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default().labels(&format!("regsweep.dev/run={run_id}"))).await?;
    let pod_running =
        pods.items.iter().any(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")));
    let Some(job) = Api::<Job>::namespaced(client.clone(), ns).get_opt(name).await? else {
        return Ok((JobView::Missing, None, pod_running));
    };
    let status = job.status.unwrap_or_default();
    let message = pods
        .items
        .iter()
        .flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
        .filter(|c| c.name == "sweep")
        .find_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| t.message.clone()));
    let outcome = message.as_deref().and_then(|m| serde_json::from_str::<RunOutcome>(m).ok());
    let failed_condition = status.conditions.iter().flatten().find(|c| c.type_ == "Failed" && c.status == "True");
    if status.succeeded.unwrap_or(0) > 0 {
        Ok((JobView::Succeeded, outcome, pod_running))
    } else if status.failed.unwrap_or(0) > 0 || failed_condition.is_some() {
        let why = failed_condition.and_then(|c| c.message.clone()).or(message).unwrap_or_else(|| "the sweep container failed".into());
        let short: String = why.chars().take(500).collect();
        Ok((JobView::Failed(short), None, pod_running))
    } else {
        Ok((JobView::Running, None, pod_running))
    }
}

/// Client options for the public registry, with credentials from the policy's Secret (keys
/// `username` and `password`). Never logged.
pub async fn registry_access(client: &Client, ns: &str, policy: &RegistryCleanupPolicy) -> Result<ClientOptions, Error> {
    let mut opts = ClientOptions::default();
    if let Some(name) = &policy.spec.registry.credentials_secret {
        let secret = Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::Secret(name.clone(), "not found in the policy's namespace".into()))?;
        let field = |k: &str| secret.data.as_ref().and_then(|d| d.get(k)).map(|b| String::from_utf8_lossy(&b.0).to_string());
        opts.username = field("username");
        opts.password = field("password");
        if opts.username.is_none() {
            return Err(Error::Secret(name.clone(), "has no `username` key".into()));
        }
    }
    Ok(opts)
}

/// Some(true) when the public registry refuses an upload, Some(false) when it accepts one,
/// None without a URL.
pub async fn write_refused(policy: &RegistryCleanupPolicy, access: ClientOptions) -> Result<Option<bool>, Error> {
    let Some(url) = &policy.spec.registry.url else { return Ok(None) };
    let client = RegistryClient::new(url, access)?;
    Ok(Some(matches!(client.probe_write("regsweep-probe").await?, WriteProbe::Refused { .. })))
}

/// Everything a run's next step depends on, read from the cluster and the registry. A failing
/// write probe is part of what is observed, not an error: while frozen it counts against
/// maxReadOnlyDuration like any wait.
pub async fn world(
    p: &RegistryCleanupPolicy,
    client: &Client,
    run: &RunState,
    deploy: &Deployment,
    deleting: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(World, Option<RunOutcome>), Error> {
    let ns = p.metadata.namespace.as_deref().unwrap_or_default();
    let max_read_only = compile(&p.spec).map(|c| c.max_read_only).unwrap_or_else(|_| chrono::Duration::hours(1));
    let rolled_out = rollout(deploy) == Rollout::Complete;
    // Scaled to zero, the proof of the freeze is that no registry pod runs (the rollout); an
    // HTTP probe could only fail. The thaw is proven over HTTP in both modes.
    let scaled_down = run.frozen.as_ref().is_some_and(|f| f.method == FreezeMethod::ScaleDown);
    let probing =
        rolled_out && ((run.phase == RunPhase::Freezing && run.frozen_at.is_some() && !scaled_down) || run.phase == RunPhase::Thawing);
    // A probe that fails (credentials gone, 401/403, TLS, a NetworkPolicy) is observed, not
    // returned: while frozen it must count against maxReadOnlyDuration and end in a thaw.
    let (write_refused, probe_error) = if probing {
        let probe = async { write_refused(p, registry_access(client, ns, p).await?).await };
        match probe.await {
            Ok(refused) => (refused, None),
            Err(e) => {
                tracing::warn!(policy = %p.name_any(), run = %run.id, error = %e, "write probe failed");
                (None, Some(e.to_string()))
            }
        }
    } else {
        (None, None)
    };
    let (job_view, outcome, sweep_pod_running) = match (&run.job, run.phase) {
        (Some(name), RunPhase::Sweeping) => job(client, ns, name, &run.id).await?,
        _ => (JobView::Missing, None, false),
    };
    let world = World {
        now,
        deleting: deleting || p.metadata.deletion_timestamp.is_some(),
        frozen_applied: run.frozen.as_ref().is_some_and(|f| is_frozen(deploy, f)),
        frozen_rolled_out: matches!(run.phase, RunPhase::Freezing | RunPhase::Sweeping) && run.frozen_at.is_some() && rolled_out,
        thawed_rolled_out: run.phase == RunPhase::Thawing && rolled_out,
        write_refused,
        probe_error,
        job: job_view,
        sweep_pod_running,
        max_read_only,
    };
    Ok((world, outcome))
}
