//! The registry's HTTP API v2: a client with basic and bearer auth, custom CA trust,
//! pagination, digest checking on every read, and errors a person can act on.

pub mod auth;
pub mod blobs;
pub mod bounded;
pub mod client;
pub mod error;
pub mod link;
pub mod listing;
pub mod manifests;
pub mod options;
pub mod probe;

/// The registry's read-only switch, in the form it honours: the JSON map as the value of
/// `REGISTRY_STORAGE_MAINTENANCE_READONLY` (`…_READONLY_ENABLED=true` is silently ignored).
pub const READ_ONLY_ENV: &str = "REGISTRY_STORAGE_MAINTENANCE_READONLY";
pub const READ_ONLY_VALUE: &str = r#"{"enabled":true}"#;

pub use bounded::try_map_bounded;
pub use client::RegistryClient;
pub use error::RegistryError;
pub use link::next_link;
pub use manifests::{DeleteOutcome, FetchedManifest, ManifestHead};
pub use options::ClientOptions;
pub use probe::WriteProbe;
