//! Kubernetes-style conditions (Ready, Progressing, Degraded) so kstatus-based tools (Argo CD,
//! Flux) read a policy's health without plugins. `lastTransitionTime` changes only when the
//! status does.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// kstatus's abnormal-true conditions: `Reconciling` while a run is in flight, `Stalled` when
/// the policy cannot proceed without a change (invalid, or a failed check before freezing).
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Where a policy stands, written as all five conditions at once so they never disagree.
pub enum Health<'a> {
    /// A run is in flight, in this phase.
    Reconciling { phase: &'a str, message: &'a str },
    /// No run in flight; `failure` is the last run's message when it failed.
    Idle { phase: &'a str, message: &'a str, failure: Option<&'a str> },
    /// Cannot proceed until something changes (the policy, a Secret, the Deployment).
    Stalled { reason: &'a str, message: &'a str },
    /// Healthy, but waiting for a person (an approval): Ready (reason AwaitingApproval), not
    /// progressing.
    Waiting { reason: &'a str, message: &'a str },
}

pub fn apply(conditions: &mut Vec<Condition>, health: Health<'_>, generation: Option<i64>, now: DateTime<Utc>) {
    let mut put = |type_: &str, status: bool, reason: &str, message: &str| set(conditions, type_, status, reason, message, generation, now);
    match health {
        Health::Reconciling { phase, message } => {
            put(READY, false, phase, message);
            put(PROGRESSING, true, phase, message);
            put(RECONCILING, true, phase, message);
            put(STALLED, false, phase, "");
        }
        Health::Idle { phase, message, failure } => {
            let reason = if failure.is_some() { "LastRunFailed" } else { phase };
            put(READY, failure.is_none(), reason, message);
            put(DEGRADED, failure.is_some(), if failure.is_some() { "LastRunFailed" } else { "AsExpected" }, failure.unwrap_or(""));
            put(PROGRESSING, false, phase, "");
            put(RECONCILING, false, phase, "");
            put(STALLED, false, phase, "");
        }
        Health::Waiting { reason, message } => {
            // Ready: kstatus (Flux) reads Ready alone when neither Reconciling nor Stalled is
            // true, and a policy waiting for a person is reconciled, not in progress.
            put(READY, true, reason, message);
            put(DEGRADED, false, "AsExpected", "");
            put(PROGRESSING, false, reason, "");
            put(RECONCILING, false, reason, "");
            put(STALLED, false, reason, "");
        }
        Health::Stalled { reason, message } => {
            put(READY, false, reason, message);
            put(DEGRADED, true, reason, message);
            put(PROGRESSING, false, reason, "");
            put(RECONCILING, false, reason, "");
            put(STALLED, true, reason, message);
        }
    }
}

/// A Kubernetes timestamp (second precision, as the API server keeps it).
pub fn k8s_time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).expect("a timestamp within jiff's range"))
}

/// Sets one condition, keeping its transition time when its status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let since = conditions.iter().find(|c| c.type_ == type_ && c.status == status).map(|c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: since.unwrap_or_else(|| k8s_time(now)),
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t0 = Utc::now();
        let mut c = Vec::new();
        set(&mut c, READY, true, "Idle", "waiting", Some(1), t0);
        set(&mut c, READY, true, "Succeeded", "swept", Some(2), t0 + Duration::minutes(5));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, k8s_time(t0), "same status: time kept");
        assert_eq!((c[0].reason.as_str(), c[0].observed_generation), ("Succeeded", Some(2)));
        set(&mut c, READY, false, "Frozen", "sweeping", Some(2), t0 + Duration::minutes(9));
        assert_eq!(c[0].last_transition_time, k8s_time(t0 + Duration::minutes(9)));
        set(&mut c, DEGRADED, false, "AsExpected", "", Some(2), t0);
        assert_eq!(c.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), vec![DEGRADED, READY]);
    }

    #[test]
    fn health_sets_the_kstatus_conditions_together() {
        let now = Utc::now();
        let mut c = Vec::new();
        let status = |c: &Vec<Condition>, t: &str| c.iter().find(|x| x.type_ == t).map(|x| x.status.clone()).unwrap();
        apply(&mut c, Health::Stalled { reason: "InvalidPolicy", message: "bad" }, Some(3), now);
        assert_eq!([READY, DEGRADED, RECONCILING, STALLED].map(|t| status(&c, t)), ["False", "True", "False", "True"]);
        assert!(c.iter().all(|x| x.observed_generation == Some(3)));
        apply(&mut c, Health::Reconciling { phase: "Freezing", message: "" }, Some(4), now);
        assert_eq!([READY, PROGRESSING, RECONCILING, STALLED].map(|t| status(&c, t)), ["False", "True", "True", "False"]);
        apply(&mut c, Health::Idle { phase: "Idle", message: "next run at …", failure: None }, Some(4), now);
        assert_eq!([READY, DEGRADED, RECONCILING, STALLED].map(|t| status(&c, t)), ["True", "False", "False", "False"]);
    }
}
