//! Label selectors (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`) and field
//! selectors (`path=value`, `path==value`, `path!=value` on any dotted field path, e.g.
//! `metadata.name`, `metadata.namespace`, `status.phase`; the real server accepts only a
//! per-type list of fields).

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selectors {
    labels: Vec<(String, Op)>,
    fields: Vec<(String, Op)>,
}

/// Splits on commas outside parentheses.
fn terms(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
}

fn set(s: &str) -> Result<Vec<String>, String> {
    let inner =
        s.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(|| format!("expected a parenthesised set, got {s:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn parse_label(s: &str) -> Result<Vec<(String, Op)>, String> {
    let mut out = Vec::new();
    for t in terms(s) {
        if let Some(k) = t.strip_prefix('!') {
            out.push((k.trim().to_string(), Op::NotExists));
        } else if let Some((k, v)) = t.split_once("!=") {
            out.push((k.trim().to_string(), Op::NotEq(v.trim().to_string())));
        } else if let Some((k, v)) = t.split_once("==") {
            out.push((k.trim().to_string(), Op::Eq(v.trim().to_string())));
        } else if let Some((k, v)) = t.split_once('=') {
            out.push((k.trim().to_string(), Op::Eq(v.trim().to_string())));
        } else if let Some((k, v)) = t.split_once(" notin ") {
            out.push((k.trim().to_string(), Op::NotIn(set(v)?)));
        } else if let Some((k, v)) = t.split_once(" in ") {
            out.push((k.trim().to_string(), Op::In(set(v)?)));
        } else if t.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
            out.push((t.clone(), Op::Exists));
        } else {
            return Err(format!("unable to parse requirement: {t:?}"));
        }
    }
    Ok(out)
}

fn parse_field(s: &str) -> Result<Vec<(String, Op)>, String> {
    let mut out = Vec::new();
    for t in terms(s) {
        let (k, op) = if let Some((k, v)) = t.split_once("!=") {
            (k, Op::NotEq(v.trim().into()))
        } else if let Some((k, v)) = t.split_once("==") {
            (k, Op::Eq(v.trim().into()))
        } else if let Some((k, v)) = t.split_once('=') {
            (k, Op::Eq(v.trim().into()))
        } else {
            return Err(format!("invalid field selector: {t:?}"));
        };
        out.push((k.trim().to_string(), op));
    }
    Ok(out)
}

fn matches(op: &Op, value: Option<&str>) -> bool {
    match op {
        Op::Eq(v) => value == Some(v.as_str()),
        // As in Kubernetes: `a!=b` also matches objects without the label.
        Op::NotEq(v) => value != Some(v.as_str()),
        Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
        Op::NotIn(vs) => !value.is_some_and(|x| vs.iter().any(|v| v == x)),
        Op::Exists => value.is_some(),
        Op::NotExists => value.is_none(),
    }
}

fn field_value(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Selectors {
    pub fn parse(label_selector: &str, field_selector: &str) -> Result<Selectors, String> {
        Ok(Selectors { labels: parse_label(label_selector)?, fields: parse_field(field_selector)? })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.labels.iter().all(|(k, op)| matches(op, labels.and_then(|l| l.get(k)).and_then(Value::as_str)))
            && self.fields.iter().all(|(k, op)| {
                // Unset metadata.namespace of a cluster-scoped object is "".
                let v = field_value(obj, k).or_else(|| (k == "metadata.namespace").then(String::new));
                matches(op, v.as_deref())
            })
    }
}
