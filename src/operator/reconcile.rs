//! The reconcile pipeline for one policy: fetch → decide (pure: schedule, phase machine) →
//! apply (one step) → status. A run's state lives in `.status.run`, so any operator replica
//! resumes it; the finalizer keeps a policy from disappearing while its registry is frozen.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::conditions::{self, Health};
use super::context::Context;
use super::error::Error;
use super::freeze::{FreezeMethod, choose_method, freeze, thaw};
use super::phase::{JobView, RunPhase, RunResult, RunView, Step, next_step};
use super::review::{self, AfterReview, ApprovalCheck};
use super::rollout::{Rollout, rollout};
use super::schedule::{Due, ScheduleInput, due};
use super::{job, lock, observe, scan};
use crate::policy::{PendingPlan, PlanRef, RegistryCleanupPolicy, RegistryCleanupPolicyStatus, RunState, RunSummary, compile};

pub const FINALIZER: &str = "regsweep.dev/thaw";
const HISTORY: usize = 5;

pub async fn reconcile(cached: Arc<RegistryCleanupPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let ns = cached.namespace().unwrap_or_default();
    let api: Api<RegistryCleanupPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    // The controller's cache can lag behind this operator's own last status write (a requeue
    // comes before the watch event): deciding from it would start the run in flight again
    // and overwrite its status. Every reconcile starts from the object as stored now.
    let Some(policy) = api.get_opt(&cached.name_any()).await?.map(Arc::new) else {
        ctx.metrics.forget(&cached);
        return Ok(Action::await_change());
    };
    // The gauges follow the stored status even when this reconcile writes nothing (a
    // restarted operator starts with none).
    ctx.metrics.observe(&policy, policy.status.as_ref());
    let result = finalizer(&api, FINALIZER, policy.clone(), |event| async {
        match event {
            Finalizer::Apply(p) => apply(&p, &ctx).await,
            Finalizer::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    if let Err(e) = &result {
        report_error(&policy, &ctx, e).await;
    }
    result
}

/// Every reconcile error is on the policy: the Ready condition says what and why (the phase
/// and a run's own progress stay as they are), with an Event when that changes.
async fn report_error(p: &RegistryCleanupPolicy, ctx: &Context, e: &Error) {
    if matches!(e, Error::StillThawing) {
        return;
    }
    let status = p.status.clone().unwrap_or_default();
    let message = format!("{e}; retrying");
    let mut conditions = status.conditions.clone();
    conditions::set(&mut conditions, conditions::READY, false, e.reason(), &message, p.metadata.generation, Utc::now());
    if conditions == status.conditions && status.observed_generation == p.metadata.generation {
        return;
    }
    // Only the conditions and observedGeneration: the run's own state is not this path's to
    // write (it may have moved on since `p` was read).
    let patch = json!({ "status": { "conditions": conditions, "observedGeneration": p.metadata.generation } });
    let api: Api<RegistryCleanupPolicy> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    match api.patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => publish(ctx, p, EventType::Warning, e.reason(), "Reconcile", &message).await,
        Err(write) => tracing::warn!(policy = %p.name_any(), error = %write, "cannot report a reconcile error on the policy"),
    }
}

pub fn error_policy(policy: Arc<RegistryCleanupPolicy>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(err.category());
    tracing::warn!(policy = %policy.name_any(), namespace = ?policy.namespace(), category = err.category(), error = %err, "reconcile failed");
    Action::requeue(match err {
        Error::StillThawing => StdDuration::from_secs(2),
        Error::Locked { .. } => StdDuration::from_secs(10),
        _ => StdDuration::from_secs(30),
    })
}

/// Deleting a policy: a run in flight is driven to its end (which thaws) before the finalizer
/// is removed.
async fn cleanup(p: &RegistryCleanupPolicy, ctx: &Context) -> Result<Action, Error> {
    if p.status.as_ref().and_then(|s| s.run.as_ref()).is_none() {
        ctx.metrics.forget(p);
        return Ok(Action::await_change());
    }
    match drive(p, ctx, true).await? {
        None => Ok(Action::await_change()),
        Some(_) => Err(Error::StillThawing),
    }
}

async fn apply(p: &RegistryCleanupPolicy, ctx: &Context) -> Result<Action, Error> {
    if p.status.as_ref().and_then(|s| s.run.as_ref()).is_some() {
        return Ok(drive(p, ctx, false).await?.unwrap_or_else(|| Action::requeue(StdDuration::from_secs(1))));
    }
    let now = Utc::now();
    let mut status = p.status.clone().unwrap_or_default();
    let generation = p.metadata.generation;
    let compiled = match compile(&p.spec) {
        Ok(c) => c,
        Err(invalid) => {
            let message = invalid.to_string();
            stalled(&mut status, generation, "Invalid", "InvalidPolicy", &message, now);
            status.next_run_time = None;
            if write_status_if_changed(p, ctx, status).await? {
                publish(ctx, p, EventType::Warning, "InvalidPolicy", "Validate", &message).await;
            }
            return Ok(Action::await_change());
        }
    };
    let input = ScheduleInput {
        schedule: compiled.schedule.as_ref(),
        time_zone: compiled.time_zone,
        suspend: p.spec.suspend,
        generation: generation.unwrap_or(1),
        last_run_generation: status.last_run_generation,
        last_scheduled: status.last_schedule_time,
        created: p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| chrono::DateTime::<Utc>::from_timestamp(t.0.as_second(), 0).unwrap_or(now))
            .unwrap_or(now),
        now,
        starting_deadline: p.spec.starting_deadline_seconds.map(Duration::seconds),
    };
    if let Some(pending) = status.pending_plan.clone() {
        let executed: Vec<&str> = status.history.iter().filter(|r| !r.review).map(|r| r.plan_id.as_str()).collect();
        match review::check_approval(p.annotations().get(review::APPROVE_ANNOTATION).map(String::as_str), &pending, &executed) {
            ApprovalCheck::Approved(plan) => {
                let reason = format!("plan {} approved", plan.id);
                publish(ctx, p, EventType::Normal, "PlanApproved", "Approve", &format!("{reason}; starting the run that executes it"))
                    .await;
                status.pending_plan = None;
                return start_run(p, ctx, status, None, &reason, Some(plan)).await;
            }
            ApprovalCheck::Refused(why) if pending.refused.as_deref() != Some(why.as_str()) => {
                publish(ctx, p, EventType::Warning, "ApprovalRefused", "Approve", &why).await;
                status.pending_plan = Some(PendingPlan { refused: Some(why), ..pending });
            }
            ApprovalCheck::Refused(_) | ApprovalCheck::None => {}
        }
    }
    match due(&input) {
        Due::Now { scheduled_for, reason } => start_run(p, ctx, status, scheduled_for, &reason, None).await,
        Due::Missed { scheduled_for, next } => {
            let message = format!(
                "the run scheduled for {} was skipped: it could not start within startingDeadlineSeconds ({}s)",
                scheduled_for.to_rfc3339(),
                p.spec.starting_deadline_seconds.unwrap_or_default()
            );
            tracing::warn!(policy = %p.name_any(), %scheduled_for, "scheduled run missed");
            publish(ctx, p, EventType::Warning, "MissedSchedule", "Schedule", &message).await;
            status.last_schedule_time = Some(scheduled_for);
            status.next_run_time = next;
            idle(&mut status, p, "Idle", &message, now);
            write_status(p, ctx, &status).await?;
            Ok(next.map_or_else(Action::await_change, |t| {
                Action::requeue((t - now).to_std().unwrap_or_default().min(StdDuration::from_secs(3600)))
            }))
        }
        Due::At(t) => {
            idle(&mut status, p, if p.spec.suspend { "Suspended" } else { "Idle" }, &format!("next run at {}", t.to_rfc3339()), now);
            status.next_run_time = Some(t);
            write_status_if_changed(p, ctx, status).await?;
            Ok(Action::requeue((t - now).to_std().unwrap_or_default().min(StdDuration::from_secs(3600))))
        }
        Due::Never { reason } => {
            idle(&mut status, p, if p.spec.suspend { "Suspended" } else { "Idle" }, &reason, now);
            status.next_run_time = None;
            write_status_if_changed(p, ctx, status).await?;
            Ok(Action::await_change())
        }
    }
}

/// Conditions of a policy with no run in flight: Ready unless the last run failed.
/// A policy that cannot proceed until something changes: `Invalid` (the spec) or `Blocked`
/// (a check before freezing).
pub(super) fn stalled(
    status: &mut RegistryCleanupPolicyStatus,
    generation: Option<i64>,
    phase: &str,
    reason: &str,
    message: &str,
    now: chrono::DateTime<Utc>,
) {
    status.phase = Some(phase.into());
    status.observed_generation = generation;
    conditions::apply(&mut status.conditions, Health::Stalled { reason, message }, generation, now);
}

pub(super) fn idle(
    status: &mut RegistryCleanupPolicyStatus,
    p: &RegistryCleanupPolicy,
    phase: &str,
    message: &str,
    now: chrono::DateTime<Utc>,
) {
    let generation = p.metadata.generation;
    status.observed_generation = generation;
    if let Some(pending) = status.pending_plan.clone() {
        let mut text = String::new();
        let (phase, health) = review::pending_health(&pending, &p.name_any(), &mut text);
        status.phase = Some(phase.into());
        conditions::apply(&mut status.conditions, health, generation, now);
        return;
    }
    status.phase = Some(phase.into());
    let failure = status.last_run.as_ref().filter(|r| r.result == RunResult::Failed).map(|r| r.message.clone());
    conditions::apply(&mut status.conditions, Health::Idle { phase, message, failure: failure.as_deref() }, generation, now);
}

async fn start_run(
    p: &RegistryCleanupPolicy,
    ctx: &Context,
    mut status: RegistryCleanupPolicyStatus,
    scheduled_for: Option<chrono::DateTime<Utc>>,
    reason: &str,
    approved: Option<PlanRef>,
) -> Result<Action, Error> {
    let ns = p.namespace().unwrap_or_default();
    // Everything that can be known up front is checked before the Deployment is touched: a
    // failure here is reported on the policy, and the registry is never frozen.
    let deploy = match preflight(p, ctx, &ns).await {
        Ok(deploy) => deploy,
        Err(e) => {
            let message = format!("{e}; the registry was not frozen");
            stalled(&mut status, p.metadata.generation, "Blocked", e.reason(), &message, Utc::now());
            if write_status_if_changed(p, ctx, status).await? {
                publish(ctx, p, EventType::Warning, e.reason(), "Check", &message).await;
            }
            tracing::warn!(policy = %p.name_any(), namespace = %ns, error = %e, "run not started");
            return Ok(Action::requeue(ctx.config.poll * 5));
        }
    };
    let id = RunState::new_id();
    // Limits and approval are decided on a plan made before anything is frozen.
    let review = approved.is_none() && review::needs_review(&p.spec);
    let dry_run = p.spec.dry_run || review;
    if !dry_run {
        take_lock(ctx, &ns, &deploy, &lock::lock_value(&p.name_any(), &id, Utc::now())).await?;
    }
    let now = Utc::now();
    status.run = Some(RunState {
        id: id.clone(),
        phase: if dry_run { RunPhase::Sweeping } else { RunPhase::Freezing },
        started: now,
        dry_run,
        scheduled_for,
        frozen: None,
        frozen_at: None,
        job: None,
        failure: None,
        in_use_protected: 0,
        outcome: None,
        spec: Some(Box::new(p.spec.clone())),
        review,
        approved_plan: approved,
    });
    status.last_schedule_time = scheduled_for.or(status.last_schedule_time);
    status.last_run_generation = p.metadata.generation;
    status.next_run_time = None;
    let phase = phase_label(status.run.as_ref().expect("just set"));
    progressing(&mut status, p, phase, reason);
    write_status(p, ctx, &status).await?;
    tracing::info!(policy = %p.name_any(), namespace = %ns, run = %id, dry_run, reason, "run started");
    publish(
        ctx,
        p,
        EventType::Normal,
        "RunStarted",
        "Run",
        &format!(
            "run {id} started: {reason}{}",
            if review {
                " (review: its plan is made first, nothing is frozen)"
            } else if dry_run {
                " (dry run)"
            } else {
                ""
            }
        ),
    )
    .await;
    Ok(Action::requeue(StdDuration::from_millis(500)))
}

/// The checks before a run may freeze anything: the Deployment and its registry container
/// exist, the credentials Secret is readable and has its keys, and the URL answers with
/// those credentials.
async fn preflight(p: &RegistryCleanupPolicy, ctx: &Context, ns: &str) -> Result<Deployment, Error> {
    let deploy = observe::deployment(&ctx.client, ns, p).await?;
    crate::operator::freeze::registry_container(&deploy, p.spec.registry.container.as_deref())?;
    let access = observe::registry_access(&ctx.client, ns, p).await?;
    if let Some(url) = &p.spec.registry.url {
        crate::registry::RegistryClient::new(url, access)?.ping().await?;
    }
    Ok(deploy)
}

pub(super) fn progressing(status: &mut RegistryCleanupPolicyStatus, p: &RegistryCleanupPolicy, phase: &str, message: &str) {
    let now = Utc::now();
    let generation = p.metadata.generation;
    status.phase = Some(phase.into());
    status.observed_generation = generation;
    conditions::apply(&mut status.conditions, Health::Reconciling { phase, message }, generation, now);
}

/// Takes the Deployment's run lock; a stale holder (see [`lock::is_stale`]) is taken over.
async fn take_lock(ctx: &Context, ns: &str, deploy: &Deployment, value: &str) -> Result<(), Error> {
    if let Some(current) = lock::holder(deploy) {
        let holder = lock::parse(current);
        let other = Api::<RegistryCleanupPolicy>::namespaced(ctx.client.clone(), ns).get_opt(holder.policy).await?;
        let run = other.map(|o| o.status.and_then(|s| s.run).map(|r| r.id));
        if !lock::is_stale(&holder, run.as_ref().map(|r| r.as_deref()), Utc::now()) {
            return Err(Error::Locked { deployment: deploy.name_any(), holder: current.to_string() });
        }
        tracing::warn!(deployment = %deploy.name_any(), stale = current, "taking over a stale registry lock");
    }
    match patch_json(ctx, ns, &deploy.name_any(), lock::acquire(deploy, value)).await {
        // The guard failed: someone changed the Deployment since we read it (most likely
        // another run taking the lock first).
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 409 || e.code == 422 => {
            Err(Error::Locked { deployment: deploy.name_any(), holder: "a run that took it first".into() })
        }
        other => other,
    }
}

async fn patch_json(ctx: &Context, ns: &str, name: &str, patch: Value) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("patches are built well-formed");
    Api::<Deployment>::namespaced(ctx.client.clone(), ns).patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await?;
    Ok(())
}

