//! `regsweep operator`: leader election, the controller, and the HTTP endpoints
//! (`/metrics`, `/livez`, `/readyz` — ready once policies can be listed; a standby replica
//! waiting for the Lease is ready too, so that a two-replica Deployment rolls out).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};

use super::context::{Context, OperatorConfig};
use super::leader::Elector;
use super::lock;
use super::metrics::Metrics;
use super::reconcile::{error_policy, reconcile};
use crate::policy::RegistryCleanupPolicy;

pub struct OperatorOptions {
    pub config: OperatorConfig,
    pub listen: SocketAddr,
    /// (namespace, lease name, identity) when several replicas run.
    pub leader_election: Option<(String, String, String)>,
}

async fn serve(listen: SocketAddr, metrics: Metrics, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let app =
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let m = metrics.clone();
                    async move { ([(axum::http::header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], m.encode()) }
                }),
            )
            .route("/livez", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let r = ready.clone();
                    async move {
                        if r.load(Ordering::SeqCst) { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
                    }
                }),
            );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "serving /metrics, /livez and /readyz");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Waits until this replica holds the Lease, then keeps renewing it; losing it ends the
/// process, so a replica that cannot prove it leads never acts.
async fn lead(client: Client, namespace: String, name: String, identity: String) -> anyhow::Result<()> {
    let duration = Duration::from_secs(15);
    let elector = Elector::new(client, &namespace, &name, &identity, duration);
    while !elector.try_acquire_or_renew().await? {
        tracing::info!(lease = %name, "another replica leads; waiting");
        tokio::time::sleep(duration / 3).await;
    }
    tracing::info!(lease = %name, %identity, "leading");
    tokio::spawn(async move {
        let mut renewed = std::time::Instant::now();
        loop {
            tokio::time::sleep(duration / 3).await;
            // A renewal that hangs counts as failed: the deadline below must be checked.
            match tokio::time::timeout(duration / 3, elector.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = std::time::Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!("lost the leader Lease; exiting so that only the leader acts");
                    std::process::exit(1);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
                Err(_) => tracing::warn!("renewing the leader Lease timed out"),
            }
            if must_step_down(renewed.elapsed(), duration) {
                tracing::error!(
                    secs = renewed.elapsed().as_secs(),
                    "the leader Lease could not be renewed and may have expired for the other replicas; exiting so that only the leader acts"
                );
                std::process::exit(1);
            }
        }
    });
    Ok(())
}

/// A leader whose last successful renewal is this old stops acting: a standby may take the
/// Lease once `duration` has passed since the renewal it saw, so stepping down at two thirds
/// of it leaves a margin for clock skew and the time the exit takes.
pub fn must_step_down(since_renewal: Duration, duration: Duration) -> bool {
    since_renewal >= duration * 2 / 3
}

pub async fn run(opts: OperatorOptions) -> anyhow::Result<()> {
    run_with_client(Client::try_default().await?, opts).await
}

/// The operator against a given API server (the end-to-end tests use their own).
pub async fn run_with_client(client: Client, opts: OperatorOptions) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let (metrics, ready) = (metrics.clone(), ready.clone());
        async move {
            if let Err(e) = serve(opts.listen, metrics, ready).await {
                tracing::error!(error = %e, "the HTTP endpoints stopped");
            }
        }
    });
    // One controller per watched namespace (or one for all): each needs only its own
    // namespace's permissions. They share the context, so metrics and Events are one.
    let apis: Vec<Option<String>> = match &opts.config.watch_namespaces {
        None => vec![None],
        Some(list) => list.iter().cloned().map(Some).collect(),
    };
    tokio::spawn(become_ready(client.clone(), apis.clone(), ready));
    let identity = opts.leader_election.as_ref().map(|l| l.2.clone()).unwrap_or_else(|| "regsweep".into());
    if let Some((namespace, name, identity)) = opts.leader_election {
        lead(client.clone(), namespace, name, identity).await?;
    }
    let recorder = Recorder::new(client.clone(), Reporter { controller: "regsweep".into(), instance: Some(identity) });
    let ctx = Arc::new(Context { client: client.clone(), recorder, config: opts.config, metrics });
    let controllers = apis.into_iter().map(|ns| {
        controller(&client, ns.as_deref())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "reconcile did not complete");
                }
            })
            .boxed()
    });
    futures::future::join_all(controllers).await;
    Ok(())
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        None => Api::all(client.clone()),
        Some(ns) => Api::namespaced(client.clone(), ns),
    }
}

fn controller(client: &Client, namespace: Option<&str>) -> Controller<RegistryCleanupPolicy> {
    Controller::new(api::<RegistryCleanupPolicy>(client, namespace), watcher::Config::default())
        .owns(api::<Job>(client, namespace), watcher::Config::default().labels("app.kubernetes.io/managed-by=regsweep"))
        // A locked Deployment wakes the policy that holds it (its rollout is what a run waits for).
        .watches(api::<Deployment>(client, namespace), watcher::Config::default(), |d| {
            let ns = d.metadata.namespace.clone();
            lock::holder(&d).map(|h| ObjectRef::new(lock::parse(h).policy).within(ns.as_deref().unwrap_or_default()))
        })
        .shutdown_on_signal()
}

/// Ready once policies can be listed in every watched namespace: the API answers, the CRD is
/// installed and the permissions are there. (The controller store's own readiness signal never
/// fired against the test API server; see the issue notes.)
async fn become_ready(client: Client, namespaces: Vec<Option<String>>, ready: Arc<AtomicBool>) {
    let params = kube::api::ListParams::default().limit(1);
    loop {
        let mut missing = None;
        for ns in &namespaces {
            if let Err(e) = api::<RegistryCleanupPolicy>(&client, ns.as_deref()).list(&params).await {
                missing = Some((ns.clone().unwrap_or_else(|| "all namespaces".into()), e));
                break;
            }
        }
        match missing {
            None => {
                ready.store(true, Ordering::SeqCst);
                tracing::info!("policies can be listed; ready");
                return;
            }
            Some((ns, e)) => {
                tracing::warn!(namespace = %ns, error = %e, "cannot list RegistryCleanupPolicies yet (is the CRD installed, and RBAC granted?)")
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_that_cannot_renew_steps_down_before_its_lease_can_expire() {
        let lease = Duration::from_secs(15);
        // Renewals every 5 s: one failure is tolerated, a second one is not.
        assert!(!must_step_down(Duration::from_secs(5), lease));
        assert!(must_step_down(Duration::from_secs(10), lease));
        assert!(must_step_down(lease, lease), "never still acting when the standby may take over");
    }
}
