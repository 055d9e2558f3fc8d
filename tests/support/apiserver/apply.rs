//! Server-side apply, simplified but honest about what it does:
//!
//! - The applied object (YAML or JSON) is merged into the live one with the strategic-merge
//!   rules of `patch.rs` (maps recursively, lists with a known merge key item by item, other
//!   lists replaced whole, i.e. atomic).
//! - Each manager's fields are recorded in `metadata.managedFields` (`operation: Apply`,
//!   `fieldsType: FieldsV1`): map keys as `f:<name>`, keyed list items as `k:{...}` with `.`.
//! - Fields a manager applied before and no longer applies are removed, unless another apply
//!   manager owns them (or something inside or around them).
//! - Applying a different value to a field another *apply* manager owns is a 409 Conflict
//!   unless `force=true`, which moves the ownership. Same value: shared ownership.
//!
//! Simplified: only apply operations are tracked (PUT/merge-patch writers are not recorded as
//! `Update` managers, so they never conflict and never keep a field from being removed); list
//! items owned by several managers are compared as whole values; metadata fields managed are
//! labels, annotations, finalizers and ownerReferences (the last two atomically).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::patch::{PatchOpts, merge_key, strategic_merge};
use super::resources::Target;
use super::store::{Store, WriteOpts, now};

type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

fn collect(v: &Value, field: &str, prefix: &Path, dotted: &str, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = prefix.clone();
                p.push(format!("f:{k}"));
                collect(c, k, &p, &format!("{dotted}.{k}"), out);
            }
        }
        Value::Array(items) if merge_key(field, dotted).is_some_and(|k| items.iter().all(|i| i.get(k).is_some())) => {
            let key = merge_key(field, dotted).expect("key");
            for item in items {
                let mut p = prefix.clone();
                p.push(format!("k:{}", json!({key: item[key]})));
                let mut dot = p.clone();
                dot.push(".".into());
                out.insert(dot);
                collect(item, "", &p, &format!("{dotted}.{field}"), out);
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The fields an applied object sets.
fn field_set(applied: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = applied.as_object() else { return out };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(x) = v.get(f) {
                        let p = vec!["f:metadata".to_string(), format!("f:{f}")];
                        if f == "labels" || f == "annotations" {
                            collect(x, f, &p, "", &mut out)
                        } else {
                            out.insert(p);
                        }
                    }
                }
            }
            _ => collect(v, k, &vec![format!("f:{k}")], "", &mut out),
        }
    }
    out
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            cur = cur.entry(seg.clone()).or_insert_with(|| json!({})).as_object_mut().expect("object");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, prefix: &Path, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, c) in m {
                    let mut p = prefix.clone();
                    p.push(k.clone());
                    walk(c, &p, out);
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, &Vec::new(), &mut out);
    out
}

/// The value at a field path (`.` paths are the keyed item itself).
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        if seg == "." {
            return Some(cur);
        }
        cur = if let Some(f) = seg.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?.iter().find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)))?
        } else {
            return None;
        };
    }
    Some(cur)
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else { return };
    let (target, seg) = if last == "." {
        let Some((item, parent)) = parent.split_last() else { return };
        (parent, item)
    } else {
        (parent, last)
    };
    let mut cur = obj;
    for s in target {
        let next = if let Some(f) = s.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = s.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            cur.as_array_mut().and_then(|a| a.iter_mut().find(|i| key.iter().all(|(kk, kv)| i.get(kk) == Some(kv))))
        } else {
            None
        };
        let Some(n) = next else { return };
        cur = n;
    }
    if let Some(f) = seg.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = seg.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
        if let Some(a) = cur.as_array_mut() {
            a.retain(|i| !key.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
        }
    }
}

fn pretty(path: &[String]) -> String {
    path.iter()
        .filter(|s| *s != ".")
        .map(|s| if let Some(f) = s.strip_prefix("f:") { format!(".{f}") } else { format!("[{}]", s.trim_start_matches("k:")) })
        .collect()
}

fn entry_is(e: &Value, manager: &str, status: bool) -> bool {
    e.get("manager").and_then(Value::as_str) == Some(manager)
        && e.get("operation").and_then(Value::as_str) == Some("Apply")
        && (e.get("subresource").and_then(Value::as_str) == Some("status")) == status
}

