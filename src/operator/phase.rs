//! A run as a state machine: Freezing → Sweeping → Thawing → done. The state lives in the
//! policy's status, so a restarted operator picks the run up where it was; each reconcile
//! observes the world and this pure function says the one next step. Every path out of a
//! freeze goes through Thawing: success, Job failure, overrunning `maxReadOnlyDuration`,
//! policy deletion.

use chrono::{DateTime, Duration, Utc};

pub use crate::policy::{RunPhase, RunResult};

/// What the run knows about itself (a part of the status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunView {
    pub phase: RunPhase,
    pub dry_run: bool,
    /// When the registry was first asked to freeze (None for a dry run).
    pub frozen_at: Option<DateTime<Utc>>,
    /// Set when the run must end in failure (kept through Thawing).
    pub failure: Option<String>,
}

/// The sweep Job as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobView {
    Missing,
    Running,
    Succeeded,
    Failed(String),
}

/// What the controller observed this time.
#[derive(Clone, Debug)]
pub struct World {
    pub now: DateTime<Utc>,
    /// The policy is being deleted.
    pub deleting: bool,
    /// The Deployment carries the recorded freeze (it can be missing after a crash between
    /// recording and patching, or when something reverted it).
    pub frozen_applied: bool,
    /// Every replica runs the frozen template (or none runs, for ScaleDown).
    pub frozen_rolled_out: bool,
    /// Every replica runs the restored template.
    pub thawed_rolled_out: bool,
    /// A write probe against the public URL: Some(true) refused, Some(false) accepted,
    /// None when there is no URL to probe.
    pub write_refused: Option<bool>,
    /// The write probe (or reading its credentials) failed: the freeze or the thaw cannot
    /// be proven. Counts against maxReadOnlyDuration like any wait while frozen.
    pub probe_error: Option<String>,
    pub job: JobView,
    /// A pod of the run's Job has not ended yet (it may outlive its deleted Job while it
    /// shuts down).
    pub sweep_pod_running: bool,
    pub max_read_only: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Patch the Deployment to refuse writes (first time in Freezing).
    Freeze,
    /// Nothing to do until the next observation.
    Wait { why: String },
    /// Create the run's ConfigMap and Job.
    StartJob,
    /// Stop the Job (it is still running) and record this failure; the run thaws once the
    /// sweep's pod has exited.
    Abort { failure: String },
    /// Record the outcome (None: success) and restore the Deployment.
    Thaw { failure: Option<String> },
    /// The run is over.
    Finish { result: RunResult, message: String },
}

