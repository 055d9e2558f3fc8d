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

/// The API server rejects a CRD whose schema is not structural: every node needs a type
/// (or `x-kubernetes-preserve-unknown-fields` / `x-kubernetes-int-or-string`).
#[test]
fn the_crd_schema_is_structural() {
    fn walk(node: &serde_yaml::Value, path: &str, bad: &mut Vec<String>) {
        let get = |k: &str| node.get(k);
        let flag = |k: &str| get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        if get("type").is_none() && !flag("x-kubernetes-preserve-unknown-fields") && !flag("x-kubernetes-int-or-string") {
            bad.push(path.to_string());
        }
        if let Some(props) = get("properties").and_then(|p| p.as_mapping()) {
            for (k, v) in props {
                walk(v, &format!("{path}.{}", k.as_str().unwrap_or("?")), bad);
            }
        }
        if let Some(items) = get("items") {
            walk(items, &format!("{path}[]"), bad);
        }
        if let Some(extra) = get("additionalProperties").filter(|v| v.is_mapping()) {
            walk(extra, &format!("{path}{{}}"), bad);
        }
    }
    let crd: serde_yaml::Value = serde_yaml::from_str(&regsweep::policy::crd_yaml()).unwrap();
    let mut bad = Vec::new();
    walk(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "", &mut bad);
    assert!(bad.is_empty(), "schema nodes without a type: {bad:?}");
}

#[test]
fn every_field_is_described_for_kubectl_explain_and_conditions_are_a_map() {
    let crd: serde_yaml::Value = serde_yaml::from_str(&regsweep::policy::crd_yaml()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert!(schema["description"].as_str().is_some_and(|d| !d.contains("Auto-generated")), "the root is described");
    fn walk(node: &serde_yaml::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = node["properties"].as_mapping() {
            for (k, v) in props {
                let p = format!("{path}.{}", k.as_str().unwrap());
                if v["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(p.clone());
                }
                walk(v, &p, missing);
                walk(&v["items"], &format!("{p}[]"), missing);
            }
        }
    }
    let mut missing = Vec::new();
    walk(schema, "", &mut missing);
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
    let conditions = &schema["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
}
