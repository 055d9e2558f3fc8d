//! One run per registry Deployment at a time, across policies: an annotation on the
//! Deployment names the holder (`<policy>/<run-id>`). It is taken and released with JSON
//! patches guarded by `test`, so two operators (or two policies) cannot both take it. A holder
//! whose policy no longer runs that run is stale and may be taken over, so a crashed operator
//! never leaves a registry locked forever.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

pub const LOCK_ANNOTATION: &str = "regsweep.dev/lock";
const LOCK_PATH: &str = "/metadata/annotations/regsweep.dev~1lock";

pub fn holder(deploy: &Deployment) -> Option<&str> {
    deploy.metadata.annotations.as_ref().and_then(|a| a.get(LOCK_ANNOTATION)).map(String::as_str)
}

pub fn lock_value(policy: &str, run_id: &str) -> String {
    format!("{policy}/{run_id}")
}

/// The patch that takes the lock from its current state (free or stale holder).
pub fn acquire(deploy: &Deployment, value: &str) -> Value {
    let rv = deploy.metadata.resource_version.clone().unwrap_or_default();
    let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv})];
    if deploy.metadata.annotations.is_none() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {LOCK_ANNOTATION: value}}));
    } else {
        ops.push(json!({"op": "add", "path": LOCK_PATH, "value": value}));
    }
    Value::Array(ops)
}

/// The patch that releases the lock, only if this run still holds it.
pub fn release(value: &str) -> Value {
    json!([{"op": "test", "path": LOCK_PATH, "value": value}, {"op": "remove", "path": LOCK_PATH}])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(d: &Deployment, patch: Value) -> Result<Deployment, String> {
        let mut v = serde_json::to_value(d).unwrap();
        json_patch::patch(&mut v, &serde_json::from_value::<json_patch::Patch>(patch).unwrap()).map_err(|e| e.to_string())?;
        Ok(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn take_and_release() {
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "r", "resourceVersion": "7"}, "spec": {"selector": {}, "template": {}}})).unwrap();
        let locked = apply(&d, acquire(&d, "nightly/abc")).unwrap();
        assert_eq!(holder(&locked), Some("nightly/abc"));
        // Someone else's release does nothing; ours frees it.
        assert!(apply(&locked, release("weekly/xyz")).is_err());
        let free = apply(&locked, release("nightly/abc")).unwrap();
        assert_eq!(holder(&free), None);
        // A stale resourceVersion cannot take it.
        let mut stale = locked.clone();
        stale.metadata.resource_version = Some("6".into());
        assert!(apply(&locked, acquire(&stale, "weekly/xyz")).is_err());
    }
}
