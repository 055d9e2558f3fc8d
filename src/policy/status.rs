//! What the operator reports on a policy: kstatus-style conditions, the phase, the run in
//! flight (so a restarted operator resumes or thaws it), the last run and a short history.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use k8s_openapi::api::core::v1::EnvVar;

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCleanupPolicyStatus {
    /// Idle, Freezing, Sweeping, Thawing, Suspended or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, Reconciling and Stalled, with Kubernetes condition
    /// semantics (kstatus reads them; one entry per type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The run in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunState>,
    /// The last finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// When the next scheduled run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<DateTime<Utc>>,
    /// The schedule tick the last run covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// The spec generation the last run was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_generation: Option<i64>,
    /// The most recent runs, newest first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RunSummary>,
    /// A plan made by a review run and not executed yet: waiting for approval
    /// (`spec.approval: Manual`) or held over `spec.limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_plan: Option<PendingPlan>,
}

/// A reviewed plan waiting for its approval: `kubectl annotate rcp NAME
/// regsweep.dev/approve-plan=<id>` runs it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingPlan {
    /// The plan id: a content hash of what it deletes.
    pub id: String,
    /// The review run that made it (its plan is saved on the registry's volume under
    /// `.regsweep/plans/<run>.json`).
    pub run: String,
    /// When the plan was made.
    pub made: DateTime<Utc>,
    /// Tags the plan deletes.
    pub tags_deleted: u64,
    /// Manifests the plan deletes.
    pub manifests_deleted: u64,
    /// Bytes garbage collection would free after it.
    pub bytes_estimated: u64,
    /// The repositories with the most deletions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub largest: Vec<RepositoryDeletions>,
    /// Where the whole per-tag plan can be read.
    pub details: String,
    /// Set when the plan exceeds `spec.limits`: approving it lets it run anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_limit: Option<String>,
    /// Why the last approval annotation was refused (a stale or unknown plan id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryDeletions {
    /// The repository.
    pub repository: String,
    /// Tags deleted from it.
    pub tags_deleted: u64,
}

/// Names the reviewed plan a run executes.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlanRef {
    /// The plan id.
    pub id: String,
    /// The review run that saved it.
    pub run: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    /// The run's id (in Job names, logs and Events).
    pub id: String,
    /// Freezing, Sweeping or Thawing.
    pub phase: RunPhase,
    /// When the run started.
    pub started: DateTime<Utc>,
    /// A dry run: nothing is frozen or deleted.
    pub dry_run: bool,
    /// The schedule tick this run is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// What the freeze changed, to restore it exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<FrozenState>,
    /// When the registry was proven frozen (the read-only window starts here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at: Option<DateTime<Utc>>,
    /// The sweep Job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Why the run will end as Failed once the registry is thawed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Images kept because workloads use them.
    #[serde(default)]
    pub in_use_protected: usize,
    /// The sweep's compact summary, once the Job has reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RunOutcome>,
    /// The spec this run started with. Every step of the run uses it — Deployment,
    /// container, URL, mode, rules, protections — so editing the policy mid-run shapes the
    /// next run, never this one (which could otherwise thaw the wrong Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Box<super::spec::RegistryCleanupPolicySpec>>,
    /// A review run: a dry run that saves its plan on the registry's volume, so limits and
    /// approval are decided before anything is frozen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub review: bool,
    /// The reviewed plan this run executes: it deletes at most that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_plan: Option<PlanRef>,
}

impl RunState {
    /// A new run's id, the same format for the operator's runs and the command line's: 12 hex
    /// characters (short enough for Job names and labels, unique enough per registry).
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
    }
}

/// What the sweep Job reported through its termination message: the one struct both sides
/// of it use (`regsweep maintenance --summary-file` writes it, the operator reads it). Small
/// enough for the message's 4 KiB.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunOutcome {
    /// The run's id.
    #[serde(default)]
    pub run_id: String,
    /// A dry run: counts are what a real run would delete.
    #[serde(default)]
    pub dry_run: bool,
    /// Tags deleted.
    #[serde(default)]
    pub tags_deleted: u64,
    /// Manifests deleted.
    #[serde(default)]
    pub manifests_deleted: u64,
    /// Storage bytes freed.
    #[serde(default)]
    pub bytes_reclaimed: u64,
    /// What the plan estimated garbage collection would free.
    #[serde(default)]
    pub bytes_estimated: u64,
    /// The id of the plan the run made (what an approval names).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan_id: String,
    /// Set when that plan exceeds `spec.limits`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_limit: Option<String>,
    /// The repositories with the most deletions (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub largest: Vec<RepositoryDeletions>,
    /// With `spec.quarantine`: until when what the run deleted stays restorable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined_until: Option<DateTime<Utc>>,
    /// The bytes that quarantine keeps on disk until then.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quarantined_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The run's id (in Job names, logs and Events).
    pub id: String,
    /// When the run started.
    pub start: DateTime<Utc>,
    /// When it ended (the registry thawed).
    pub end: DateTime<Utc>,
    /// Succeeded or Failed.
    pub result: RunResult,
    /// A dry run: `manifestsDeleted` and `tagsDeleted` are what a real run would delete.
    pub dry_run: bool,
    /// Manifests deleted.
    pub manifests_deleted: u64,
    /// Tags deleted.
    pub tags_deleted: u64,
    /// Storage bytes freed.
    pub bytes_reclaimed: u64,
    /// What the plan estimated garbage collection would free (a dry run's result).
    #[serde(default)]
    pub bytes_estimated: u64,
    /// `bytesReclaimed` for people (printer column); for a dry run, what it would free.
    pub reclaimed: String,
    /// How long the registry refused writes for this run.
    pub read_only_seconds: i64,
    /// Images kept because workloads use them.
    pub in_use_protected: usize,
    /// What happened, for people.
    pub message: String,
    /// The plan the run made (a review run) or executed. Always written: the status is a
    /// merge patch, and an omitted field would keep the previous run's value.
    #[serde(default)]
    pub plan_id: String,
    /// A review run: it made the plan, the next run executes it.
    #[serde(default)]
    pub review: bool,
    /// With `spec.quarantine`: what the run deleted is restorable until then
    /// (`regsweep restore --url <registry> --run <id>`); null when deletions were final.
    #[serde(default)]
    pub quarantined_until: Option<DateTime<Utc>>,
    /// The bytes that quarantine keeps on disk until then.
    #[serde(default)]
    pub quarantined_bytes: u64,
}

// The plain types of a run's state, kept here so the CRD types need nothing of the controller.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunPhase {
    Freezing,
    Sweeping,
    Thawing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunResult {
    Succeeded,
    Failed,
}

/// How writes are stopped for one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FreezeMethod {
    /// Read-only mode; the sweep Job runs beside the registry.
    ReadOnly,
    /// No registry pod at all (ReadWriteOncePod volumes can be mounted by one pod only).
    ScaleDown,
}

/// What the freeze changed, kept in the policy's status so any operator replica can thaw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrozenState {
    /// The registry Deployment that was frozen.
    pub deployment: String,
    /// Its registry container.
    pub container: String,
    /// ReadOnly or ScaleDown.
    pub method: FreezeMethod,
    /// The env var of that name before the freeze, exactly (None: there was none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_env: Option<EnvVar>,
    /// `spec.replicas` before a ScaleDown (None: unset, which means 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_replicas: Option<i32>,
}
