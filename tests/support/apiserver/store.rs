//! The object store: every object of every type in memory, one global resourceVersion counter,
//! the write rules (uid, timestamps, generation, status subresource, optimistic concurrency,
//! finalizers, garbage collection of owned objects, namespace termination) and the event history
//! that watches replay.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::error::ApiError;
use super::resources::{self, Key, ResourceType, Target};
use super::schema;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed write, as watches see it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub key: Key,
    pub ns: String,
    pub type_: EventType,
    pub object: Value,
    /// The object before a modification (watches with selectors need it).
    pub old: Option<Value>,
}

#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    /// `dryRun=All`: everything but the commit.
    pub dry_run: bool,
    /// The write goes to the `/status` subresource.
    pub status: bool,
    /// `fieldValidation=Strict`: unknown fields of a custom resource are an error, not pruned.
    pub strict: bool,
    /// Replaces `metadata.managedFields` (server-side apply); otherwise they are kept.
    pub managed_fields: Option<Value>,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub dry_run: bool,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `propagationPolicy: Orphan`: dependents keep living, minus their reference.
    pub orphan: bool,
}

/// How many events watches can resume from; older resourceVersions get 410 Gone.
const HISTORY: usize = 50_000;

pub struct Store {
    rv: u64,
    builtins: Vec<ResourceType>,
    types: Vec<ResourceType>,
    pub(super) objects: BTreeMap<Key, BTreeMap<(String, String), Value>>,
    history: VecDeque<Arc<Event>>,
    /// Events up to this resourceVersion are no longer in `history`.
    compacted: u64,
    pub tx: broadcast::Sender<Arc<Event>>,
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(super) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub(super) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

pub(super) fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from)).collect())
        .unwrap_or_default()
}

/// DNS-1123 subdomain (or label, for namespaces).
fn valid_name(name: &str, label: bool) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    if label { name.len() <= 63 && part_ok(name) } else { name.len() <= 253 && name.split('.').all(part_ok) }
}

/// Everything of an object but metadata (and status, when it has its own subresource): what
/// `metadata.generation` counts changes of.
fn spec_part(obj: &Value, status_enabled: bool) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["metadata", "apiVersion", "kind"] {
            m.remove(k);
        }
        if status_enabled {
            m.remove("status");
        }
    }
    v
}

fn without_volatile(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        // Who manages what counts; when they last did does not.
        if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
    }
    v
}

fn set_or_remove(obj: &mut Value, field: &str, value: Option<Value>) {
    if let Some(m) = obj.as_object_mut() {
        match value {
            Some(v) => {
                m.insert(field.to_string(), v);
            }
            None => {
                m.remove(field);
            }
        }
    }
}

/// The object as served at the target's version.
pub fn present(t: &Target, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(t.api_version()));
        m.insert("kind".into(), json!(t.rt.kind));
    }
    o
}