/// One step of the run in flight. Returns None once the run is over.
async fn drive(live: &RegistryCleanupPolicy, ctx: &Context, deleting: bool) -> Result<Option<Action>, Error> {
    let status = live.status.clone().unwrap_or_default();
    let run = status.run.clone().expect("drive is called with a run in flight");
    // From start to thaw, the run follows the spec it started with (runs recorded by an
    // older operator have none: they follow the live spec, as before).
    let pinned = run.spec.as_ref().map(|spec| RegistryCleanupPolicy { spec: (**spec).clone(), ..live.clone() });
    let p = pinned.as_ref().unwrap_or(live);
    let ns = p.namespace().unwrap_or_default();
    let now = Utc::now();
    let deploy = match observe::deployment(&ctx.client, &ns, p).await {
        Ok(deploy) => deploy,
        // The freeze went with the Deployment: nothing is left to thaw, but a sweep may still
        // run against the volume, and must stop before the run ends.
        Err(Error::DeploymentNotFound(name)) => return deployment_gone(p, ctx, status, run, &ns, &name).await,
        Err(e) => return Err(e),
    };
    // Observe, decide (pure: `next_step`), act.
    let (world, outcome) = observe::world(p, &ctx.client, &run, &deploy, deleting, now).await?;
    let view = RunView { phase: run.phase, dry_run: run.dry_run, frozen_at: run.frozen_at, failure: run.failure.clone() };
    let step = next_step(&view, &world);
    tracing::debug!(policy = %p.name_any(), run = %run.id, ?step, "run step");
    act(step, p, ctx, status, run, &deploy, outcome, now).await
}

