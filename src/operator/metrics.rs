//! Prometheus metrics, named by the Prometheus conventions (base units in the name, `_total`
//! on counters) and served as OpenMetrics text. Labels are bounded: a result, an error
//! category, and a policy's namespace and name (one series per policy, removed with it).
//! The gauges are what alerts need (see `charts/regsweep/files/alerts.yaml`): a registry frozen
//! now and since when, a run in flight, the last run's result and the last success, and the
//! two durations alerts compare with (the longest freeze allowed, the schedule's interval).

use std::sync::Arc;

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::policy::{RegistryCleanupPolicy, RunResult};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub namespace: String,
    pub policy: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

type PerPolicy = Family<PolicyLabels, Gauge>;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub runs: Family<RunLabels, Counter>,
    pub reclaimed_bytes: Family<PolicyLabels, Counter>,
    pub deleted_manifests: Family<PolicyLabels, Counter>,
    pub read_only_seconds: Family<PolicyLabels, Counter>,
    pub reconciles: Counter,
    pub reconcile_errors: Family<CategoryLabel, Counter>,
    pub frozen: PerPolicy,
    pub frozen_since: PerPolicy,
    pub run_in_flight: PerPolicy,
    pub last_run_succeeded: PerPolicy,
    pub last_success: PerPolicy,
    pub max_read_only: PerPolicy,
    pub schedule_interval: PerPolicy,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("regsweep");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            runs: Family::default(),
            reclaimed_bytes: Family::default(),
            deleted_manifests: Family::default(),
            read_only_seconds: Family::default(),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            frozen: Family::default(),
            frozen_since: Family::default(),
            run_in_flight: Family::default(),
            last_run_succeeded: Family::default(),
            last_success: Family::default(),
            max_read_only: Family::default(),
            schedule_interval: Family::default(),
        };
        let seconds = || Unit::Seconds;
        registry.register("runs", "Finished runs, by policy and result", m.runs.clone());
        registry.register_with_unit("reclaimed", "Storage freed by sweeps", Unit::Bytes, m.reclaimed_bytes.clone());
        registry.register("deleted_manifests", "Manifests deleted by sweeps", m.deleted_manifests.clone());
        registry.register_with_unit("read_only", "Time registries spent read-only for sweeps", seconds(), m.read_only_seconds.clone());
        registry.register("reconciles", "Reconciles started", m.reconciles.clone());
        registry.register("reconcile_errors", "Reconcile errors by category", m.reconcile_errors.clone());
        registry.register("registry_frozen", "1 while the policy's run holds its registry read-only (or scaled down)", m.frozen.clone());
        registry.register_with_unit(
            "registry_frozen_since_timestamp",
            "When the policy's run froze its registry (Unix time; 0 when not frozen)",
            seconds(),
            m.frozen_since.clone(),
        );
        registry.register("run_in_flight", "1 while a run of the policy is in flight", m.run_in_flight.clone());
        registry.register("last_run_succeeded", "1 when the policy's last run succeeded, 0 when it failed", m.last_run_succeeded.clone());
        registry.register_with_unit(
            "last_success_timestamp",
            "When the policy's last successful run ended (Unix time)",
            seconds(),
            m.last_success.clone(),
        );
        registry.register_with_unit(
            "max_read_only",
            "The longest a run of the policy may keep its registry frozen (spec.maintenance.maxReadOnlyDuration)",
            seconds(),
            m.max_read_only.clone(),
        );
        registry.register_with_unit(
            "schedule_interval",
            "Time between two scheduled runs of the policy (0 without a schedule)",
            seconds(),
            m.schedule_interval.clone(),
        );
        registry.register("build", "The operator's version", Info::new(VersionLabel { version: env!("CARGO_PKG_VERSION").into() }));
        Metrics { registry: Arc::new(registry), ..m }
    }
}

