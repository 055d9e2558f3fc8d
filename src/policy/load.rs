//! Reading a policy from a YAML file, the same document `kubectl apply` takes.

use std::path::Path;

use super::compiled::{InvalidPolicy, Problem};
use super::spec::RegistryCleanupPolicy;

const API_VERSION: &str = "regsweep.dev/v1alpha1";
const KIND: &str = "RegistryCleanupPolicy";

/// Parses a policy document. Unknown fields are errors: a misspelt `keeplatest` silently
/// ignored would delete what the user meant to keep.
pub fn from_yaml(text: &str, origin: &str) -> Result<RegistryCleanupPolicy, InvalidPolicy> {
    // Editors on Windows write a byte order mark; YAML allows it, serde_yaml does not.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| invalid(origin, format!("is not valid YAML: {e}")))?;
    let api_version = value.get("apiVersion").and_then(|v| v.as_str());
    let kind = value.get("kind").and_then(|v| v.as_str());
    if api_version != Some(API_VERSION) || kind != Some(KIND) {
        return Err(invalid(
            origin,
            format!("must be a `{KIND}` with `apiVersion: {API_VERSION}` (found apiVersion {api_version:?}, kind {kind:?})"),
        ));
    }
    let mut unknown = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| {
        let p = path.to_string();
        // Only the spec is ours to check: metadata and status belong to Kubernetes and the
        // operator, apiVersion and kind were checked above.
        if p.starts_with("spec") {
            unknown.push(p);
        }
    };
    let policy: RegistryCleanupPolicy = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note_unknown))
        .map_err(|e| {
            let field = e.path().to_string();
            InvalidPolicy { problems: vec![Problem { field, message: type_error(&e.into_inner().to_string()) }] }
        })?;
    if !unknown.is_empty() {
        return Err(InvalidPolicy {
            problems: unknown
                .into_iter()
                .map(|f| Problem {
                    field: f,
                    message: "is not a field of RegistryCleanupPolicy (check its spelling; `regsweep crd` prints the schema)".into(),
                })
                .collect(),
        });
    }
    Ok(policy)
}

/// serde's "invalid type: string \"five\", expected i64" as a person says it:
/// `expected an integer, got "five"`. Other messages (an unknown enum variant names the
/// allowed values) are kept.
fn type_error(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ") else { return message.to_string() };
    let Some((got, expected)) = rest.split_once(", expected ") else { return message.to_string() };
    let expected = match expected {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => "an integer",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        "f32" | "f64" => "a number",
        other => other,
    };
    let got = got.strip_prefix("string ").unwrap_or(got);
    let got = match got {
        "sequence" => "a list",
        "map" => "a mapping",
        other => other,
    };
    format!("expected {expected}, got {got}")
}

pub fn from_file(path: &Path) -> Result<RegistryCleanupPolicy, InvalidPolicy> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| invalid(&origin, format!("cannot be read: {e}")))?;
    from_yaml(&text, &origin)
}

fn invalid(origin: &str, message: String) -> InvalidPolicy {
    InvalidPolicy { problems: vec![Problem { field: origin.to_string(), message }] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_issue_example() {
        let p = from_yaml(
            r#"
apiVersion: regsweep.dev/v1alpha1
kind: RegistryCleanupPolicy
metadata: {name: nightly, namespace: registry}
spec:
  registry: {deployment: docker-registry, hosts: ["registry.example.com"]}
  schedule: "0 3 * * *"
  rules:
    - repositories: ["team-a/**"]
      keepLatest: 5
      keepWithin: 30d
      untagged: Delete
"#,
            "test",
        )
        .unwrap();
        assert_eq!(p.spec.rules[0].keep_latest, Some(5));
        assert_eq!(p.metadata.name.as_deref(), Some("nightly"));
    }

    #[test]
    fn unknown_fields_and_wrong_kind_are_errors() {
        let err = from_yaml(
            "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {name: x}\nspec:\n  registry: {}\n  rules:\n    - repositories: [\"**\"]\n      keeplatest: 5\n",
            "t",
        )
        .unwrap_err();
        assert!(err.problems[0].field.contains("keeplatest"), "{err}");
        assert!(from_yaml("apiVersion: v1\nkind: ConfigMap\n", "t").is_err());
        assert!(from_yaml("spec: [", "t").is_err());
        let err = from_yaml("apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {name: x}\nspec:\n  registry: {}\n  rules:\n    - repositories: [\"**\"]\n      untagged: Sometimes\n", "t").unwrap_err();
        assert!(err.to_string().contains("Sometimes"), "{err}");
    }

    #[test]
    fn type_errors_name_the_field_and_the_bom_is_accepted() {
        let doc = |rule: &str| {
            format!(
                "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: x}}\nspec:\n  registry: {{}}\n  rules:\n    - repositories: [\"**\"]\n      {rule}\n"
            )
        };
        let err = from_yaml(&doc("keepLatest: five"), "t").unwrap_err();
        assert_eq!(err.problems[0].field, "spec.rules[0].keepLatest");
        assert_eq!(err.problems[0].message, "expected an integer, got \"five\"");
        assert!(err.to_string().contains("spec.rules[0].keepLatest: expected an integer, got \"five\""), "{err}");
        let err = from_yaml(&doc("untagged: delete"), "t").unwrap_err().to_string();
        assert!(err.contains("spec.rules[0].untagged") && err.contains("`Keep`") && err.contains("`Delete`"), "{err}");
        let err = from_yaml(&doc("keepTags: v1"), "t").unwrap_err();
        assert_eq!(err.problems[0].field, "spec.rules[0].keepTags");
        assert!(err.problems[0].message.starts_with("expected a list"), "{err}");
        let with_bom = format!("\u{feff}{}", doc("keepLatest: 3"));
        assert_eq!(from_yaml(&with_bom, "t").unwrap().spec.rules[0].keep_latest, Some(3));
    }
}