/// Carries out one step of a run and records it in the status.
#[allow(clippy::too_many_arguments)]
async fn act(
    step: Step,
    p: &RegistryCleanupPolicy,
    ctx: &Context,
    mut status: RegistryCleanupPolicyStatus,
    mut run: RunState,
    deploy: &Deployment,
    outcome: Option<crate::policy::RunOutcome>,
    now: chrono::DateTime<Utc>,
) -> Result<Option<Action>, Error> {
    let ns = p.namespace().unwrap_or_default();
    match step {
        Step::Wait { why } => {
            progressing(&mut status, p, phase_label(&run), &why);
            write_status_if_changed(p, ctx, status).await?;
            return Ok(Some(Action::requeue(ctx.config.poll)));
        }
        Step::Freeze => {
            // Write-ahead: the original is recorded in the status before the Deployment is
            // changed, so a crash in between can never lose what the thaw must restore.
            let method = match &run.frozen {
                Some(recorded) => recorded.method,
                None => choose_method(p.spec.maintenance.mode, &observe::storage_access(&ctx.client, &ns, deploy).await?).method,
            };
            let (patch, state) = freeze(deploy, p.spec.registry.container.as_deref(), method)?;
            if run.frozen.is_none() {
                run.frozen = Some(state);
                run.frozen_at = Some(now);
                status.run = Some(run.clone());
                progressing(&mut status, p, "Freezing", "");
                write_status(p, ctx, &status).await?;
            }
            patch_json(ctx, &ns, &deploy.name_any(), patch).await?;
            let how = match method {
                FreezeMethod::ReadOnly => "read-only",
                FreezeMethod::ScaleDown => "scaled to zero",
            };
            publish(
                ctx,
                p,
                EventType::Normal,
                "Freezing",
                "Freeze",
                &format!("run {}: Deployment {} set {how}", run.id, deploy.name_any()),
            )
            .await;
            return Ok(Some(Action::requeue(StdDuration::from_millis(500))));
        }
        Step::StartJob => {
            // The decision was made from reads taken one after another; the freeze is read
            // again just before the Job exists, so a revert in between never gets a sweep.
            if let Some(frozen) = &run.frozen {
                let fresh = observe::deployment(&ctx.client, &ns, p).await?;
                if !crate::operator::freeze::is_frozen(&fresh, frozen) || rollout(&fresh) != Rollout::Complete {
                    tracing::warn!(policy = %p.name_any(), run = %run.id, "the freeze changed before the sweep Job could start; not starting it");
                    return Ok(Some(Action::requeue(ctx.config.poll)));
                }
            }
            let name = match start_job(p, ctx, &ns, deploy, &mut run).await {
                // What a dry run cannot do here ends it, said on the policy.
                Err(Error::Storage(why)) if run.dry_run => return finish(p, ctx, status, run, RunResult::Failed, why).await.map(|_| None),
                other => other?,
            };
            run.phase = RunPhase::Sweeping;
            publish(
                ctx,
                p,
                EventType::Normal,
                "SweepStarted",
                "Sweep",
                &format!("run {}: Job {name} started ({} in-use images protected)", run.id, run.in_use_protected),
            )
            .await;
            run.job = Some(name);
        }
        Step::Abort { failure } => {
            if let Some(name) = &run.job {
                // Its pod gets SIGTERM (the sweep drains its in-flight deletes and stops); the
                // run thaws once that pod has exited.
                match Api::<Job>::namespaced(ctx.client.clone(), &ns).delete(name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if run.frozen.is_some() {
                if run.failure.is_none() {
                    let note = format!("run {}: {failure}; stopping the sweep, then thawing", run.id);
                    publish(ctx, p, EventType::Warning, "RunAborted", "Stop", &note).await;
                }
                run.failure = Some(failure);
            } else {
                return finish(p, ctx, status, run, RunResult::Failed, failure).await.map(|_| None);
            }
        }
        Step::Thaw { failure } => {
            if outcome.is_some() {
                run.outcome = outcome;
            }
            thaw_deployment(ctx, &ns, deploy, &run).await?;
            run.phase = RunPhase::Thawing;
            let (kind, reason) = if failure.is_some() { (EventType::Warning, "SweepFailed") } else { (EventType::Normal, "Thawing") };
            publish(
                ctx,
                p,
                kind,
                reason,
                "Thaw",
                &format!("run {}: {}; restoring Deployment {}", run.id, failure.as_deref().unwrap_or("swept"), deploy.name_any()),
            )
            .await;
            run.failure = failure;
        }
        Step::Finish { result, message } => {
            if outcome.is_some() {
                run.outcome = outcome;
            }
            let (status, follow_up) = finish(p, ctx, status, run, result, message).await?;
            // A policy being deleted starts nothing new, whatever its review said.
            if let Some(plan) = follow_up.filter(|_| p.metadata.deletion_timestamp.is_none()) {
                let reason = format!("plan {} is within spec.limits", plan.id);
                return start_run(p, ctx, status, None, &reason, Some(plan)).await.map(Some);
            }
            return Ok(None);
        }
    }
    let phase = phase_label(&run);
    status.run = Some(run);
    progressing(&mut status, p, phase, "");
    write_status(p, ctx, &status).await?;
    Ok(Some(Action::requeue(StdDuration::from_millis(500))))
}

/// The registry Deployment was deleted mid-run: stop the sweep (and wait for its pod to
/// exit), then end the run as failed, saying so.
async fn deployment_gone(
    p: &RegistryCleanupPolicy,
    ctx: &Context,
    status: RegistryCleanupPolicyStatus,
    run: RunState,
    ns: &str,
    name: &str,
) -> Result<Option<Action>, Error> {
    if let Some(job) = &run.job {
        let (view, _, pod_running) = observe::job(&ctx.client, ns, job, &run.id).await?;
        if view == JobView::Running {
            match Api::<Job>::namespaced(ctx.client.clone(), ns).delete(job, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        if view == JobView::Running || pod_running {
            return Ok(Some(Action::requeue(ctx.config.poll)));
        }
    }
    let message = format!("the registry Deployment {name} was deleted during the run; nothing was left to thaw");
    finish(p, ctx, status, run, RunResult::Failed, message).await.map(|_| None)
}

/// The status phase of a run in flight: a review run plans.
fn phase_label(run: &RunState) -> &'static str {
    if run.review { "Planning" } else { phase_name(run.phase) }
}

fn phase_name(phase: RunPhase) -> &'static str {
    match phase {
        RunPhase::Freezing => "Freezing",
        RunPhase::Sweeping => "Sweeping",
        RunPhase::Thawing => "Thawing",
    }
}

async fn thaw_deployment(ctx: &Context, ns: &str, deploy: &Deployment, run: &RunState) -> Result<(), Error> {
    if let Some(frozen) = &run.frozen {
        patch_json(ctx, ns, &deploy.name_any(), thaw(deploy, frozen)?).await?;
    }
    Ok(())
}

/// The run's ConfigMap (policy and protected references) and Job.
async fn start_job(p: &RegistryCleanupPolicy, ctx: &Context, ns: &str, deploy: &Deployment, run: &mut RunState) -> Result<String, Error> {
    let owner = p.controller_owner_ref(&()).expect("a stored policy has a uid");
    // The Job's policy names every host the scan matched by, so its protections apply.
    let mut spec = p.spec.clone();
    let mut hosts = p.spec.registry.hosts.clone();
    if p.spec.protection.in_use {
        hosts.extend(observe::service_hosts(&ctx.client, ns, deploy).await?);
    }
    let known = crate::operator::inuse::known_hosts(&hosts, p.spec.registry.url.as_deref());
    // A policy without hosts takes every host for this registry (its references included):
    // the Job's copy stays so, and protects whatever the scan found under any known name.
    if !p.spec.registry.hosts.is_empty() {
        spec.registry.hosts = known.clone();
    }
    let refs = if p.spec.protection.in_use {
        if known.is_empty() {
            let note = format!(
                "run {}: no spec.registry.hosts, no url and no Service in front of the registry, so any image in use that names a registry host is protected by repository and tag; set spec.registry.hosts to the names workloads pull this registry by",
                run.id
            );
            publish(ctx, p, EventType::Warning, "NoRegistryHosts", "Scan", &note).await;
        }
        scan::in_use(&ctx.client, &ctx.config.in_use_namespaces, &known).await?
    } else {
        Vec::new()
    };
    run.in_use_protected = refs.len();
    let protect: String = refs.iter().map(|r| format!("{}\n", r.reference)).collect();
    let document = json!({
        "apiVersion": "regsweep.dev/v1alpha1",
        "kind": "RegistryCleanupPolicy",
        "metadata": {"name": p.name_any(), "namespace": ns},
        "spec": spec,
    });
    let name = job::job_name(&p.name_any(), &run.id);
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.into()),
            labels: Some(job::labels(&p.name_any(), &run.id)),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(
            [("policy.yaml".to_string(), serde_yaml::to_string(&document).expect("YAML")), ("protect.txt".to_string(), protect)].into(),
        ),
        ..Default::default()
    };
    ignore_exists(Api::<ConfigMap>::namespaced(ctx.client.clone(), ns).create(&PostParams::default(), &cm).await)?;
    let access = observe::storage_access(&ctx.client, ns, deploy).await?;
    let pin = match &run.frozen {
        Some(f) => f.method == FreezeMethod::ReadOnly && choose_method(p.spec.maintenance.mode, &access).pin_to_node,
        None => crate::operator::freeze::dry_run_pin(&access).map_err(Error::Storage)?,
    };
    let node = if pin { observe::registry_node(&ctx.client, ns, deploy).await? } else { None };
    let (max, grace) = compile(&p.spec).map(|c| (c.max_read_only, c.sweep_grace)).unwrap_or((Duration::hours(1), Duration::seconds(30)));
    let job = job::build(&job::JobInputs {
        deployment: deploy,
        container: p.spec.registry.container.as_deref(),
        policy: &p.name_any(),
        run_id: &run.id,
        operator_image: &ctx.config.image,
        config_map: &name,
        node: node.as_deref(),
        // Scaled to zero, there is no public registry to prove the freeze against: the
        // operator proved it (no pod runs), and the Job must not need the URL.
        public_url: match &run.frozen {
            Some(f) if f.method == FreezeMethod::ReadOnly => p.spec.registry.url.as_deref(),
            _ => None,
        },
        credentials_secret: p.spec.registry.credentials_secret.as_deref(),
        owner,
        active_deadline_seconds: max.num_seconds().max(60),
        termination_grace_seconds: grace.num_seconds().max(1),
        resources: p.spec.maintenance.resources.clone(),
        review: run.review,
        approved_run: run.approved_plan.as_ref().map(|a| a.run.as_str()),
    })?;
    ignore_exists(Api::<Job>::namespaced(ctx.client.clone(), ns).create(&PostParams::default(), &job).await)?;
    Ok(name)
}

