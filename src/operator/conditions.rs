//! Kubernetes-style conditions (Ready, Progressing, Degraded) so kstatus-based tools (Argo CD,
//! Flux) read a policy's health without plugins. `lastTransitionTime` changes only when the
//! status does.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

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
}
