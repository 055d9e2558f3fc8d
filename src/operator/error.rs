//! Reconcile failures. `category()` is short and stable: it labels the error metric and
//! names the Event reason.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Freeze(#[from] super::freeze::FreezeError),
    #[error("registry: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    #[error("Deployment {0} not found in the policy's namespace; spec.registry.deployment must name the registry Deployment there")]
    DeploymentNotFound(String),
    #[error("the policy names no registry Deployment (spec.registry.deployment)")]
    NoDeployment,
    #[error("Secret {0}: {1}")]
    Secret(String, String),
    #[error("Deployment {deployment} is locked by {holder}; waiting for that run to finish")]
    Locked { deployment: String, holder: String },
    #[error("still thawing the registry before the policy can go")]
    StillThawing,
    #[error("{0}")]
    Storage(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube-api",
            Error::Freeze(_) => "freeze",
            Error::Registry(e) => e.category(),
            Error::DeploymentNotFound(_) | Error::NoDeployment => "deployment-not-found",
            Error::Secret(..) => "secret",
            Error::Locked { .. } => "locked",
            Error::StillThawing => "thawing",
            Error::Storage(_) => "storage",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// The PascalCase Event reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApiError",
            Error::Freeze(_) => "FreezeFailed",
            Error::Registry(_) => "RegistryError",
            Error::DeploymentNotFound(_) | Error::NoDeployment => "DeploymentNotFound",
            Error::Secret(..) => "SecretError",
            Error::Locked { .. } => "RegistryLocked",
            Error::StillThawing => "Thawing",
            Error::Storage(_) => "StorageUnsupported",
            Error::Finalizer(_) => "FinalizerError",
        }
    }
}