fn ignore_exists<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn finish(
    p: &RegistryCleanupPolicy,
    ctx: &Context,
    mut status: RegistryCleanupPolicyStatus,
    run: RunState,
    result: RunResult,
    message: String,
) -> Result<(RegistryCleanupPolicyStatus, Option<PlanRef>), Error> {
    let ns = p.namespace().unwrap_or_default();
    let now = Utc::now();
    if !run.dry_run
        && let Some(name) = &p.spec.registry.deployment
    {
        // Only this run's lock; the guarded patch fails if it is not ours any more.
        let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), &ns);
        if let Some(current) = deployments.get_opt(name).await?.as_ref().and_then(lock::holder).map(str::to_string) {
            let holder = lock::parse(&current);
            if holder.policy == p.name_any() && holder.run_id == run.id {
                let patch: json_patch::Patch = serde_json::from_value(lock::release(&current)).expect("patch");
                let _ = deployments.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await;
            }
        }
    }
    // The run's ConfigMap has served its Job; the Job itself goes with its TTL.
    if run.job.is_some() {
        let name = job::job_name(&p.name_any(), &run.id);
        let _ = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns).delete(&name, &DeleteParams::default()).await;
    }
    let outcome = run.outcome.clone().unwrap_or_default();
    // A review run's plan decides what follows: the real run, a wait, or a hold.
    let (result, message, follow_up) = if run.review && result == RunResult::Succeeded {
        let job = run.job.as_deref().map(|j| format!("kubectl logs -n {ns} job/{j}; ")).unwrap_or_default();
        let details = format!("{job}the plan file is .regsweep/plans/{}.json on the registry's volume", run.id);
        match review::after_review(&p.spec, &run.id, &outcome, details, now) {
            AfterReview::Run(plan) => {
                status.pending_plan = None;
                let m = format!("plan {} made and within spec.limits; executing it", plan.id);
                (result, m, Some(plan))
            }
            AfterReview::AwaitApproval(pending) => {
                let m = format!("plan {} made; waiting for approval", pending.id);
                let note = format!(
                    "run {}: {}; approve it: {}",
                    run.id,
                    review::describe(&pending),
                    review::approve_command(&pending, &p.name_any())
                );
                publish(ctx, p, EventType::Normal, "PlanPublished", "Review", &note).await;
                status.pending_plan = Some(pending);
                (result, m, None)
            }
            AfterReview::Hold(pending) => {
                let over = pending.over_limit.clone().unwrap_or_default();
                publish(ctx, p, EventType::Warning, "OverLimit", "Review", &format!("run {}: {over}", run.id)).await;
                let m = format!("plan {} held: {over}", pending.id);
                status.pending_plan = Some(pending);
                (result, m, None)
            }
            AfterReview::Failed(why) => (RunResult::Failed, why, None),
        }
    } else {
        (result, message, None)
    };
    let read_only_seconds = run.frozen_at.map(|t| (now - t).num_seconds()).unwrap_or(0);
    let summary = RunSummary {
        id: run.id.clone(),
        start: run.started,
        end: now,
        result,
        dry_run: run.dry_run,
        manifests_deleted: outcome.manifests_deleted,
        tags_deleted: outcome.tags_deleted,
        bytes_reclaimed: outcome.bytes_reclaimed,
        bytes_estimated: outcome.bytes_estimated,
        reclaimed: if run.dry_run {
            format!("{} (dry run)", crate::units::bytes(outcome.bytes_estimated))
        } else {
            crate::units::bytes(outcome.bytes_reclaimed)
        },
        read_only_seconds,
        in_use_protected: run.in_use_protected,
        message: message.clone(),
        plan_id: run.approved_plan.as_ref().map_or_else(|| outcome.plan_id.clone(), |a| a.id.clone()),
        review: run.review,
        quarantined_until: outcome.quarantined_until,
        quarantined_bytes: outcome.quarantined_bytes,
    };
    let label = match result {
        RunResult::Succeeded => "Succeeded",
        RunResult::Failed => "Failed",
    };
    ctx.metrics.run_finished(p, label, outcome.bytes_reclaimed, outcome.manifests_deleted, read_only_seconds.max(0) as u64);
    status.history.insert(0, summary.clone());
    status.history.truncate(HISTORY);
    status.last_run = Some(summary);
    status.run = None;
    idle(&mut status, p, "Idle", &message, now);
    write_status(p, ctx, &status).await?;
    tracing::info!(policy = %p.name_any(), namespace = %ns, run = %run.id, result = label, bytes_reclaimed = outcome.bytes_reclaimed, "run finished");
    let (kind, reason) = match result {
        RunResult::Succeeded => (EventType::Normal, "RunSucceeded"),
        RunResult::Failed => (EventType::Warning, "RunFailed"),
    };
    let restorable = outcome.quarantined_until.map_or_else(String::new, |until| {
        format!("; restorable until {} with `regsweep restore --url <registry> --run {}`", until.format("%Y-%m-%d %H:%M UTC"), run.id)
    });
    let text = format!(
        "run {}: {message}; {} manifests deleted, {} reclaimed, read-only {read_only_seconds}s{restorable}",
        run.id,
        outcome.manifests_deleted,
        crate::units::bytes(outcome.bytes_reclaimed)
    );
    publish(ctx, p, kind, reason, "Report", &text).await;
    Ok((status, follow_up))
}

