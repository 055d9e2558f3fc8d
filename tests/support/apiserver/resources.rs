//! The resource types the server knows: the built-in table, and those that stored
//! CustomResourceDefinitions declare. A request resolves to a [`Target`]: a type and one of
//! its served versions.

use serde_json::Value;

/// Objects are stored per (group, plural), whatever version they are served at.
pub type Key = (String, String);

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    /// integer, number, string, boolean or date (rendered as an age, like `5m`).
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VersionInfo {
    pub name: String,
    /// The status subresource is enabled.
    pub status: bool,
    /// Printer columns besides Name (built-ins get Age appended).
    pub columns: Vec<Column>,
    /// A CRD version's `openAPIV3Schema`: defaults and pruning.
    pub schema: Option<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Served versions, most preferred first.
    pub versions: Vec<VersionInfo>,
    pub from_crd: bool,
}

/// A resolved request target: a type at one of its served versions.
#[derive(Clone, Debug)]
pub struct Target {
    pub rt: ResourceType,
    pub version: String,
}

impl Target {
    pub fn key(&self) -> Key {
        (self.rt.group.clone(), self.rt.plural.clone())
    }

    pub fn api_version(&self) -> String {
        group_version(&self.rt.group, &self.version)
    }

    pub fn info(&self) -> &VersionInfo {
        self.rt.versions.iter().find(|v| v.name == self.version).unwrap_or(&self.rt.versions[0])
    }

    pub fn status_enabled(&self) -> bool {
        self.info().status
    }

    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.rt.group == group && self.rt.plural == plural
    }
}

pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

/// Kubernetes' version priority: GA before beta before alpha, higher numbers first, and
/// versions that do not look like Kubernetes versions last (alphabetically).
pub fn version_rank(v: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (class, word) in [(1u8, "beta"), (2, "alpha")] {
            if let Some(n) = tail.strip_prefix(word) {
                return Some((class, -major, -n.parse::<i64>().ok()?));
            }
        }
        None
    };
    match parse() {
        Some((c, a, b)) => (c, a, b, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

fn col(name: &str, type_: &str, json_path: &str) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: json_path.into(),
    }
}

fn age() -> Column {
    Column {
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        ..col("Age", "date", ".metadata.creationTimestamp")
    }
}

/// One built-in type: (group, version, plural, kind, namespaced, shortNames,
/// status subresource, all-category, columns before Age).
#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    all: bool,
    mut columns: Vec<Column>,
) -> ResourceType {
    columns.push(age());
    ResourceType {
        group: group.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if all { vec!["all".into()] } else { Vec::new() },
        versions: vec![VersionInfo { name: version.into(), status, columns, schema: None }],
        from_crd: false,
    }
}

