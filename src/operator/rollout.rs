//! Whether a Deployment has finished rolling out its current template: the controller has seen
//! the newest generation, every replica is updated and available, and no old pod is left.
//! Freezing waits for this before the sweep starts (an old, writable pod could still take a
//! push), and thawing waits for it before the run is reported done.

use k8s_openapi::api::apps::v1::Deployment;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    Complete,
    Pending(String),
}

pub fn rollout(deploy: &Deployment) -> Rollout {
    let generation = deploy.metadata.generation.unwrap_or(0);
    let want = deploy.spec.replicas.unwrap_or(1);
    let Some(status) = &deploy.status else { return Rollout::Pending("no status yet".into()) };
    let observed = status.observed_generation.unwrap_or(0);
    if observed < generation {
        return Rollout::Pending(format!("the Deployment controller has not seen generation {generation} yet"));
    }
    let (total, updated, available) =
        (status.replicas.unwrap_or(0), status.updated_replicas.unwrap_or(0), status.available_replicas.unwrap_or(0));
    if updated < want {
        return Rollout::Pending(format!("{updated} of {want} replicas run the new template"));
    }
    if total > updated {
        return Rollout::Pending(format!("{} old replica(s) still running", total - updated));
    }
    if available < want {
        return Rollout::Pending(format!("{available} of {want} replicas available"));
    }
    Rollout::Complete
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(generation: i64, replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "r", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn waits_for_every_replica_of_the_new_template() {
        let s = |og: i64, r: i32, u: i32, a: i32| json!({"observedGeneration": og, "replicas": r, "updatedReplicas": u, "availableReplicas": a});
        assert_eq!(rollout(&deploy(2, 2, s(2, 2, 2, 2))), Rollout::Complete);
        assert!(matches!(rollout(&deploy(3, 2, s(2, 2, 2, 2))), Rollout::Pending(w) if w.contains("generation 3")));
        assert!(matches!(rollout(&deploy(2, 2, s(2, 3, 2, 2))), Rollout::Pending(w) if w.contains("old replica")));
        assert!(matches!(rollout(&deploy(2, 2, s(2, 2, 1, 1))), Rollout::Pending(_)));
        assert!(matches!(rollout(&deploy(2, 2, s(2, 2, 2, 1))), Rollout::Pending(w) if w.contains("available")));
        // Scaled to zero: complete once no pod is left.
        assert_eq!(rollout(&deploy(2, 0, s(2, 0, 0, 0))), Rollout::Complete);
        assert!(matches!(rollout(&deploy(2, 0, s(2, 1, 0, 1))), Rollout::Pending(_)));
    }
}
