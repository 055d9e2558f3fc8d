//! Freezing and thawing the registry Deployment: the smallest change that makes it refuse
//! writes, remembered exactly so the thaw restores the Deployment as it was. Only what regsweep
//! owns is touched: one env var of the registry container (ReadOnly), or `spec.replicas`
//! (ScaleDown). Patches are JSON patches guarded by `test` operations, so a Deployment changed
//! meanwhile by someone else makes the patch fail instead of clobbering their change.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::EnvVar;
use serde_json::{Value, json};

use crate::policy::MaintenanceMode;

pub use crate::registry::{READ_ONLY_ENV, READ_ONLY_VALUE};

pub use crate::policy::{FreezeMethod, FrozenState};

/// The method, and whether the sweep Job must run on the registry pod's node (a
/// ReadWriteOnce volume can be mounted by several pods, but only on one node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreezeChoice {
    pub method: FreezeMethod,
    pub pin_to_node: bool,
}

/// Picks the method for `Auto` from the registry volume's access modes.
pub fn choose_method(mode: MaintenanceMode, access_modes: &[String]) -> FreezeChoice {
    let has = |m: &str| access_modes.iter().any(|a| a == m);
    let pin_to_node = !access_modes.is_empty() && !has("ReadWriteMany");
    match mode {
        MaintenanceMode::ScaleDown => FreezeChoice { method: FreezeMethod::ScaleDown, pin_to_node: false },
        MaintenanceMode::Auto if has("ReadWriteOncePod") => FreezeChoice { method: FreezeMethod::ScaleDown, pin_to_node: false },
        _ => FreezeChoice { method: FreezeMethod::ReadOnly, pin_to_node },
    }
}

