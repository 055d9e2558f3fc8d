//! Prometheus metrics, with low-cardinality labels only (a result, an error category).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub runs: Family<ResultLabel, Counter>,
    pub bytes_reclaimed: Counter,
    pub manifests_deleted: Counter,
    pub read_only_seconds: Counter,
    pub reconciles: Counter,
    pub reconcile_errors: Family<CategoryLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("regsweep");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            runs: Family::default(),
            bytes_reclaimed: Counter::default(),
            manifests_deleted: Counter::default(),
            read_only_seconds: Counter::default(),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
        };
        registry.register("runs", "Finished runs by result", m.runs.clone());
        registry.register("bytes_reclaimed", "Storage bytes freed by sweeps", m.bytes_reclaimed.clone());
        registry.register("manifests_deleted", "Manifests deleted by sweeps", m.manifests_deleted.clone());
        registry.register("read_only_seconds", "Seconds registries spent read-only for sweeps", m.read_only_seconds.clone());
        registry.register("reconciles", "Reconciles started", m.reconciles.clone());
        registry.register("reconcile_errors", "Reconcile errors by category", m.reconcile_errors.clone());
        Metrics { registry: Arc::new(registry), ..m }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }

    pub fn run_finished(&self, result: &str, bytes: u64, manifests: u64, read_only_seconds: u64) {
        self.runs.get_or_create(&ResultLabel { result: result.to_string() }).inc();
        self.bytes_reclaimed.inc_by(bytes);
        self.manifests_deleted.inc_by(manifests);
        self.read_only_seconds.inc_by(read_only_seconds);
    }

    pub fn reconcile_failed(&self, category: &str) {
        self.reconcile_errors.get_or_create(&CategoryLabel { category: category.to_string() }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_runs_and_errors() {
        let m = Metrics::default();
        m.run_finished("Succeeded", 1024, 3, 42);
        m.reconcile_failed("kube-api");
        let text = m.encode();
        assert!(text.contains("regsweep_runs_total{result=\"Succeeded\"} 1"), "{text}");
        assert!(text.contains("regsweep_bytes_reclaimed_total 1024"), "{text}");
        assert!(text.contains("regsweep_reconcile_errors_total{category=\"kube-api\"} 1"), "{text}");
    }
}
