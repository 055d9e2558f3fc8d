//! The registry's filesystem storage: its layout, a snapshot of it, and pruning GC's litter.

pub mod layout;
