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
    let mut crd = serde_json::to_value(RegistryCleanupPolicy::crd()).expect("the CRD serializes");
    // `kubectl explain` shows these; the derive leaves the root's spec and status undescribed.
    for version in crd["spec"]["versions"].as_array_mut().into_iter().flatten() {
        let properties = &mut version["schema"]["openAPIV3Schema"]["properties"];
        properties["spec"]["description"] = "What to keep, which registry, and when and how to sweep it.".into();
        properties["status"]["description"] =
            "What the operator reports: the phase, kstatus conditions, the run in flight, the last runs and a plan waiting for approval."
                .into();
    }
    serde_yaml::to_string(&crd).expect("the CRD serializes")
}
