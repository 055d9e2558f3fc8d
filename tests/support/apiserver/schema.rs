//! Structural-schema handling for custom resources, as the real API server does it on every
//! write: unknown fields are pruned (or, with `fieldValidation=Strict`, rejected) and `default`s
//! are filled in. Validation of types, enums, patterns and `required` is NOT done.

use serde_json::{Map, Value};

/// Prunes and defaults `obj` (a whole custom resource) against a version's
/// `openAPIV3Schema`. Returns the paths of the fields that were pruned.
pub fn apply(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    let Some(map) = obj.as_object_mut() else { return pruned };
    // apiVersion, kind and metadata are never pruned; metadata is not walked.
    let mut rest: Map<String, Value> = Map::new();
    for (k, v) in std::mem::take(map) {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            map.insert(k, v);
        } else {
            rest.insert(k, v);
        }
    }
    let mut rest = Value::Object(rest);
    walk(schema, &mut rest, "", &mut pruned, true);
    if let Value::Object(r) = rest {
        map.extend(r);
    }
    pruned
}

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
}

fn walk(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>, root: bool) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let is_object = schema.get("type").and_then(Value::as_str) == Some("object") || props.is_some() || root;
            if let Some(props) = props {
                for (k, ps) in props {
                    if !map.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child = format!("{path}.{k}");
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(s) => walk(s, map.get_mut(&k).expect("key"), &child, pruned, false),
                    None if preserves(schema) || !is_object || schema.get("additionalProperties") == Some(&Value::Bool(true)) => {}
                    None => {
                        map.remove(&k);
                        pruned.push(child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(s, item, &format!("{path}[{i}]"), pruned, false);
                }
            }
        }
        _ => {}
    }
}