impl Store {
    pub(super) fn apply(&mut self, t: &Target, ns: &str, name: &str, body: &[u8], opts: &PatchOpts) -> Result<(Value, bool), ApiError> {
        let manager = opts
            .field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ApiError::bad_request("PATCH with application/apply-patch+yaml requires the fieldManager parameter"))?;
        let mut applied: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
        };
        if !applied.is_object() || applied.get("apiVersion").is_none() || applied.get("kind").is_none() {
            return Err(ApiError::bad_request("apply requires an object with apiVersion and kind"));
        }
        if let Some(n) = applied.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
        }
        let status = opts.write.status;
        if t.status_enabled() {
            let m = applied.as_object_mut().expect("object");
            if status {
                m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            } else {
                m.remove("status");
            }
        }
        let mut new_set = field_set(&applied);
        if status {
            new_set.retain(|p| p.first().map(String::as_str) == Some("f:status"));
        }
        let entry = |set: &FieldSet| {
            let mut e = json!({"manager": manager, "operation": "Apply", "apiVersion": t.api_version(), "time": now(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(set)});
            if status {
                e["subresource"] = json!("status");
            }
            e
        };
        let Some(current) = self.raw(&t.key(), ns, name).cloned() else {
            if status {
                return Err(ApiError::not_found(&t.rt.group, &t.rt.plural, name));
            }
            let mut obj = applied;
            obj["metadata"]["name"] = json!(name);
            let write = WriteOpts { managed_fields: Some(json!([entry(&new_set)])), ..opts.write.clone() };
            return Ok((self.create(t, ns, obj, &write)?, true));
        };
        let managed: Vec<Value> = current.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
        let old_set =
            managed.iter().find(|e| entry_is(e, &manager, status)).and_then(|e| e.get("fieldsV1")).map(from_fields_v1).unwrap_or_default();
        let mut others: Vec<(Value, FieldSet)> = managed
            .iter()
            .filter(|e| !entry_is(e, &manager, status))
            .map(|e| (e.clone(), e.get("fieldsV1").map(from_fields_v1).unwrap_or_default()))
            .collect();
        let mut conflicts = Vec::new();
        for (e, set) in &mut others {
            if e.get("operation").and_then(Value::as_str) != Some("Apply") {
                continue;
            }
            let theirs: Vec<Path> =
                set.iter().filter(|p| new_set.contains(*p) && p.last().map(String::as_str) != Some(".")).cloned().collect();
            for p in theirs {
                if value_at(&current, &p) != value_at(&applied, &p) {
                    if opts.force {
                        set.remove(&p);
                    } else {
                        conflicts.push(format!(
                            "conflict with \"{}\": {}",
                            e.get("manager").and_then(Value::as_str).unwrap_or_default(),
                            pretty(&p)
                        ));
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            let why = format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                conflicts.join("\n")
            );
            let mut e = ApiError::conflict(&t.rt.group, &t.rt.plural, name, "");
            e.message = why;
            return Err(e);
        }
        let mut obj = current.clone();
        let owned_elsewhere = |p: &Path| others.iter().any(|(_, s)| s.iter().any(|o| o.starts_with(p) || p.starts_with(o)));
        let mut gone: Vec<&Path> = old_set.iter().filter(|p| !new_set.contains(*p) && !owned_elsewhere(p)).collect();
        gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in gone {
            remove_at(&mut obj, p);
        }
        let mut patch = applied.clone();
        if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
            // Identity and server-set metadata are not applied.
            m.retain(|k, _| matches!(k.as_str(), "labels" | "annotations" | "finalizers" | "ownerReferences" | "resourceVersion"));
        }
        if obj.get("metadata").and_then(|m| m.get("resourceVersion")).is_some() && patch.pointer("/metadata/resourceVersion").is_none() {
            obj["metadata"].as_object_mut().expect("metadata").remove("resourceVersion");
        }
        strategic_merge(&mut obj, &patch, "");
        let mut entries: Vec<Value> = others
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(mut e, s)| {
                e["fieldsV1"] = to_fields_v1(&s);
                e
            })
            .collect();
        entries.push(entry(&new_set));
        let write = WriteOpts { managed_fields: Some(json!(entries)), ..opts.write.clone() };
        Ok((self.update(t, ns, name, obj, &write)?, false))
    }
}
