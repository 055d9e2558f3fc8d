//! regsweep: safe, declarative cleanup of CNCF Distribution registries.
//!
//! Data flow: storage → [`storage::Snapshot`] → [`plan::Plan`] (pure) → delete through a private
//! registry instance → `registry garbage-collect` → prune its litter → report.

pub mod demo;
pub mod digest;
pub mod fixture;
pub mod maintenance;
pub mod media;
pub mod operator;
pub mod plan;
pub mod policy;
pub mod quarantine;
pub mod registry;
pub mod storage;
pub mod synth;
pub mod units;
pub mod verify;