fn labels(p: &RegistryCleanupPolicy) -> PolicyLabels {
    PolicyLabels { namespace: p.metadata.namespace.clone().unwrap_or_default(), policy: p.metadata.name.clone().unwrap_or_default() }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }

    pub fn run_finished(&self, p: &RegistryCleanupPolicy, result: &str, bytes: u64, manifests: u64, read_only_seconds: u64) {
        let l = labels(p);
        self.runs.get_or_create(&RunLabels { namespace: l.namespace.clone(), policy: l.policy.clone(), result: result.to_string() }).inc();
        self.reclaimed_bytes.get_or_create(&l).inc_by(bytes);
        self.deleted_manifests.get_or_create(&l).inc_by(manifests);
        self.read_only_seconds.get_or_create(&l).inc_by(read_only_seconds);
    }

    pub fn reconcile_failed(&self, category: &str) {
        self.reconcile_errors.get_or_create(&CategoryLabel { category: category.to_string() }).inc();
    }

    /// The gauges from a policy and the status it has (or is about to have).
    pub fn observe(&self, p: &RegistryCleanupPolicy, status: Option<&crate::policy::RegistryCleanupPolicyStatus>) {
        let l = labels(p);
        let run = status.and_then(|s| s.run.as_ref());
        let frozen_at = run.and_then(|r| r.frozen_at);
        self.frozen.get_or_create(&l).set(frozen_at.is_some() as i64);
        self.frozen_since.get_or_create(&l).set(frozen_at.map_or(0, |t| t.timestamp()));
        self.run_in_flight.get_or_create(&l).set(run.is_some() as i64);
        if let Some(last) = status.and_then(|s| s.last_run.as_ref()) {
            self.last_run_succeeded.get_or_create(&l).set((last.result == RunResult::Succeeded) as i64);
        }
        let success = status
            .and_then(|s| s.history.iter().chain(s.last_run.iter()).filter(|r| r.result == RunResult::Succeeded).map(|r| r.end).max());
        if let Some(t) = success {
            self.last_success.get_or_create(&l).set(t.timestamp());
        }
        if let Ok(compiled) = crate::policy::compile(&p.spec) {
            self.max_read_only.get_or_create(&l).set(compiled.max_read_only.num_seconds());
            let interval = compiled.schedule.as_ref().and_then(|cron| {
                let first = cron.find_next_occurrence(&Utc::now().with_timezone(&compiled.time_zone), false).ok()?;
                let second = cron.find_next_occurrence(&first, false).ok()?;
                Some((second - first).num_seconds())
            });
            self.schedule_interval.get_or_create(&l).set(interval.unwrap_or(0));
        }
    }

    /// Drops a deleted policy's series.
    pub fn forget(&self, p: &RegistryCleanupPolicy) {
        let l = labels(p);
        for family in [
            &self.frozen,
            &self.frozen_since,
            &self.run_in_flight,
            &self.last_run_succeeded,
            &self.last_success,
            &self.max_read_only,
            &self.schedule_interval,
        ] {
            family.remove(&l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml_status: &str) -> RegistryCleanupPolicy {
        serde_yaml::from_str(&format!(
            "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: nightly, namespace: registry}}\nspec:\n  registry: {{}}\n  schedule: \"0 3 * * *\"\n  maintenance: {{maxReadOnlyDuration: 20m}}\n{yaml_status}"
        ))
        .unwrap()
    }

    #[test]
    fn conventional_names_and_the_gauges_alerts_need() {
        let m = Metrics::default();
        let p = policy(
            "status:\n  run: {id: r1, phase: Sweeping, started: \"2026-12-03T03:00:00Z\", dryRun: false, frozenAt: \"2026-12-03T03:00:10Z\"}\n",
        );
        m.run_finished(&p, "Succeeded", 1024, 3, 42);
        m.reconcile_failed("kube-api");
        m.observe(&p, p.status.as_ref());
        let text = m.encode();
        let l = "namespace=\"registry\",policy=\"nightly\"";
        for line in [
            format!("regsweep_runs_total{{{l},result=\"Succeeded\"}} 1"),
            format!("regsweep_reclaimed_bytes_total{{{l}}} 1024"),
            format!("regsweep_deleted_manifests_total{{{l}}} 3"),
            format!("regsweep_read_only_seconds_total{{{l}}} 42"),
            "regsweep_reconcile_errors_total{category=\"kube-api\"} 1".to_string(),
            format!("regsweep_registry_frozen{{{l}}} 1"),
            format!("regsweep_registry_frozen_since_timestamp_seconds{{{l}}} 1796266810"),
            format!("regsweep_run_in_flight{{{l}}} 1"),
            format!("regsweep_max_read_only_seconds{{{l}}} 1200"),
            format!("regsweep_schedule_interval_seconds{{{l}}} 86400"),
            format!("regsweep_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
            "# TYPE regsweep_reclaimed_bytes counter".to_string(),
            "# UNIT regsweep_reclaimed_bytes bytes".to_string(),
        ] {
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text");
        // The list the alert and dashboard tests read is exactly what is served (the last-run
        // gauges appear once a run has finished).
        let finished = labels(&p);
        m.last_run_succeeded.get_or_create(&finished).set(1);
        m.last_success.get_or_create(&finished).set(1);
        let text = m.encode();
        let served: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| match kind {
                "counter" => format!("{name}_total"),
                "info" => format!("{name}_info"),
                _ => name.to_string(),
            })
            .collect();
        let listed: std::collections::BTreeSet<String> = include_str!("../../tests/metrics.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect();
        assert_eq!(served, listed, "tests/metrics.txt lists what the operator serves");
        m.forget(&p);
        assert!(!m.encode().contains("regsweep_registry_frozen{"), "a deleted policy's gauges go");
    }
}
