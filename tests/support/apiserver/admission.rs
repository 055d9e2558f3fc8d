//! ResourceQuota admission, the part that decides whether a pod may be created at all: when a
//! quota in the namespace limits a compute resource, every container (init containers too)
//! must declare it, or the pod is forbidden with the message kube-apiserver gives. Usage is
//! not tracked.

use serde_json::Value;

use super::error::ApiError;
use super::store::Store;

/// Quota keys that oblige each container to declare a request or limit.
const COMPUTE: &[(&str, &str, &str)] = &[
    ("cpu", "requests", "cpu"),
    ("memory", "requests", "memory"),
    ("requests.cpu", "requests", "cpu"),
    ("requests.memory", "requests", "memory"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
];

pub fn quota_admits(store: &Store, ns: &str, pod: &Value) -> Result<(), ApiError> {
    let key = (String::new(), "resourcequotas".to_string());
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .collect();
    for quota in store.all(&key, Some(ns)) {
        let Some(hard) = quota.pointer("/spec/hard").and_then(Value::as_object) else { continue };
        let mut missing = Vec::new();
        for (name, kind, resource) in COMPUTE.iter().filter(|(name, _, _)| hard.contains_key(*name)) {
            let lacking: Vec<&str> = containers
                .iter()
                .filter(|c| c.pointer(&format!("/resources/{kind}/{resource}")).is_none())
                .filter_map(|c| c["name"].as_str())
                .collect();
            if !lacking.is_empty() {
                missing.push(format!("must specify {name} for: {}", lacking.join(",")));
            }
        }
        if !missing.is_empty() {
            let quota_name = quota.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!("pods \"{pod_name}\" is forbidden: failed quota: {quota_name}: {}", missing.join("; ")),
            ));
        }
    }
    Ok(())
}
