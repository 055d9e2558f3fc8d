//! The committed CRD must be exactly what the types generate (`regsweep crd > crds/...`).

#[test]
fn committed_crd_matches_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/registrycleanuppolicies.regsweep.dev.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = regsweep::policy::crd_yaml();
    assert!(
        committed == generated,
        "crds/registrycleanuppolicies.regsweep.dev.yaml is out of date; run `cargo run -- crd > crds/registrycleanuppolicies.regsweep.dev.yaml`"
    );
    // And it is the CRD the issue asks for.
    let crd: serde_yaml::Value = serde_yaml::from_str(&generated).unwrap();
    assert_eq!(crd["spec"]["group"], "regsweep.dev");
    assert_eq!(crd["spec"]["names"]["kind"], "RegistryCleanupPolicy");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "rcp");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
}
