//! What the real API server leaves to controllers, done here at once inside the deleting
//! request: the garbage collector (dependents by `ownerReferences`), the namespace controller's
//! final step, and the removal of a deleted CRD's custom resources.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::resources::{Key, Target};
use super::store::{DeleteOpts, EventType, Store, finalizers, meta_str, owner_uids, present};

impl Store {
    /// The namespace controller's work, for a namespace just marked for deletion: delete
    /// everything inside, then the namespace. Returns it and whether it is gone.
    pub(super) fn terminate_namespace(&mut self, t: &Target, name: &str, marked: Value) -> (Value, bool) {
        let contents: Vec<(Key, String)> = self
            .objects
            .iter()
            .flat_map(|(k, m)| m.keys().filter(|(n, _)| n == name).map(|(_, obj)| (k.clone(), obj.clone())).collect::<Vec<_>>())
            .collect();
        for (key, obj) in contents {
            if let Some(target) = self.target_for(&key) {
                let _ = self.delete(&target, name, &obj, &DeleteOpts::default());
            }
        }
        // The last deletion inside finalizes the namespace; an empty one is finalized here.
        match self.finalize_namespace(name) {
            Some(gone) => (present(t, &gone), true),
            None => match self.raw(&t.key(), "", name) {
                Some(still) => (present(t, still), false),
                None => (present(t, &marked), true),
            },
        }
    }

    /// Removes a terminating namespace once nothing is left in it.
    pub(super) fn finalize_namespace(&mut self, ns: &str) -> Option<Value> {
        let key: Key = ("".into(), "namespaces".into());
        let n = self.raw(&key, "", ns)?.clone();
        if meta_str(&n, "deletionTimestamp").is_none() || !finalizers(&n).is_empty() {
            return None;
        }
        if self.objects.values().any(|m| m.keys().any(|(o, _)| o == ns)) {
            return None;
        }
        Some(self.remove(&key, "", ns, n, false))
    }

    /// Really deletes (a DELETED event with `last`), then what depended on it.
    pub(super) fn remove(&mut self, key: &Key, ns: &str, name: &str, last: Value, orphan: bool) -> Value {
        let uid = meta_str(&last, "uid").unwrap_or_default().to_string();
        let gone = self.commit(key, ns, name, last, EventType::Deleted);
        if key.0 == "apiextensions.k8s.io" && key.1 == "customresourcedefinitions" {
            // Its custom resources go with it (finalizers on them are not waited for).
            let group = gone.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
            let plural = gone.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
            let cr_key: Key = (group.into(), plural.into());
            let names: Vec<(String, String)> = self.objects.get(&cr_key).map(|m| m.keys().cloned().collect()).unwrap_or_default();
            for (n, o) in names {
                if let Some(obj) = self.raw(&cr_key, &n, &o).cloned() {
                    self.remove(&cr_key, &n, &o, obj, false);
                }
            }
        }
        self.collect_garbage(&uid, orphan);
        if !ns.is_empty() {
            self.finalize_namespace(ns);
        }
        gone
    }

    /// The garbage collector, run at once: dependents whose owners are all gone are deleted
    /// (background propagation; their own finalizers are honoured); dependents with a remaining
    /// owner, or orphaned ones, only lose the dangling reference.
    fn collect_garbage(&mut self, owner_uid: &str, orphan: bool) {
        if owner_uid.is_empty() {
            return;
        }
        let dependents: Vec<(Key, String, String)> = self
            .objects
            .iter()
            .flat_map(|(k, m)| {
                m.iter()
                    .filter(|(_, o)| owner_uids(o).iter().any(|u| u == owner_uid))
                    .map(|((n, o), _)| (k.clone(), n.clone(), o.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (key, ns, name) in dependents {
            let Some(obj) = self.raw(&key, &ns, &name).cloned() else { continue };
            let live: BTreeSet<String> =
                self.objects.values().flat_map(|m| m.values()).filter_map(|o| meta_str(o, "uid").map(String::from)).collect();
            let remaining: Vec<Value> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| r.get("uid").and_then(Value::as_str).is_some_and(|u| u != owner_uid && (orphan || live.contains(u))))
                .cloned()
                .collect();
            if orphan || !remaining.is_empty() {
                let mut updated = obj.clone();
                if remaining.is_empty() {
                    updated["metadata"].as_object_mut().expect("metadata").remove("ownerReferences");
                } else {
                    updated["metadata"]["ownerReferences"] = json!(remaining);
                }
                self.commit(&key, &ns, &name, updated, EventType::Modified);
            } else if let Some(t) = self.target_for(&key) {
                let _ = self.delete(&t, &ns, &name, &DeleteOpts::default());
            }
        }
    }
}
