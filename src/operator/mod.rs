//! The Kubernetes operator: the pure decisions first (what to run when, how to freeze and
//! thaw a Deployment, the sweep Job, in-use images), the controller around them.

pub mod conditions;
pub mod context;
pub mod error;
pub mod freeze;
#[cfg(test)]
mod health_statuses;
pub mod inuse;
pub mod job;
pub mod leader;
pub mod lock;
pub mod metrics;
pub mod observe;
pub mod phase;
pub mod rbac;
pub mod reconcile;
pub mod review;
pub mod rollout;
pub mod run;
pub mod scan;
pub mod schedule;