/// Where a dry run's Job may read the registry's volume: it must see the same volume as a
/// real run, so next to the registry pod (true) for ReadWriteOnce (a hostPath included).
/// ReadWriteOncePod admits one pod only, the running registry: a dry run cannot read it.
pub fn dry_run_pin(access_modes: &[String]) -> Result<bool, String> {
    let has = |m: &str| access_modes.iter().any(|a| a == m);
    if has("ReadWriteOncePod") {
        return Err("a dry run cannot read a ReadWriteOncePod volume while the registry runs (it admits one pod only); preview from anywhere with `regsweep plan --url <registry URL>` (no untagged manifests, ages from image configs), or run the policy for real, which scales the registry down".into());
    }
    Ok(!access_modes.is_empty() && !has("ReadWriteMany"))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FreezeError {
    #[error("Deployment {0} has no pod template containers")]
    NoContainers(String),
    #[error("Deployment {deployment} has several containers ({names}); set spec.registry.container to the registry's")]
    Ambiguous { deployment: String, names: String },
    #[error("Deployment {deployment} has no container named {container}")]
    NoSuchContainer { deployment: String, container: String },
}

/// The registry container's index and name.
pub fn registry_container(deploy: &Deployment, wanted: Option<&str>) -> Result<(usize, String), FreezeError> {
    let name = deploy.metadata.name.clone().unwrap_or_default();
    let containers = deploy.spec.template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    match (wanted, containers) {
        (_, []) => Err(FreezeError::NoContainers(name)),
        (Some(w), list) => list
            .iter()
            .position(|c| c.name == w)
            .map(|i| (i, w.to_string()))
            .ok_or(FreezeError::NoSuchContainer { deployment: name, container: w.to_string() }),
        (None, [only]) => Ok((0, only.name.clone())),
        (None, list) => {
            Err(FreezeError::Ambiguous { deployment: name, names: list.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ") })
        }
    }
}

fn env_of(deploy: &Deployment, index: usize) -> &[EnvVar] {
    deploy.spec.template.spec.as_ref().and_then(|s| s.containers.get(index)).and_then(|c| c.env.as_deref()).unwrap_or(&[])
}

/// The freeze patch and what it replaced.
pub fn freeze(deploy: &Deployment, container: Option<&str>, method: FreezeMethod) -> Result<(Value, FrozenState), FreezeError> {
    let (index, name) = registry_container(deploy, container)?;
    let deployment = deploy.metadata.name.clone().unwrap_or_default();
    let base = format!("/spec/template/spec/containers/{index}");
    let mut ops = vec![json!({"op": "test", "path": format!("{base}/name"), "value": name})];
    let mut state = FrozenState { deployment, container: name, method, previous_env: None, previous_replicas: None };
    match method {
        FreezeMethod::ScaleDown => {
            let replicas = deploy.spec.replicas;
            state.previous_replicas = replicas;
            ops.push(json!({"op": "add", "path": "/spec/replicas", "value": 0}));
        }
        FreezeMethod::ReadOnly => {
            let env = env_of(deploy, index);
            let frozen = json!({"name": READ_ONLY_ENV, "value": READ_ONLY_VALUE});
            match env.iter().position(|e| e.name == READ_ONLY_ENV) {
                Some(i) => {
                    state.previous_env = Some(env[i].clone());
                    ops.push(json!({"op": "test", "path": format!("{base}/env/{i}/name"), "value": READ_ONLY_ENV}));
                    ops.push(json!({"op": "replace", "path": format!("{base}/env/{i}"), "value": frozen}));
                }
                None if env.is_empty() => ops.push(json!({"op": "add", "path": format!("{base}/env"), "value": [frozen]})),
                None => ops.push(json!({"op": "add", "path": format!("{base}/env/-"), "value": frozen})),
            }
        }
    }
    Ok((Value::Array(ops), state))
}

/// Whether the Deployment currently carries the freeze described by `state` (a crash between
/// recording the freeze and patching, or a GitOps tool reverting the patch, both show here).
pub fn is_frozen(deploy: &Deployment, state: &FrozenState) -> bool {
    match state.method {
        FreezeMethod::ScaleDown => deploy.spec.replicas == Some(0),
        FreezeMethod::ReadOnly => registry_container(deploy, Some(&state.container)).is_ok_and(|(i, _)| {
            env_of(deploy, i)
                .iter()
                .any(|e| e.name == READ_ONLY_ENV && e.value.as_deref() == Some(READ_ONLY_VALUE) && e.value_from.is_none())
        }),
    }
}

/// The thaw patch: puts back exactly what the freeze replaced. Restoring the pod template
/// rolls out fresh registry pods, which also drops the blob cache that lies after GC.
pub fn thaw(deploy: &Deployment, state: &FrozenState) -> Result<Value, FreezeError> {
    let (index, name) = registry_container(deploy, Some(&state.container))?;
    let base = format!("/spec/template/spec/containers/{index}");
    let mut ops = vec![json!({"op": "test", "path": format!("{base}/name"), "value": name})];
    match state.method {
        FreezeMethod::ScaleDown => match state.previous_replicas {
            Some(n) => ops.push(json!({"op": "replace", "path": "/spec/replicas", "value": n})),
            None => ops.push(json!({"op": "remove", "path": "/spec/replicas"})),
        },
        FreezeMethod::ReadOnly => {
            let env = env_of(deploy, index);
            if let Some(i) = env.iter().position(|e| e.name == READ_ONLY_ENV) {
                ops.push(json!({"op": "test", "path": format!("{base}/env/{i}/name"), "value": READ_ONLY_ENV}));
                match &state.previous_env {
                    Some(prev) => ops.push(json!({"op": "replace", "path": format!("{base}/env/{i}"), "value": prev})),
                    None if env.len() == 1 => ops.push(json!({"op": "remove", "path": format!("{base}/env")})),
                    None => ops.push(json!({"op": "remove", "path": format!("{base}/env/{i}")})),
                }
            }
        }
    }
    Ok(Value::Array(ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(containers: Value, replicas: Option<i32>) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "docker-registry", "namespace": "registry"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "registry"}},
                "template": {"metadata": {"labels": {"app": "registry"}}, "spec": {"containers": containers}}
            }
        }))
        .unwrap()
    }

    fn apply(deploy: &Deployment, patch: &Value) -> Deployment {
        let mut v = serde_json::to_value(deploy).unwrap();
        json_patch::patch(&mut v, &serde_json::from_value::<json_patch::Patch>(patch.clone()).unwrap()).unwrap();
        serde_json::from_value(v).unwrap()
    }

    fn env_value(d: &Deployment, name: &str) -> Option<String> {
        env_of(d, 0).iter().find(|e| e.name == name).and_then(|e| e.value.clone())
    }

    #[test]
    fn freeze_then_thaw_restores_exactly() {
        let cases = [
            json!([{"name": "registry", "image": "registry:2"}]),
            json!([{"name": "registry", "image": "registry:2", "env": [{"name": "A", "value": "1"}]}]),
            json!([{"name": "registry", "image": "registry:2", "env": [{"name": READ_ONLY_ENV, "value": "{\"enabled\":false}"}, {"name": "B", "value": "2"}]}]),
            json!([{"name": "registry", "image": "registry:2", "env": [{"name": READ_ONLY_ENV, "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "ro"}}}]}]),
        ];
        for containers in cases {
            let original = deployment(containers, Some(2));
            let (patch, state) = freeze(&original, None, FreezeMethod::ReadOnly).unwrap();
            let frozen = apply(&original, &patch);
            assert_eq!(env_value(&frozen, READ_ONLY_ENV).as_deref(), Some(READ_ONLY_VALUE));
            assert!(is_frozen(&frozen, &state) && !is_frozen(&original, &state));
            // Freezing again (a crash before the status recorded it) keeps the original.
            let (again, _) = freeze(&frozen, None, FreezeMethod::ReadOnly).unwrap();
            assert_eq!(apply(&frozen, &again), frozen, "idempotent");
            let thawed = apply(&frozen, &thaw(&frozen, &state).unwrap());
            assert_eq!(thawed, original, "thaw restores the Deployment exactly");
        }
    }

    #[test]
    fn scale_down_remembers_replicas() {
        for replicas in [Some(3), None] {
            let original = deployment(json!([{"name": "registry", "image": "registry:2"}]), replicas);
            let (patch, state) = freeze(&original, None, FreezeMethod::ScaleDown).unwrap();
            let frozen = apply(&original, &patch);
            assert_eq!(frozen.spec.replicas, Some(0));
            assert_eq!(apply(&frozen, &thaw(&frozen, &state).unwrap()), original);
        }
    }

    #[test]
    fn picks_the_registry_container() {
        let two = deployment(json!([{"name": "proxy", "image": "nginx"}, {"name": "registry", "image": "registry:2"}]), None);
        assert!(matches!(registry_container(&two, None), Err(FreezeError::Ambiguous { .. })));
        assert_eq!(registry_container(&two, Some("registry")).unwrap(), (1, "registry".to_string()));
        assert!(registry_container(&two, Some("nope")).unwrap_err().to_string().contains("no container named nope"));
        let (patch, _) = freeze(&two, Some("registry"), FreezeMethod::ReadOnly).unwrap();
        let frozen = apply(&two, &patch);
        assert!(env_of(&frozen, 0).is_empty(), "the sidecar is untouched");
    }

    #[test]
    fn a_deployment_changed_meanwhile_fails_the_patch_instead_of_clobbering() {
        let original = deployment(json!([{"name": "registry", "image": "registry:2"}]), None);
        let (patch, _) = freeze(&original, None, FreezeMethod::ReadOnly).unwrap();
        let renamed = deployment(json!([{"name": "other", "image": "registry:2"}]), None);
        let mut v = serde_json::to_value(&renamed).unwrap();
        assert!(json_patch::patch(&mut v, &serde_json::from_value::<json_patch::Patch>(patch).unwrap()).is_err());
    }

    #[test]
    fn auto_mode_follows_the_volume() {
        let modes = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = |method, pin_to_node| FreezeChoice { method, pin_to_node };
        assert_eq!(choose_method(MaintenanceMode::Auto, &modes(&["ReadWriteMany"])), c(FreezeMethod::ReadOnly, false));
        assert_eq!(choose_method(MaintenanceMode::Auto, &modes(&["ReadWriteOnce"])), c(FreezeMethod::ReadOnly, true));
        assert_eq!(choose_method(MaintenanceMode::Auto, &modes(&["ReadWriteOncePod"])), c(FreezeMethod::ScaleDown, false));
        assert_eq!(choose_method(MaintenanceMode::ReadOnly, &modes(&["ReadWriteOncePod"])), c(FreezeMethod::ReadOnly, true));
        assert_eq!(choose_method(MaintenanceMode::ScaleDown, &modes(&["ReadWriteMany"])), c(FreezeMethod::ScaleDown, false));
    }

    #[test]
    fn a_dry_run_reads_the_same_volume_as_a_real_run() {
        let modes = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(dry_run_pin(&modes(&["ReadWriteOnce"])), Ok(true), "pinned next to the registry");
        assert_eq!(dry_run_pin(&modes(&["ReadWriteMany"])), Ok(false));
        assert_eq!(dry_run_pin(&[]), Ok(false), "no claim: nothing to pin to");
        assert!(dry_run_pin(&modes(&["ReadWriteOncePod"])).unwrap_err().contains("plan --url"));
    }
}