fn crd_status(crd: &Value, old: Option<&Value>) -> Value {
    let stored: BTreeSet<String> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
        .chain(
            old.and_then(|o| o.pointer("/status/storedVersions"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from)),
        )
        .collect();
    let conditions = old.and_then(|o| o.pointer("/status/conditions")).cloned().unwrap_or_else(|| {
        let t = now();
        json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t},
        ])
    });
    json!({"acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})), "storedVersions": stored, "conditions": conditions})
}

impl Store {
    pub fn new() -> Store {
        let (tx, _) = broadcast::channel(16_384);
        let builtins = resources::builtins();
        let mut s =
            Store { rv: 0, types: builtins.clone(), builtins, objects: BTreeMap::new(), history: VecDeque::new(), compacted: 0, tx };
        let t = s.resolve("", "v1", "namespaces").expect("namespaces");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s.create(&t, "", json!({"metadata": {"name": ns}}), &WriteOpts::default()).expect("namespace");
        }
        s
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The type served as `plural` in group/version (`version` empty: the preferred one).
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<Target> {
        let rt = self.types.iter().find(|t| t.group == group && t.plural == plural)?;
        let v = if version.is_empty() { rt.versions[0].name.clone() } else { rt.versions.iter().find(|v| v.name == version)?.name.clone() };
        Some(Target { rt: rt.clone(), version: v })
    }

    pub(super) fn target_for(&self, key: &Key) -> Option<Target> {
        self.resolve(&key.0, "", &key.1)
    }

    /// Events after `rv`, or Err(oldest resumable) when they are no longer all kept.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        if rv < self.compacted {
            return Err(self.compacted + 1);
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Forgets the event history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn raw(&self, key: &Key, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(key)?.get(&(ns.to_string(), name.to_string()))
    }

    /// Every stored object of a type in a namespace (None: all namespaces), ordered.
    pub fn all(&self, key: &Key, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .get(key)
            .map(|m| m.iter().filter(|((n, _), _)| ns.is_none_or(|x| x == n)).map(|(_, v)| v).collect())
            .unwrap_or_default()
    }

    pub fn get(&self, t: &Target, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.raw(&t.key(), ns, name).map(|o| present(t, o)).ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))
    }

    pub(super) fn commit(&mut self, key: &Key, ns: &str, name: &str, mut obj: Value, type_: EventType) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let slot = self.objects.entry(key.clone()).or_default();
        let old = if type_ == EventType::Deleted {
            slot.remove(&(ns.to_string(), name.to_string()))
        } else {
            slot.insert((ns.to_string(), name.to_string()), obj.clone())
        };
        let event = Arc::new(Event { rv: self.rv, key: key.clone(), ns: ns.to_string(), type_, object: obj.clone(), old });
        self.history.push_back(event.clone());
        while self.history.len() > HISTORY {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        let _ = self.tx.send(event);
        if key.0 == "apiextensions.k8s.io" && key.1 == "customresourcedefinitions" {
            self.refresh_types();
        }
        obj
    }

    fn refresh_types(&mut self) {
        let mut types = self.builtins.clone();
        for crd in self.all(&("apiextensions.k8s.io".into(), "customresourcedefinitions".into()), None) {
            if let Some(rt) = resources::from_crd(crd)
                && !types.iter().any(|t| t.group == rt.group && t.plural == rt.plural)
            {
                types.push(rt);
            }
        }
        self.types = types;
    }

    fn check_type(t: &Target, obj: &Value) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body of the request is not a JSON object"));
        }
        if let Some(v) = obj.get("apiVersion").and_then(Value::as_str).filter(|v| !v.is_empty())
            && v != t.api_version()
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                t.api_version()
            )));
        }
        if let Some(k) = obj.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty())
            && k != t.rt.kind
        {
            return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({})", t.rt.kind)));
        }
        if obj.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        Ok(())
    }

    /// Prunes and defaults a custom resource against its schema.
    fn apply_schema(t: &Target, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
        if let Some(s) = &t.info().schema {
            let pruned = schema::apply(s, obj);
            if strict && !pruned.is_empty() {
                let fields: Vec<String> = pruned.iter().map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.'))).collect();
                return Err(ApiError::bad_request(format!("strict decoding error: {}", fields.join(", "))));
            }
        }
        Ok(())
    }

    pub fn create(&mut self, t: &Target, ns: &str, mut obj: Value, opts: &WriteOpts) -> Result<Value, ApiError> {
        let (g, p, kind) = (t.rt.group.clone(), t.rt.plural.clone(), t.rt.kind.clone());
        Self::check_type(t, &obj)?;
        if obj.get("metadata").is_none() {
            obj["metadata"] = json!({});
        }
        let mut name = meta_str(&obj, "name").unwrap_or_default().to_string();
        if name.is_empty() {
            let Some(prefix) = meta_str(&obj, "generateName") else {
                return Err(ApiError::invalid(&g, &kind, "", "metadata.name: Required value: name or generateName is required"));
            };
            const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let mut rng = rand::rng();
            name = format!("{prefix}{}", (0..5).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect::<String>());
        }
        if !valid_name(&name, t.is("", "namespaces")) {
            return Err(ApiError::invalid(
                &g,
                &kind,
                &name,
                &format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            ));
        }
        let ns = if t.rt.namespaced {
            let body_ns = meta_str(&obj, "namespace").unwrap_or_default();
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
            match self.raw(&("".into(), "namespaces".into()), "", ns) {
                None => return Err(ApiError::not_found("", "namespaces", ns)),
                Some(n) if meta_str(n, "deletionTimestamp").is_some() => {
                    return Err(ApiError::forbidden(format!(
                        "{p} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
                    )));
                }
                Some(_) => {}
            }
            ns.to_string()
        } else {
            String::new()
        };
        if self.raw(&t.key(), &ns, &name).is_some() {
            return Err(ApiError::already_exists(&g, &p, &name));
        }
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        for f in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
            "managedFields",
        ] {
            meta.remove(f);
        }
        meta.insert("name".into(), json!(name));
        if t.rt.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        if let Some(mf) = &opts.managed_fields {
            meta.insert("managedFields".into(), mf.clone());
        }
        if t.status_enabled() {
            set_or_remove(&mut obj, "status", None);
        }
        match (t.rt.group.as_str(), t.rt.plural.as_str()) {
            ("", "namespaces") => obj["status"] = json!({"phase": "Active"}),
            ("", "pods") => obj["status"] = json!({"phase": "Pending"}),
            ("", "secrets") if obj.get("type").is_none() => obj["type"] = json!("Opaque"),
            ("", "services") if obj.pointer("/spec/type").is_none() => obj["spec"]["type"] = json!("ClusterIP"),
            ("apps", "deployments" | "replicasets" | "statefulsets")
                if obj.pointer("/spec/replicas").is_none() && obj.get("spec").is_some_and(Value::is_object) =>
            {
                obj["spec"]["replicas"] = json!(1)
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                resources::validate_crd(&obj).map_err(|m| ApiError::invalid(&g, &kind, &name, &m))?;
                obj["status"] = crd_status(&obj, None);
            }
            _ => {}
        }
        Self::apply_schema(t, &mut obj, opts.strict)?;
        obj["apiVersion"] = json!(t.api_version());
        obj["kind"] = json!(kind);
        if opts.dry_run {
            return Ok(obj);
        }
        let stored = self.commit(&t.key(), &ns, &name, obj, EventType::Added);
        Ok(present(t, &stored))
    }

    /// PUT semantics, on the object or (opts.status) its status.
    pub fn update(&mut self, t: &Target, ns: &str, name: &str, incoming: Value, opts: &WriteOpts) -> Result<Value, ApiError> {
        let (g, p, kind) = (t.rt.group.clone(), t.rt.plural.clone(), t.rt.kind.clone());
        let ns = if t.rt.namespaced { ns } else { "" };
        let old = self.raw(&t.key(), ns, name).cloned().ok_or_else(|| ApiError::not_found(&g, &p, name))?;
        Self::check_type(t, &incoming)?;
        if let Some(n) = meta_str(&incoming, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})")));
        }
        if let Some(rv) = meta_str(&incoming, "resourceVersion")
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::stale(&g, &p, name));
        }
        let mut new = if opts.status && t.status_enabled() {
            let mut n = old.clone();
            set_or_remove(&mut n, "status", incoming.get("status").cloned());
            n
        } else {
            let mut n = incoming;
            if n.get("metadata").is_none() {
                n["metadata"] = json!({});
            }
            if t.status_enabled() {
                set_or_remove(&mut n, "status", old.get("status").cloned());
            }
            n
        };
        {
            let old_meta = old["metadata"].as_object().expect("metadata");
            let meta = new["metadata"].as_object_mut().expect("metadata");
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
                "namespace",
                "managedFields",
            ] {
                match old_meta.get(f) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("selfLink");
            if let Some(mf) = &opts.managed_fields {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
        if meta_str(&old, "deletionTimestamp").is_some() {
            let before = finalizers(&old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    &g,
                    &kind,
                    name,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if t.is("apiextensions.k8s.io", "customresourcedefinitions") {
            resources::validate_crd(&new).map_err(|m| ApiError::invalid(&g, &kind, name, &m))?;
            let status = crd_status(&new, Some(&old));
            new["status"] = status;
        }
        Self::apply_schema(t, &mut new, opts.strict)?;
        new["apiVersion"] = json!(t.api_version());
        new["kind"] = json!(kind);
        if spec_part(&old, t.status_enabled()) != spec_part(&new, t.status_enabled()) {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        if without_volatile(&old) == without_volatile(&new) {
            // A no-op write changes nothing, not even the resourceVersion.
            return Ok(present(t, &old));
        }
        if opts.dry_run {
            return Ok(present(t, &new));
        }
        if meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            return Ok(present(t, &self.remove(&t.key(), ns, name, new, false)));
        }
        let stored = self.commit(&t.key(), ns, name, new, EventType::Modified);
        Ok(present(t, &stored))
    }

    /// Deletes, or with finalizers marks for deletion. Returns the object and whether it is gone.
    pub fn delete(&mut self, t: &Target, ns: &str, name: &str, opts: &DeleteOpts) -> Result<(Value, bool), ApiError> {
        let (g, p) = (t.rt.group.clone(), t.rt.plural.clone());
        let ns = if t.rt.namespaced { ns } else { "" };
        let old = self.raw(&t.key(), ns, name).cloned().ok_or_else(|| ApiError::not_found(&g, &p, name))?;
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != meta_str(&old, "uid")
        {
            let why = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&old, "uid").unwrap_or_default()
            );
            return Err(ApiError::conflict(&g, &p, name, &why));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str()) != meta_str(&old, "resourceVersion")
        {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&old, "resourceVersion").unwrap_or_default()
            );
            return Err(ApiError::conflict(&g, &p, name, &why));
        }
        let pending = !finalizers(&old).is_empty();
        if opts.dry_run {
            return Ok((present(t, &old), !pending));
        }
        let is_namespace = t.is("", "namespaces");
        if pending || is_namespace {
            let mut cur = old.clone();
            if meta_str(&old, "deletionTimestamp").is_none() {
                cur["metadata"]["deletionTimestamp"] = json!(now());
                cur["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if let Some(gen_) = old.pointer("/metadata/generation").and_then(Value::as_i64) {
                    cur["metadata"]["generation"] = json!(gen_ + 1);
                }
                if is_namespace {
                    cur["status"] = json!({"phase": "Terminating"});
                }
                cur = self.commit(&t.key(), ns, name, cur, EventType::Modified);
            }
            if !is_namespace {
                return Ok((present(t, &cur), false));
            }
            return Ok(self.terminate_namespace(t, name, cur));
        }
        Ok((present(t, &self.remove(&t.key(), ns, name, old, opts.orphan)), true))
    }
}
