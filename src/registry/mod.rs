//! The registry's HTTP API v2: a client with auth, media types and error mapping.

pub mod auth;
pub mod client;
pub mod error;

pub use client::{ClientOptions, DeleteOutcome, FetchedManifest, ManifestHead, RegistryClient, WriteProbe, next_link};
pub use error::RegistryError;