pub fn next_step(run: &RunView, world: &World) -> Step {
    let overdue = run.frozen_at.is_some_and(|t| world.now - t > world.max_read_only);
    let overdue_failure =
        || format!("the registry was read-only for longer than maxReadOnlyDuration ({}m)", world.max_read_only.num_minutes());
    match run.phase {
        // Nothing was changed yet: a deleted policy just ends its run.
        RunPhase::Freezing if run.frozen_at.is_none() && world.deleting => {
            Step::Finish { result: RunResult::Failed, message: "the policy was deleted before the registry was frozen".into() }
        }
        RunPhase::Freezing if run.frozen_at.is_none() => Step::Freeze,
        RunPhase::Freezing if !world.frozen_applied && !world.deleting && !overdue => Step::Freeze,
        RunPhase::Freezing if world.deleting => Step::Thaw { failure: Some("the policy was deleted during the run".into()) },
        RunPhase::Freezing if overdue => Step::Thaw { failure: Some(overdue_failure()) },
        RunPhase::Freezing if !world.frozen_rolled_out => Step::Wait { why: "waiting for every registry replica to run read-only".into() },
        RunPhase::Freezing if world.probe_error.is_some() => {
            Step::Wait { why: format!("cannot prove the freeze: {}", world.probe_error.as_deref().unwrap_or_default()) }
        }
        RunPhase::Freezing if world.write_refused == Some(false) => Step::Wait { why: "the registry still accepts writes".into() },
        RunPhase::Freezing => Step::StartJob,
        // Never thaw, and never start a second sweep, while a sweep process may still run:
        // garbage collection that overlaps a push loses the pushed blobs.
        RunPhase::Sweeping if run.failure.is_some() && world.job == JobView::Running => {
            Step::Abort { failure: run.failure.clone().unwrap_or_default() }
        }
        RunPhase::Sweeping if world.sweep_pod_running && (run.failure.is_some() || world.job == JobView::Missing) => {
            Step::Wait { why: "waiting for the stopped sweep to exit before the registry accepts writes again".into() }
        }
        RunPhase::Sweeping if run.failure.is_some() => Step::Thaw { failure: run.failure.clone() },
        // Read-only mode removed behind our back while the sweep runs: stop it at once, a
        // push during garbage collection can lose blobs.
        RunPhase::Sweeping if run.frozen_at.is_some() && !world.frozen_applied && world.job == JobView::Running => Step::Abort {
            failure:
                "the registry Deployment lost its read-only setting during the sweep (reverted by another tool?); the sweep was stopped"
                    .into(),
        },
        RunPhase::Sweeping => match &world.job {
            JobView::Running if world.deleting => Step::Abort { failure: "the policy was deleted during the run".into() },
            JobView::Running if overdue => Step::Abort { failure: overdue_failure() },
            JobView::Running => Step::Wait { why: "the sweep Job is running".into() },
            JobView::Missing if world.deleting || overdue => Step::Thaw {
                failure: Some(if world.deleting { "the policy was deleted during the run".into() } else { overdue_failure() }),
            },
            // A lost Job is restarted only on a freeze verified in the live Deployment and its
            // pods: without it, the sweep's garbage collection could overlap a push.
            JobView::Missing if run.dry_run || (world.frozen_applied && world.frozen_rolled_out) => Step::StartJob,
            JobView::Missing if world.frozen_applied => {
                Step::Wait { why: "the sweep Job is gone; waiting for every replica to run read-only before restarting it".into() }
            }
            JobView::Missing => Step::Thaw {
                failure: Some(
                    "the sweep Job disappeared and the registry Deployment no longer carries the freeze; the sweep was not restarted"
                        .into(),
                ),
            },
            JobView::Succeeded if run.dry_run => Step::Finish { result: RunResult::Succeeded, message: "dry run finished".into() },
            JobView::Succeeded => Step::Thaw { failure: None },
            JobView::Failed(why) if run.dry_run => Step::Finish { result: RunResult::Failed, message: why.clone() },
            JobView::Failed(why) => Step::Thaw { failure: Some(format!("the sweep Job failed: {why}")) },
        },
        RunPhase::Thawing if !world.thawed_rolled_out => Step::Wait { why: "waiting for the registry to roll out read-write".into() },
        // Restored, but not provably writable: wait, within the deadline; past it, the run
        // ends failed (the Deployment is already as it was).
        RunPhase::Thawing if world.probe_error.is_some() && overdue => Step::Finish {
            result: RunResult::Failed,
            message: format!(
                "{}; the registry was restored, but accepting writes could not be proven: {}",
                run.failure.clone().unwrap_or_else(overdue_failure),
                world.probe_error.as_deref().unwrap_or_default()
            ),
        },
        RunPhase::Thawing if world.probe_error.is_some() => {
            Step::Wait { why: format!("cannot prove the thaw: {}", world.probe_error.as_deref().unwrap_or_default()) }
        }
        RunPhase::Thawing if world.write_refused == Some(true) => Step::Wait { why: "the registry still refuses writes".into() },
        RunPhase::Thawing => match &run.failure {
            Some(f) => Step::Finish { result: RunResult::Failed, message: f.clone() },
            None => Step::Finish { result: RunResult::Succeeded, message: "swept".into() },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn world(now: i64) -> World {
        World {
            probe_error: None,
            now: t(now),
            deleting: false,
            frozen_applied: true,
            frozen_rolled_out: false,
            thawed_rolled_out: false,
            write_refused: None,
            job: JobView::Missing,
            sweep_pod_running: false,
            max_read_only: Duration::minutes(60),
        }
    }

    fn run(phase: RunPhase, frozen_at: Option<i64>) -> RunView {
        RunView { phase, dry_run: false, frozen_at: frozen_at.map(t), failure: None }
    }

    #[test]
    fn the_happy_path() {
        let mut w = world(0);
        assert_eq!(next_step(&run(RunPhase::Freezing, None), &w), Step::Freeze);
        let mut gone = world(0);
        gone.deleting = true;
        assert!(
            matches!(next_step(&run(RunPhase::Freezing, None), &gone), Step::Finish { result: RunResult::Failed, .. }),
            "nothing to thaw"
        );
        assert!(matches!(next_step(&run(RunPhase::Freezing, Some(0)), &w), Step::Wait { .. }));
        w.frozen_rolled_out = true;
        w.write_refused = Some(false);
        assert!(matches!(next_step(&run(RunPhase::Freezing, Some(0)), &w), Step::Wait { why } if why.contains("accepts writes")));
        w.write_refused = Some(true);
        assert_eq!(next_step(&run(RunPhase::Freezing, Some(0)), &w), Step::StartJob);
        w.job = JobView::Running;
        assert!(matches!(next_step(&run(RunPhase::Sweeping, Some(0)), &w), Step::Wait { .. }));
        w.job = JobView::Succeeded;
        assert_eq!(next_step(&run(RunPhase::Sweeping, Some(0)), &w), Step::Thaw { failure: None });
        assert!(matches!(next_step(&run(RunPhase::Thawing, Some(0)), &w), Step::Wait { .. }));
        w.thawed_rolled_out = true;
        assert!(matches!(next_step(&run(RunPhase::Thawing, Some(0)), &w), Step::Wait { why } if why.contains("refuses")));
        w.write_refused = Some(false);
        assert_eq!(next_step(&run(RunPhase::Thawing, Some(0)), &w), Step::Finish { result: RunResult::Succeeded, message: "swept".into() });
    }

    #[test]
    fn every_failure_path_thaws() {
        let mut w = world(10);
        w.frozen_rolled_out = true;
        w.job = JobView::Failed("exit 3".into());
        assert!(matches!(next_step(&run(RunPhase::Sweeping, Some(0)), &w), Step::Thaw { failure: Some(f) } if f.contains("exit 3")));
        // Overrunning the read-only budget, while freezing, while sweeping, and with the Job gone.
        let late = world(61);
        assert!(
            matches!(next_step(&run(RunPhase::Freezing, Some(0)), &late), Step::Thaw { failure: Some(f) } if f.contains("maxReadOnlyDuration"))
        );
        let mut running = world(61);
        running.job = JobView::Running;
        assert!(matches!(next_step(&run(RunPhase::Sweeping, Some(0)), &running), Step::Abort { .. }));
        assert!(matches!(next_step(&run(RunPhase::Sweeping, Some(0)), &world(61)), Step::Thaw { failure: Some(_) }));
        // Deleting the policy.
        let mut deleting = world(5);
        deleting.deleting = true;
        assert!(matches!(next_step(&run(RunPhase::Freezing, Some(0)), &deleting), Step::Thaw { failure: Some(_) }));
        deleting.job = JobView::Running;
        assert!(matches!(next_step(&run(RunPhase::Sweeping, Some(0)), &deleting), Step::Abort { .. }));
        // A failure recorded before Thawing ends the run as Failed once thawed.
        let mut thawing = run(RunPhase::Thawing, Some(0));
        thawing.failure = Some("the sweep Job failed: exit 3".into());
        let mut done = world(70);
        done.thawed_rolled_out = true;
        assert_eq!(next_step(&thawing, &done), Step::Finish { result: RunResult::Failed, message: "the sweep Job failed: exit 3".into() });
    }

    #[test]
    fn a_freeze_that_is_missing_is_applied_again_and_a_revert_stops_the_sweep() {
        let mut w = world(1);
        w.frozen_applied = false;
        assert_eq!(next_step(&run(RunPhase::Freezing, Some(0)), &w), Step::Freeze);
        w.job = JobView::Running;
        assert!(matches!(next_step(&run(RunPhase::Sweeping, Some(0)), &w), Step::Abort { failure } if failure.contains("read-only")));
    }

    #[test]
    fn an_aborted_sweep_thaws_only_once_its_pod_has_exited() {
        let mut aborted = run(RunPhase::Sweeping, Some(0));
        aborted.failure = Some("the policy was deleted during the run".into());
        let mut w = world(5);
        // The Job is still there (its deletion failed): delete it again.
        w.job = JobView::Running;
        w.sweep_pod_running = true;
        assert!(matches!(next_step(&aborted, &w), Step::Abort { .. }));
        // The Job is gone but its pod is still shutting down: the registry stays read-only,
        // even past maxReadOnlyDuration.
        w.job = JobView::Missing;
        assert!(matches!(next_step(&aborted, &w), Step::Wait { why } if why.contains("exit")));
        assert!(matches!(next_step(&aborted, &World { now: t(500), ..w.clone() }), Step::Wait { .. }));
        w.sweep_pod_running = false;
        assert!(matches!(next_step(&aborted, &w), Step::Thaw { failure: Some(f) } if f.contains("deleted")));
        // A Job lost while its pod still runs is not started a second time until the pod ends.
        let mut lost = world(5);
        lost.sweep_pod_running = true;
        assert!(matches!(next_step(&run(RunPhase::Sweeping, Some(0)), &lost), Step::Wait { .. }));
        lost.sweep_pod_running = false;
        lost.frozen_rolled_out = true;
        assert_eq!(next_step(&run(RunPhase::Sweeping, Some(0)), &lost), Step::StartJob);
    }

    #[test]
    fn a_lost_job_is_recreated_only_on_a_verified_freeze_and_a_dry_run_never_thaws() {
        let mut w = world(5);
        let sweeping = run(RunPhase::Sweeping, Some(0));
        // The freeze is recorded in the Deployment but its pods do not all run it yet: wait.
        assert!(matches!(next_step(&sweeping, &w), Step::Wait { why } if why.contains("read-only")));
        w.frozen_rolled_out = true;
        assert_eq!(next_step(&sweeping, &w), Step::StartJob);
        // The freeze was reverted behind our back: never sweep a writable registry.
        let reverted = World { frozen_applied: false, ..w.clone() };
        assert!(matches!(next_step(&sweeping, &reverted), Step::Thaw { failure: Some(f) } if f.contains("no longer carries the freeze")));
        let mut dry = run(RunPhase::Sweeping, None);
        dry.dry_run = true;
        w.job = JobView::Succeeded;
        assert!(matches!(next_step(&dry, &w), Step::Finish { result: RunResult::Succeeded, .. }));
        w.job = JobView::Failed("oops".into());
        assert!(matches!(next_step(&dry, &w), Step::Finish { result: RunResult::Failed, .. }));
    }
}
