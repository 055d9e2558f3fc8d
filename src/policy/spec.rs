//! The `RegistryCleanupPolicy` resource. The CRD is generated from these types; the CLI reads
//! the very same YAML document and ignores the fields only the operator needs.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::RegistryCleanupPolicyStatus;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[kube(
    group = "regsweep.dev",
    version = "v1alpha1",
    kind = "RegistryCleanupPolicy",
    namespaced,
    shortname = "rcp",
    doc = "A RegistryCleanupPolicy says what to keep in a CNCF Distribution registry on filesystem storage; the regsweep operator freezes the registry, deletes the rest through its API, runs its garbage collector, thaws it and reports here.",
    status = "RegistryCleanupPolicyStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Last Result","type":"string","jsonPath":".status.lastRun.result"}"#,
    printcolumn = r#"{"name":"Reclaimed","type":"string","jsonPath":".status.lastRun.reclaimed"}"#,
    // A `date` column shows a future time as `<invalid>`: the time itself is what people need.
    printcolumn = r#"{"name":"Next Run","type":"string","jsonPath":".status.nextRunTime"}"#,
    printcolumn = r#"{"name":"Restorable Until","type":"string","priority":1,"jsonPath":".status.lastRun.quarantinedUntil"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.startingDeadlineSeconds) || has(self.schedule)", "message": "startingDeadlineSeconds applies to scheduled runs: set spec.schedule, or drop it"}
]))]
pub struct RegistryCleanupPolicySpec {
    /// Which registry this policy cleans.
    pub registry: RegistryTarget,
    /// Five-field cron expression (minute hour day-of-month month day-of-week). Without it the
    /// operator runs once per spec generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone for `schedule`, e.g. `Europe/Berlin`. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Stop starting new runs. A run in flight still finishes and thaws the registry.
    #[serde(default)]
    pub suspend: bool,
    /// Like a CronJob's: a scheduled run that could not start within this many seconds of
    /// its time (the operator was down or upgraded) is skipped and reported, instead of
    /// freezing the registry at an unplanned hour. Default: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<i64>,
    /// Plan and report only: never freeze, delete or collect.
    #[serde(default)]
    pub dry_run: bool,
    /// Per-repository rules; for each repository the first rule that matches wins.
    /// A repository no rule matches is left alone.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Images that are never deleted, whatever the rules say.
    #[serde(default)]
    pub protection: Protection,
    /// How the registry is kept from changing while the sweep runs.
    #[serde(default)]
    pub maintenance: MaintenanceSpec,
    /// A circuit breaker: a run whose plan deletes more than this stops before anything is
    /// frozen or deleted (an approved plan is let through).
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// `Manual`: each run first makes its plan (nothing frozen), publishes it in the status
    /// and waits until the policy is annotated `regsweep.dev/approve-plan: <plan id>`; the
    /// run then deletes at most that plan. Default `Auto` (operator).
    #[serde(default, skip_serializing_if = "ApprovalMode::is_auto")]
    pub approval: ApprovalMode,
    /// Undo: what a run deletes stays restorable (`regsweep restore`) for this long, held by
    /// the registry itself under `regsweep-quarantine/<repository>`; its bytes are freed by
    /// the first run after it expires. Absent: deletions are final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantineSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineSpec {
    /// How long deleted images stay restorable, e.g. `7d`, `36h`. Changing it later does not
    /// change the expiry of what is already in quarantine.
    #[schemars(regex(pattern = r"^\s*[0-9]+\s*[a-zA-Zµ]+(\s*[0-9]+\s*[a-zA-Zµ]+)*\s*$"))]
    pub keep_for: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, JsonSchema, PartialEq, Eq)]
pub enum ApprovalMode {
    #[default]
    Auto,
    Manual,
}

impl ApprovalMode {
    pub fn is_auto(&self) -> bool {
        *self == ApprovalMode::Auto
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// At most this many tags deleted in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_deleted_tags: Option<u64>,
    /// At most this percentage (0–100) of the tags in the repositories the rules match
    /// deleted in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_deleted_percent: Option<u8>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.max_deleted_tags.is_none() && self.max_deleted_percent.is_none()
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistryTarget {
    /// The registry Deployment in the policy's namespace (operator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The registry container, when the pod has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Public URL of the registry, e.g. `http://docker-registry.registry.svc:5000`
    /// (read-only probes and API dry runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^/\s]+(/.*)?$"))]
    pub url: Option<String>,
    /// Host names (with or without port) that workloads use to pull from this registry.
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")))]
    pub hosts: Vec<String>,
    /// Secret with the registry credentials (operator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Globs over repository names: `*` matches within one path segment, `**` across segments.
    #[schemars(length(min = 1))]
    pub repositories: Vec<String>,
    /// Globs of repositories this rule does not apply to (a later rule may still match them).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Keep the newest N candidate tags, by push time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_latest: Option<i64>,
    /// Keep candidate tags pushed within this duration, e.g. `90m`, `12h`, `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*[0-9]+\s*[a-zA-Zµ]+(\s*[0-9]+\s*[a-zA-Zµ]+)*\s*$"))]
    pub keep_within: Option<String>,
    /// Tags never deleted: globs, or anchored regular expressions after `regex:`.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Only tags matching these are candidates for deletion (default: every tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_tags: Option<Vec<String>>,
    /// What to do with manifests no tag points at.
    #[serde(default)]
    pub untagged: UntaggedAction,
    /// Untagged manifests younger than this stay (default `24h`): an index's children are
    /// pushed before the index itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*[0-9]+\s*[a-zA-Zµ]+(\s*[0-9]+\s*[a-zA-Zµ]+)*\s*$"))]
    pub untagged_grace_period: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, JsonSchema, PartialEq, Eq)]
pub enum UntaggedAction {
    #[default]
    Keep,
    Delete,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Protection {
    /// Protect images referenced by workloads in the cluster (operator only).
    #[serde(default = "default_true")]
    pub in_use: bool,
    /// References always kept: `[host/]repository[:tag][@digest]`, where repository and tag
    /// may be globs.
    #[serde(default)]
    pub references: Vec<String>,
}

impl Default for Protection {
    fn default() -> Self {
        Protection { in_use: true, references: Vec::new() }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// How writes are stopped during a sweep (operator).
    #[serde(default)]
    pub mode: MaintenanceMode,
    /// Longest the registry may stay read-only; past it the run is abandoned and the
    /// registry thawed. Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*[0-9]+\s*[a-zA-Zµ]+(\s*[0-9]+\s*[a-zA-Zµ]+)*\s*$"))]
    pub max_read_only_duration: Option<String>,
    /// How long an aborted sweep may take to stop after SIGTERM (its in-flight deletes
    /// finish, its private registry and garbage-collect stop) before it is killed: the sweep
    /// pod's `terminationGracePeriodSeconds`. Default `30s` (operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\s*[0-9]+\s*[a-zA-Zµ]+(\s*[0-9]+\s*[a-zA-Zµ]+)*\s*$"))]
    pub sweep_grace_period: Option<String>,
    /// Resources of the sweep container. Default: the registry container's own (operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, JsonSchema, PartialEq, Eq)]
pub enum MaintenanceMode {
    /// ReadOnly for ReadWriteMany/ReadWriteOnce volumes, ScaleDown for ReadWriteOncePod.
    #[default]
    Auto,
    ReadOnly,
    ScaleDown,
}
