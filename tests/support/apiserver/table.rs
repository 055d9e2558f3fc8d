//! Server-side printing: `meta.k8s.io/v1` Table answers (what `kubectl get` asks for) and
//! PartialObjectMetadata answers (metadata-only clients).

use serde_json::{Value, json};

use super::resources::{Column, Target};

/// What the request's Accept header asks the object(s) to be rendered as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Render {
    Full,
    Table,
    Metadata,
}

impl Render {
    /// The first media type in Accept that we serve decides.
    pub fn from_accept(accept: &str) -> Render {
        for part in accept.split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            if !matches!(media, "application/json" | "*/*" | "application/*" | "") {
                continue;
            }
            let as_ = params.find_map(|p| p.strip_prefix("as=")).unwrap_or_default();
            return match as_ {
                "Table" => Render::Table,
                "PartialObjectMetadata" | "PartialObjectMetadataList" => Render::Metadata,
                _ => Render::Full,
            };
        }
        Render::Full
    }
}

/// Kubernetes' `duration.HumanDuration`, as `kubectl get` shows ages.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{d}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// Evaluates the simple JSONPaths printer columns use: `.a.b`, `.a[0].b`, `.a['b.c']`,
/// `.a[?(@.type=="Ready")].status`. The first match, if any.
pub fn json_path(obj: &Value, path: &str) -> Option<Value> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('$');
    let mut cur = obj.clone();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            rest = &r[end..];
            if field.is_empty() {
                continue;
            }
            cur = cur.get(field)?.clone();
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            // A filter may contain ']' only in quotes, which the paths we meet do not have.
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                let (lhs, rhs) = filter.split_once("==")?;
                let field = lhs.trim().strip_prefix("@.")?;
                let want = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|i| {
                        json_path(i, &format!(".{field}")).is_some_and(|v| v.as_str().map_or_else(|| v.to_string(), String::from) == want)
                    })?
                    .clone();
            } else if let Ok(i) = inner.parse::<usize>() {
                cur = cur.get(i)?.clone();
            } else {
                cur = cur.get(inner.trim_matches(|c| c == '"' || c == '\''))?.clone();
            }
        } else {
            return None;
        }
    }
    Some(cur)
}

fn age_of(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()),
        Err(_) => "<invalid>".into(),
    }
}

/// A cell as the real CRD table convertor makes it: typed, `null` when absent.
fn cell(column: &Column, obj: &Value) -> Value {
    let Some(v) = json_path(obj, &column.json_path).filter(|v| !v.is_null()) else { return Value::Null };
    match column.type_.as_str() {
        "integer" => v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).map_or(Value::Null, |i| json!(i)),
        "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => v.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => v.as_str().map_or(Value::Null, |s| json!(age_of(s))),
        _ => match v {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
    }
}

pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

pub fn partial_list(items: &[Value], rv: u64) -> Value {
    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "items": items.iter().map(partial).collect::<Vec<_>>()})
}

/// A Table of `objects`; `include_object` is the request's `includeObject` (None, Metadata —
/// the default — or Object). Without `with_columns` the column definitions are left out (as in
/// watch events after the first).
pub fn table(t: &Target, objects: &[Value], include_object: &str, rv: u64, with_columns: bool) -> Value {
    let columns = &t.info().columns;
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically.", "priority": 0}),
    ];
    defs.extend(
        columns
            .iter()
            .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})),
    );
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(columns.iter().map(|c| cell(c, o)));
            let mut row = json!({"cells": cells});
            match include_object {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = partial(o),
            }
            row
        })
        .collect();
    let mut out = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "rows": rows});
    if with_columns {
        out["columnDefinitions"] = json!(defs);
    }
    out
}
