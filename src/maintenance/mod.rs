//! The sweep on a frozen storage: a private registry instance for deletions, the registry's
//! garbage collector, and the report.

pub mod config;
pub mod delete;
pub mod error;
pub mod gc;
pub mod instance;
pub mod interrupt;
pub mod journal;
pub mod lock;
pub mod memory;
pub mod progress;
pub mod report;
pub mod review;
pub mod run;
pub mod untag;
