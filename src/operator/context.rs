//! What every reconcile shares.

use std::time::Duration;

use kube::Client;
use kube::runtime::events::Recorder;

/// How the operator is configured (its command-line flags).
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The operator's own image: the sweep Job's init container copies `regsweep` from it.
    pub image: String,
    /// Namespaces whose policies are reconciled; None: all.
    pub watch_namespaces: Option<Vec<String>>,
    /// Namespaces scanned for images in use; None: all.
    pub in_use_namespaces: Option<Vec<String>>,
    /// How often a run in flight is looked at again.
    pub poll: Duration,
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub config: OperatorConfig,
    pub metrics: super::metrics::Metrics,
}
