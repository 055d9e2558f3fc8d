//! Every Kubernetes API call the operator makes, as RBAC rules: the one statement of what it
//! needs. `regsweep rbac` prints it; the Helm chart's Roles are checked against it
//! (`tests/chart/`), and the end-to-end tests check every request the operator sends against it
//! (`tests/operator_e2e.rs`), so the chart grants exactly what is used.

use serde::Serialize;

/// Where a permission is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    /// Where policies and their registries live: cluster-wide, or each watched namespace.
    Policies,
    /// Where images in use are looked for: cluster-wide, or the in-use (default: watched)
    /// namespaces.
    InUse,
    /// The operator's own namespace, for the leader Lease (only with `--leader-election`).
    Operator,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub scope: Scope,
    pub api_group: &'static str,
    /// `resource` or `resource/subresource`.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub why: &'static str,
    /// Checked by an admission plugin on another call, never requested itself.
    pub admission_only: bool,
}

const fn allow(
    scope: Scope,
    api_group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    why: &'static str,
) -> Permission {
    Permission { scope, api_group, resource, verbs, why, admission_only: false }
}

pub const PERMISSIONS: &[Permission] = &[
    allow(
        Scope::Policies,
        "regsweep.dev",
        "registrycleanuppolicies",
        &["get", "list", "watch", "patch"],
        "the controller's watch; the finalizer",
    ),
    allow(Scope::Policies, "regsweep.dev", "registrycleanuppolicies/status", &["patch"], "conditions, the run in flight, the last run"),
    Permission {
        admission_only: true,
        ..allow(
            Scope::Policies,
            "regsweep.dev",
            "registrycleanuppolicies/finalizers",
            &["update"],
            "the sweep Job's ownerReference blocks the policy's deletion (OwnerReferencesPermissionEnforcement)",
        )
    },
    allow(
        Scope::Policies,
        "apps",
        "deployments",
        &["get", "list", "watch", "patch"],
        "freeze and thaw the registry; the run lock; its rollout",
    ),
    allow(Scope::Policies, "batch", "jobs", &["get", "list", "watch", "create", "delete"], "the sweep Job"),
    allow(Scope::Policies, "", "configmaps", &["create", "delete"], "the sweep Job's policy and never-delete list"),
    allow(Scope::Policies, "", "pods", &["list"], "the registry's rollout; the sweep Job's termination message"),
    allow(
        Scope::Policies,
        "",
        "persistentvolumeclaims",
        &["get"],
        "the registry volume's access mode (ReadWriteOnce pins the Job to its node)",
    ),
    allow(Scope::Policies, "", "secrets", &["get"], "spec.registry.credentialsSecret, to probe that the registry refuses writes"),
    allow(
        Scope::Policies,
        "",
        "services",
        &["list"],
        "the Services in front of the registry: names workloads pull it by (in-use protection)",
    ),
    allow(Scope::Policies, "events.k8s.io", "events", &["create", "patch"], "Events on the policy"),
    allow(Scope::InUse, "", "pods", &["list"], "images running now (never deleted)"),
    allow(Scope::InUse, "apps", "deployments", &["list"], "images a workload can start again"),
    allow(Scope::InUse, "apps", "statefulsets", &["list"], "images a workload can start again"),
    allow(Scope::InUse, "apps", "daemonsets", &["list"], "images a workload can start again"),
    allow(Scope::InUse, "apps", "replicasets", &["list"], "images kept for a rollback"),
    allow(Scope::InUse, "batch", "jobs", &["list"], "images a workload can start again"),
    allow(Scope::InUse, "batch", "cronjobs", &["list"], "images a workload can start again"),
    allow(Scope::Operator, "coordination.k8s.io", "leases", &["get", "create", "update"], "leader election"),
];

/// Whether a request (`verb` on `group`/`resource`, `resource/subresource` for subresources)
/// is covered by a permission in `scopes`.
pub fn permits(scopes: &[Scope], verb: &str, group: &str, resource: &str) -> bool {
    PERMISSIONS.iter().any(|p| scopes.contains(&p.scope) && p.api_group == group && p.resource == resource && p.verbs.contains(&verb))
}

/// A table for people: scope, group, resource, verbs, why.
pub fn render_table() -> String {
    let mut out = format!("{:<9} {:<20} {:<36} {:<28} WHY\n", "SCOPE", "API GROUP", "RESOURCE", "VERBS");
    for p in PERMISSIONS {
        let scope = match p.scope {
            Scope::Policies => "policies",
            Scope::InUse => "in-use",
            Scope::Operator => "operator",
        };
        let group = if p.api_group.is_empty() { "\"\" (core)" } else { p.api_group };
        out.push_str(&format!("{scope:<9} {group:<20} {:<36} {:<28} {}\n", p.resource, p.verbs.join(","), p.why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_resource_appears_once_per_scope() {
        for (i, a) in PERMISSIONS.iter().enumerate() {
            for b in &PERMISSIONS[i + 1..] {
                assert!(!(a.scope == b.scope && a.api_group == b.api_group && a.resource == b.resource), "{a:?} and {b:?}");
            }
        }
    }

    #[test]
    fn permits_matches_group_resource_verb_and_scope() {
        assert!(permits(&[Scope::Policies], "patch", "apps", "deployments"));
        assert!(!permits(&[Scope::Policies], "update", "apps", "deployments"));
        assert!(!permits(&[Scope::InUse], "patch", "apps", "deployments"));
        assert!(!permits(&[Scope::Policies], "patch", "", "deployments"));
        assert!(permits(&[Scope::Policies], "patch", "regsweep.dev", "registrycleanuppolicies/status"));
        assert!(!permits(&[Scope::Policies, Scope::InUse], "get", "coordination.k8s.io", "leases"));
    }
}
