//! regsweep: safe, declarative cleanup of CNCF Distribution registries.
//!
//! Data flow: storage → [`storage::Snapshot`] → [`plan::Plan`] (pure) → delete through a private
//! registry instance → `registry garbage-collect` → prune its litter → report.

pub mod digest;
pub mod media;
pub mod policy;
pub mod registry;
pub mod storage;
pub mod plan;
pub mod maintenance;
pub mod units;
