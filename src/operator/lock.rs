//! One run per registry Deployment at a time, across policies: an annotation on the
//! Deployment names the holder (`<policy>/<run-id>/<unix seconds>`). It is taken and released
//! with JSON patches guarded by `test`, so two operators (or two policies) cannot both take it.
//! A holder whose policy is gone, or runs another run, or has not recorded this run within a
//! grace period after taking the lock, is stale and may be taken over, so a crashed operator
//! never leaves a registry locked forever (and a holder that is still writing its status is
//! never mistaken for a dead one).

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

pub const LOCK_ANNOTATION: &str = "regsweep.dev/lock";
const LOCK_PATH: &str = "/metadata/annotations/regsweep.dev~1lock";

pub fn holder(deploy: &Deployment) -> Option<&str> {
    deploy.metadata.annotations.as_ref().and_then(|a| a.get(LOCK_ANNOTATION)).map(String::as_str)
}

/// How long a fresh lock counts as alive even though its holder has not recorded the run yet.
pub const GRACE_SECONDS: i64 = 120;

pub fn lock_value(policy: &str, run_id: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    format!("{policy}/{run_id}/{}", now.timestamp())
}

/// A lock's holder: policy, run id and when it was taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder<'a> {
    pub policy: &'a str,
    pub run_id: &'a str,
    pub taken: i64,
}

pub fn parse(value: &str) -> Holder<'_> {
    let mut parts = value.splitn(3, '/');
    let policy = parts.next().unwrap_or_default();
    let run_id = parts.next().unwrap_or_default();
    let taken = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    Holder { policy, run_id, taken }
}

/// Whether the holder may be taken over: its policy does not run this run (None: the policy
/// is gone), and the lock is past its grace period.
pub fn is_stale(holder: &Holder, holder_run: Option<Option<&str>>, now: chrono::DateTime<chrono::Utc>) -> bool {
    match holder_run {
        None => true,
        Some(Some(run)) if run == holder.run_id => false,
        Some(_) => now.timestamp() - holder.taken > GRACE_SECONDS,
    }
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
        let d: Deployment =
            serde_json::from_value(json!({"metadata": {"name": "r", "resourceVersion": "7"}, "spec": {"selector": {}, "template": {}}}))
                .unwrap();
        let locked = apply(&d, acquire(&d, "nightly/abc/100")).unwrap();
        assert_eq!(holder(&locked), Some("nightly/abc/100"));
        // Someone else's release does nothing; ours frees it.
        assert!(apply(&locked, release("weekly/xyz/100")).is_err());
        let free = apply(&locked, release("nightly/abc/100")).unwrap();
        assert_eq!(holder(&free), None);
        // A stale resourceVersion cannot take it.
        let mut stale = locked.clone();
        stale.metadata.resource_version = Some("6".into());
        assert!(apply(&locked, acquire(&stale, "weekly/xyz/100")).is_err());
    }

    #[test]
    fn staleness() {
        use chrono::TimeZone;
        let now = chrono::Utc.timestamp_opt(1_000, 0).unwrap();
        let h = parse("nightly/abc/990");
        assert_eq!(h, Holder { policy: "nightly", run_id: "abc", taken: 990 });
        assert!(is_stale(&h, None, now), "the policy is gone");
        assert!(!is_stale(&h, Some(Some("abc")), now), "the run is live");
        assert!(!is_stale(&h, Some(None), now), "just taken: the holder may still be recording its run");
        assert!(is_stale(&h, Some(Some("other")), now + chrono::Duration::seconds(GRACE_SECONDS)), "another run, long ago");
    }
}