/// The whole status as a merge patch, with explicit nulls so cleared fields go away.
fn status_patch(status: &RegistryCleanupPolicyStatus) -> Value {
    let mut v = serde_json::to_value(status).expect("status serializes");
    let map = v.as_object_mut().expect("an object");
    for key in ["run", "nextRunTime", "lastRun", "phase", "pendingPlan"] {
        map.entry(key).or_insert(Value::Null);
    }
    json!({ "status": v })
}

async fn write_status(p: &RegistryCleanupPolicy, ctx: &Context, status: &RegistryCleanupPolicyStatus) -> Result<(), Error> {
    ctx.metrics.observe(p, Some(status));
    let api: Api<RegistryCleanupPolicy> = Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    api.patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(status_patch(status))).await?;
    Ok(())
}

/// Writes the status only when it differs, so an idle policy does not wake itself up.
async fn write_status_if_changed(p: &RegistryCleanupPolicy, ctx: &Context, status: RegistryCleanupPolicyStatus) -> Result<bool, Error> {
    if p.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    write_status(p, ctx, &status).await?;
    Ok(true)
}

async fn publish(ctx: &Context, p: &RegistryCleanupPolicy, type_: EventType, reason: &str, action: &str, note: &str) {
    let event =
        Event { type_, reason: reason.into(), note: Some(note.chars().take(1000).collect()), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&event, &p.object_ref(&())).await {
        tracing::warn!(policy = %p.name_any(), error = %e, "cannot publish an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_patch_clears_what_is_gone() {
        let patch = status_patch(&RegistryCleanupPolicyStatus { last_run_generation: Some(3), ..Default::default() });
        let status = &patch["status"];
        for key in ["run", "nextRunTime", "lastRun", "phase", "pendingPlan"] {
            assert!(status.get(key).is_some_and(Value::is_null), "{key} must be sent as null to be removed: {patch}");
        }
        assert_eq!(status["lastRunGeneration"], 3);
    }
}
