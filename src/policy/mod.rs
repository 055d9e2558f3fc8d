//! The RegistryCleanupPolicy resource: its types, patterns, validation and loading.

pub mod compiled;
pub mod load;
pub mod pattern;
pub mod reference;
pub mod spec;
pub mod status;

pub use compiled::{CompiledPolicy, CompiledRule, InvalidPolicy, compile};
pub use spec::*;
pub use status::*;

/// The CustomResourceDefinition as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&RegistryCleanupPolicy::crd()).expect("the CRD serializes")
}
