//! Why a maintenance run stopped. `category()` is short and stable: metric labels, Event
//! reasons and the CLI's exit code are derived from it.

use crate::policy::InvalidPolicy;
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("{0}")]
    InvalidPolicy(#[from] InvalidPolicy),
    #[error("registry configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error(
        "the registry at {0} still accepts writes, so deleting or collecting garbage now could lose images pushed meanwhile; nothing was changed. Freeze it first: restart it with REGISTRY_STORAGE_MAINTENANCE_READONLY='{{\"enabled\":true}}' (the JSON form; REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED is ignored), or stop it and omit --url"
    )]
    NotFrozen(String),
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("private registry instance: {0}")]
    Instance(String),
    #[error("garbage-collect: {0}")]
    Gc(String),
}

impl MaintenanceError {
    pub fn category(&self) -> &'static str {
        match self {
            MaintenanceError::InvalidPolicy(_) => "invalid-policy",
            MaintenanceError::Config(_) => "config",
            MaintenanceError::Storage(_) => "storage",
            MaintenanceError::NotFrozen(_) => "not-frozen",
            MaintenanceError::Registry(e) => e.category(),
            MaintenanceError::Instance(_) => "instance",
            MaintenanceError::Gc(_) => "gc",
        }
    }

    /// Bad input the user can fix (policy, configuration) as opposed to a failing registry.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, MaintenanceError::InvalidPolicy(_) | MaintenanceError::Config(_))
    }
}
