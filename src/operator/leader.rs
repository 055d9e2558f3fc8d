//! Leader election on a coordination.k8s.io Lease, so that two operator replicas never act at
//! once. The holder renews the Lease; a Lease not renewed within its duration may be taken
//! over. Every write carries the resourceVersion read, so two candidates cannot both win.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

fn micro(t: chrono::DateTime<Utc>) -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros()).expect("a timestamp within range"))
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Elector { api: Api::namespaced(client, namespace), name: name.into(), identity: identity.into(), duration }
    }

    /// One attempt to hold the Lease: true when this replica is the leader now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Utc::now();
        let spec = |transitions: i32| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(micro(now)),
            renew_time: Some(micro(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease { metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() }, spec: Some(spec(0)) };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let mine = current.holder_identity.as_deref() == Some(self.identity.as_str());
        let renewed = current.renew_time.as_ref().map(|t| t.0.as_microsecond()).unwrap_or(0);
        let expired = now.timestamp_micros() - renewed > (current.lease_duration_seconds.unwrap_or(15) as i64) * 1_000_000;
        if !mine && !expired {
            return Ok(false);
        }
        let transitions = current.lease_transitions.unwrap_or(0) + if mine { 0 } else { 1 };
        let mut next = spec(transitions);
        if mine {
            next.acquire_time = current.acquire_time;
        }
        lease.spec = Some(next);
        // replace() sends the resourceVersion we read: a concurrent winner makes this a 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
