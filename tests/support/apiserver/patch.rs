//! PATCH: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch and
//! server-side apply (in `apply.rs`). The patched object then goes through the same update
//! path as a PUT, so resourceVersion preconditions, generation and the status subresource rules
//! hold for patches too.

use serde_json::{Map, Value};

use super::error::ApiError;
use super::resources::Target;
use super::store::{Store, WriteOpts, present};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PatchOpts {
    pub write: WriteOpts,
    /// `fieldManager` (required for apply).
    pub field_manager: Option<String>,
    /// `force=true`: apply takes fields other managers own instead of failing with 409.
    pub force: bool,
}

/// The merge key of a list field in the built-in types, as their `patchMergeKey` tags say
/// (a table of the common ones; other lists are replaced whole).
pub fn merge_key(field: &str, path: &str) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ports" if path.contains("ontainers") => "containerPort",
        "ports" => "port",
        _ => return None,
    })
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Strategic merge patch, simplified: maps merge recursively and `null` deletes (as in a merge
/// patch); lists with a known merge key (see [`merge_key`]) merge item by item, `finalizers`
/// merge as a set; other lists are replaced. Directives honoured: `$patch: replace|delete`,
/// `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`, `$retainKeys`. The real one
/// reads each field's strategy from the Go types (and from OpenAPI for CRDs, where it is refused).
pub fn strategic_merge(target: &mut Value, patch: &Value, path: &str) {
    let Some(pm) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if directive(patch) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let tm = target.as_object_mut().expect("object");
    for (k, v) in pm {
        if k.starts_with('$') {
            continue;
        }
        let child = format!("{path}.{k}");
        match v {
            Value::Null => {
                tm.remove(k);
            }
            Value::Object(_) if directive(v) == Some("delete") => {
                tm.remove(k);
            }
            Value::Object(_) => strategic_merge(tm.entry(k.clone()).or_insert(Value::Null), v, &child),
            Value::Array(items) => merge_list(tm.entry(k.clone()).or_insert(Value::Null), items, k, path),
            other => {
                tm.insert(k.clone(), other.clone());
            }
        }
    }
    for (k, v) in pm {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(cur)), Some(gone)) = (tm.get_mut(field), v.as_array())
        {
            cur.retain(|x| !gone.contains(x));
        }
    }
    for (k, v) in pm {
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(cur)), Some(order)) = (tm.get_mut(field), v.as_array())
        {
            let key = merge_key(field, path);
            let pos = |item: &Value| {
                order.iter().position(|o| match key {
                    Some(k) => o.get(k).is_some() && o.get(k) == item.get(k),
                    None => o == item,
                })
            };
            cur.sort_by_key(|item| pos(item).unwrap_or(usize::MAX));
        }
    }
    if let Some(keep) = pm.get("$retainKeys").and_then(Value::as_array) {
        tm.retain(|k, _| keep.iter().any(|r| r.as_str() == Some(k)) || pm.contains_key(k));
    }
}

fn merge_list(target: &mut Value, patch: &[Value], field: &str, path: &str) {
    if field == "finalizers" {
        let mut cur = target.as_array().cloned().unwrap_or_default();
        for f in patch {
            if !cur.contains(f) {
                cur.push(f.clone());
            }
        }
        *target = Value::Array(cur);
        return;
    }
    let replace = patch.iter().any(|i| directive(i) == Some("replace"));
    let items: Vec<&Value> = patch.iter().filter(|i| directive(i) != Some("replace")).collect();
    let Some(key) = merge_key(field, path).filter(|_| !replace && items.iter().all(|i| i.get(field_key(field, path)).is_some())) else {
        *target = Value::Array(items.iter().map(|i| strip_directives(i)).collect());
        return;
    };
    let mut cur = target.as_array().cloned().unwrap_or_default();
    let child = format!("{path}.{field}");
    for item in items {
        if directive(item) == Some("delete") {
            cur.retain(|c| c.get(key) != item.get(key));
            continue;
        }
        match cur.iter_mut().find(|c| c.get(key) == item.get(key)) {
            Some(c) => strategic_merge(c, item, &child),
            None => cur.push(strip_directives(item)),
        }
    }
    *target = Value::Array(cur);
}

fn field_key(field: &str, path: &str) -> &'static str {
    merge_key(field, path).unwrap_or("")
}

impl Store {
    /// PATCH of any type. Returns the object and whether it was created (apply only).
    pub fn patch(
        &mut self,
        t: &Target,
        ns: &str,
        name: &str,
        pt: PatchType,
        body: &[u8],
        opts: &PatchOpts,
    ) -> Result<(Value, bool), ApiError> {
        let ns = if t.rt.namespaced { ns } else { "" };
        if pt == PatchType::Apply {
            return self.apply(t, ns, name, body, opts);
        }
        let current = self.raw(&t.key(), ns, name).cloned().ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
        let patch: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let mut doc = present(t, &current);
        match pt {
            PatchType::Merge => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                json_patch::merge(&mut doc, &patch);
            }
            PatchType::Json => {
                // Like kube-apiserver (evanphx/json-patch), a `test` of a missing path against
                // null succeeds: kube-runtime adds the first finalizer that way.
                let patch = match patch {
                    Value::Array(ops) => Value::Array(
                        ops.into_iter()
                            .filter(|op| {
                                let missing_null_test = op["op"] == "test"
                                    && op["value"].is_null()
                                    && op["path"].as_str().is_some_and(|p| doc.pointer(p).is_none());
                                !missing_null_test
                            })
                            .collect(),
                    ),
                    other => other,
                };
                let ops: json_patch::Patch =
                    serde_json::from_value(patch).map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
                json_patch::patch(&mut doc, &ops).map_err(|e| {
                    ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}"))
                })?;
            }
            // Differs from a merge patch for lists with a merge key and for `$` directives.
            PatchType::Strategic => {
                if t.rt.from_crd {
                    return Err(ApiError::unsupported_media_type("application/strategic-merge-patch+json"));
                }
                strategic_merge(&mut doc, &patch, "");
            }
            PatchType::Apply => unreachable!(),
        }
        Ok((self.update(t, ns, name, doc, &opts.write)?, false))
    }
}
