//! The registry's filesystem storage: its layout, a snapshot of it, and pruning GC's litter.

pub mod layout;
pub mod read;
pub mod snapshot;

pub use layout::Layout;
pub use read::read_storage;
pub use snapshot::{Content, Manifest, Repository, Snapshot, Tag};
