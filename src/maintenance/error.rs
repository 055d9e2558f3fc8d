//! Why a maintenance run stopped. `category()` is short and stable: metric labels, Event
//! reasons and the CLI's exit code are derived from it.

use super::config::ConfigError;
use super::gc::GcError;
use super::instance::InstanceError;
use super::lock::LockError;
use crate::policy::InvalidPolicy;
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("{0}")]
    InvalidPolicy(#[from] InvalidPolicy),
    #[error("registry configuration: {0}")]
    Config(#[from] ConfigError),
    /// Input that can never work, said in full (a Redis cache, no temporary directory).
    #[error("{0}")]
    Refused(String),
    /// The storage root is missing, relative, a file, or not a registry's.
    #[error("storage: {0}")]
    StorageRoot(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Locked(#[from] LockError),
    #[error(
        "the registry at {0} still accepts writes, so deleting or collecting garbage now could lose images pushed meanwhile; nothing was changed. Freeze it first: restart it with REGISTRY_STORAGE_MAINTENANCE_READONLY='{{\"enabled\":true}}' (the JSON form; REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED is ignored), or stop it and omit --url"
    )]
    NotFrozen(String),
    /// Entries `registry garbage-collect` fails or hangs on: found before anything changed.
    #[error(
        "registry garbage-collect cannot run on this storage, so the sweep did not start; nothing was changed. Repair these entries first:\n{0}"
    )]
    GcBlocked(String),
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("private registry instance: {0}")]
    Instance(#[from] InstanceError),
    #[error("garbage-collect: {0}")]
    Gc(#[from] GcError),
    /// The plan exceeds `spec.limits`: nothing was changed.
    #[error("{0}")]
    OverLimit(crate::plan::limits::OverLimit),
    #[error("interrupted by {signal} {phase}; {detail}")]
    Interrupted { signal: String, phase: String, detail: String },
}

impl MaintenanceError {
    pub fn category(&self) -> &'static str {
        match self {
            MaintenanceError::InvalidPolicy(_) => "invalid-policy",
            MaintenanceError::Config(_) | MaintenanceError::Refused(_) => "config",
            MaintenanceError::StorageRoot(_) => "storage-root",
            MaintenanceError::Storage(_) => "storage",
            MaintenanceError::Locked(LockError::Held { .. }) => "locked",
            MaintenanceError::Locked(_) => "storage",
            MaintenanceError::NotFrozen(_) => "not-frozen",
            MaintenanceError::GcBlocked(_) => "gc-blocked",
            MaintenanceError::Registry(e) => e.category(),
            MaintenanceError::Instance(_) => "instance",
            MaintenanceError::Gc(_) => "gc",
            MaintenanceError::OverLimit(_) => "over-limit",
            MaintenanceError::Interrupted { .. } => "interrupted",
        }
    }

    /// Bad input the user can fix (policy, configuration, storage root, URL) as opposed to a
    /// failing registry.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            MaintenanceError::InvalidPolicy(_)
                | MaintenanceError::Config(_)
                | MaintenanceError::Refused(_)
                | MaintenanceError::Instance(InstanceError::NotFound | InstanceError::NotExecutable(_))
                | MaintenanceError::StorageRoot(_)
                | MaintenanceError::Locked(LockError::ReadOnly { .. })
                | MaintenanceError::Registry(RegistryError::InvalidUrl { .. })
        )
    }
}