/// The built-in types. Their printer columns are a small, useful subset of the real ones.
pub fn builtins() -> Vec<ResourceType> {
    let ready = r#".status.conditions[?(@.type=="Ready")].status"#;
    vec![
        builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true, false, vec![col("Status", "string", ".status.phase")]),
        builtin(
            "",
            "v1",
            "pods",
            "Pod",
            true,
            &["po"],
            true,
            true,
            vec![col("Status", "string", ".status.phase"), col("Node", "string", ".spec.nodeName")],
        ),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false, false, vec![]),
        builtin("", "v1", "resourcequotas", "ResourceQuota", true, &["quota"], false, true, vec![]),
        builtin("", "v1", "secrets", "Secret", true, &[], false, false, vec![col("Type", "string", ".type")]),
        builtin(
            "",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            false,
            vec![
                col("Type", "string", ".type"),
                col("Reason", "string", ".reason"),
                col("Object", "string", ".involvedObject.name"),
                col("Message", "string", ".message"),
            ],
        ),
        builtin(
            "",
            "v1",
            "services",
            "Service",
            true,
            &["svc"],
            true,
            true,
            vec![col("Type", "string", ".spec.type"), col("Cluster-IP", "string", ".spec.clusterIP")],
        ),
        builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
            true,
            false,
            vec![col("Status", "string", ".status.phase"), col("Volume", "string", ".spec.volumeName")],
        ),
        builtin("", "v1", "nodes", "Node", false, &["no"], true, false, vec![col("Ready", "string", ready)]),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
            true,
            vec![
                col("Replicas", "integer", ".spec.replicas"),
                col("Ready", "integer", ".status.readyReplicas"),
                col("Available", "integer", ".status.availableReplicas"),
            ],
        ),
        builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            true,
            true,
            vec![col("Desired", "integer", ".spec.replicas"), col("Ready", "integer", ".status.readyReplicas")],
        ),
        builtin(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            true,
            true,
            vec![col("Replicas", "integer", ".spec.replicas"), col("Ready", "integer", ".status.readyReplicas")],
        ),
        builtin(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            true,
            &["ds"],
            true,
            true,
            vec![col("Desired", "integer", ".status.desiredNumberScheduled"), col("Ready", "integer", ".status.numberReady")],
        ),
        builtin(
            "batch",
            "v1",
            "jobs",
            "Job",
            true,
            &[],
            true,
            true,
            vec![col("Succeeded", "integer", ".status.succeeded"), col("Failed", "integer", ".status.failed")],
        ),
        builtin(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            true,
            &["cj"],
            true,
            true,
            vec![
                col("Schedule", "string", ".spec.schedule"),
                col("Suspend", "boolean", ".spec.suspend"),
                col("Last Schedule", "date", ".status.lastScheduleTime"),
            ],
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
            false,
            vec![col("Holder", "string", ".spec.holderIdentity")],
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            false,
            vec![
                col("Type", "string", ".type"),
                col("Reason", "string", ".reason"),
                col("Object", "string", ".regarding.name"),
                col("Note", "string", ".note"),
            ],
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            false,
            vec![],
        ),
    ]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The type a stored CustomResourceDefinition declares (its served versions only).
pub fn from_crd(crd: &Value) -> Option<ResourceType> {
    let spec = crd.get("spec")?;
    let names = spec.get("names")?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    let kind = s(names, "kind")?;
    let mut versions: Vec<VersionInfo> = Vec::new();
    for v in spec.get("versions")?.as_array()? {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| Column {
                        name: s(c, "name").unwrap_or_default(),
                        type_: s(c, "type").unwrap_or_else(|| "string".into()),
                        format: s(c, "format").unwrap_or_default(),
                        description: s(c, "description").unwrap_or_default(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: s(c, "jsonPath").unwrap_or_default(),
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|c| !c.is_empty())
            // A CRD without printer columns shows Name and Age.
            .unwrap_or_else(|| vec![age()]);
        versions.push(VersionInfo {
            name: s(v, "name")?,
            status: v.pointer("/subresources/status").is_some(),
            columns,
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
        });
    }
    if versions.is_empty() {
        return None;
    }
    versions.sort_by_key(|v| version_rank(&v.name));
    Some(ResourceType {
        group: s(spec, "group")?,
        plural: s(names, "plural")?,
        singular: s(names, "singular").unwrap_or_else(|| kind.to_lowercase()),
        list_kind: s(names, "listKind").unwrap_or_else(|| format!("{kind}List")),
        kind,
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        short_names: names.get("shortNames").map(strings).unwrap_or_default(),
        categories: names.get("categories").map(strings).unwrap_or_default(),
        versions,
        from_crd: true,
    })
}

/// What a CRD must satisfy to be stored (a small part of the real validation).
pub fn validate_crd(crd: &Value) -> Result<(), String> {
    let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
    if group.is_empty() || plural.is_empty() || crd.pointer("/spec/names/kind").and_then(Value::as_str).is_none() {
        return Err("spec: Required value: group, names.plural and names.kind are required".into());
    }
    if name != format!("{plural}.{group}") {
        return Err(format!("metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"));
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        return Err("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
    }
    let storage = versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
    if storage != 1 {
        return Err("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
    }
    Ok(())
}
