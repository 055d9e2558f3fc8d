//! The registry's filesystem storage: its layout, snapshots of it (or of the API), pruning
//! GC's litter, and measuring its size.

pub mod api;
pub mod blobs;
pub mod entry;
pub mod layout;
pub mod prune;
pub mod read;
pub mod snapshot;
pub mod trash;
pub mod usage;

pub use layout::Layout;
pub use read::read_storage;
pub use snapshot::{Content, Manifest, Repository, Snapshot, Tag};
