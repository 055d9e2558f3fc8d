//! An in-process Kubernetes API server for integration tests: a small generic API server with
//! real semantics (not a mock), on 127.0.0.1 over real HTTP, that the `kube` client and the real
//! `kubectl` both talk to.
//!
//! ```ignore
//! #[path = "support/apiserver/mod.rs"]
//! mod apiserver;
//! let server = apiserver::ApiServer::start().await;
//! let client = server.client();                         // kube::Client
//! server.kubectl(&["apply", "-f", "crd.yaml"]);          // or --kubeconfig server.kubeconfig_path()
//! let pod = server.get("v1/pods", "default", "p");       // direct helpers, synchronous
//! ```
//!
//! It runs on its own thread and Tokio runtime, so it serves while a test blocks on `kubectl`
//! and whatever runtime flavour the test uses; dropping the [`ApiServer`] stops it.
//!
//! Files: `store.rs` (objects and write rules), `gc.rs` (garbage collection, namespace
//! termination), `http.rs` (routes), `discovery.rs` (discovery and a minimal OpenAPI v3),
//! `patch.rs`, `apply.rs` (server-side apply), `watch.rs`, `table.rs` (server-side printing),
//! `selector.rs`, `schema.rs` (CRD pruning and defaults), `protobuf.rs` (kubectl create's
//! request bodies), `resources.rs` (the types), `error.rs` (Status), `admission.rs` (the one
//! admission rule kept: ResourceQuota's "must specify"). [`ApiServer::inject_fault`] makes
//! chosen requests fail.
//!
//! Every request to a resource is logged with its verb and the bearer token sent
//! ([`ApiServer::client_as`], [`ApiServer::requests_by`]), so a test can check what a client
//! asked for against the RBAC it would need.
//!
//! Simplified compared to kube-apiserver: no authentication or authorization, and of
//! admission only ResourceQuota's check that pods declare the quota's resources (no usage);
//! responses are always JSON and protobuf request bodies are decoded only for the types
//! `kubectl create` makes; built-in types get a handful of defaults (Secret type, Service type,
//! replicas, Pod/Namespace phase) and no validation beyond names (a Secret's `stringData` is
//! not folded into `data`); CRDs get schema pruning
//! (or, with `fieldValidation=Strict`, rejection of unknown fields) and defaults, not type or
//! enum validation; one stored version per type, no conversion; lists ignore `limit`/`continue`
//! and `resourceVersion` (always the latest state, whole); no deletecollection and no
//! scale/log/exec subresources; garbage collection and namespace termination happen at once,
//! inside the delete; `propagationPolicy` Foreground acts as Background; deleting a CRD drops
//! its custom resources without waiting for their finalizers; core/v1 and events.k8s.io/v1
//! Events are separate stores; built-in Tables have a few columns, not the real printers';
//! strategic merge and server-side apply are simplified (see `patch.rs` and `apply.rs`).
#![allow(dead_code)]

mod admission;
mod apply;
mod discovery;
mod error;
mod gc;
mod http;
mod patch;
mod protobuf;
mod resources;
mod schema;
mod selector;
mod store;
mod table;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub use error::ApiError;
pub use http::{Fault, ResourceRequest};

use patch::{PatchOpts, PatchType};
use resources::Target;
use store::{DeleteOpts, Store, WriteOpts};

/// A group/version/resource: `Gvr::new("apps", "v1", "deployments")`, or from a string
/// `"apps/v1/deployments"`, `"v1/pods"`, `"regsweep.dev/v1alpha1/registrycleanuppolicies"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Gvr {
        Gvr { group: group.into(), version: version.into(), resource: resource.into() }
    }
}

impl From<&str> for Gvr {
    fn from(s: &str) -> Gvr {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [v, r] => Gvr::new("", v, r),
            [g, v, r] => Gvr::new(g, v, r),
            _ => panic!("a GVR is \"group/version/resource\" or \"version/resource\", not {s:?}"),
        }
    }
}

impl From<&Gvr> for Gvr {
    fn from(g: &Gvr) -> Gvr {
        g.clone()
    }
}

pub struct ApiServer {
    shared: Arc<http::Shared>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ApiServer {
    /// Binds 127.0.0.1 on a free port, starts serving and writes the kubeconfig.
    pub async fn start() -> ApiServer {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(http::Shared {
            store: Mutex::new(Store::new()),
            addr,
            requests: Mutex::default(),
            faults: Mutex::default(),
            watch_delay: Mutex::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("apiserver-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    tokio::select! {
                        r = axum::serve(listener, app) => { if let Err(e) = r { eprintln!("apiserver: {e}"); } }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime ends every connection and watch.
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .expect("apiserver thread");
        let dir = tempfile::tempdir().expect("temp dir");
        let server = ApiServer { shared, addr, dir, stop: Some(stop), thread: Some(thread) };
        server.write_kubeconfig(&server.kubeconfig_path(), None);
        server
    }

    /// Writes a kubeconfig for this server (namespace `default`), sending `token` as the
    /// bearer token when given (see [`client_as`](Self::client_as)).
    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) {
        let user = token.map(|t| format!("{{token: \"{t}\"}}")).unwrap_or_else(|| "{}".into());
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: test\n  user: {user}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n",
            self.url()
        );
        std::fs::write(path, kubeconfig).expect("write kubeconfig");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig for `kubectl --kubeconfig` (no auth, namespace `default`).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kube client for this server (call inside a Tokio runtime).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// A kube client that identifies as `user` (a bearer token), so that its requests can be
    /// told apart in [`requests_by`](Self::requests_by). Nothing is authorized against it.
    pub fn client_as(&self, user: &str) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("url"));
        config.auth_info.token = Some(user.to_string().into());
        kube::Client::try_from(config).expect("kube client")
    }

    /// From now on, every `verb` request on `resource` (plural, any namespace) fails with `code`.
    pub fn inject_fault(&self, verb: &str, resource: &str, code: u16) {
        let fault = Fault { verb: verb.into(), resource: resource.into(), code };
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()).push(fault);
    }

    /// Watches started from now on deliver each change `delay` late, so a client's cache lags
    /// behind its own writes (a slow or distant API server).
    pub fn delay_watches(&self, delay: std::time::Duration) {
        *self.shared.watch_delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// Ends every injected fault.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Every resource request `user` has made so far, in order.
    pub fn requests_by(&self, user: &str) -> Vec<ResourceRequest> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|r| r.user == user).cloned().collect()
    }

    /// Runs the real kubectl against this server, with its discovery cache in the temp dir.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .args(args)
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed: its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The directory of the kubeconfig, for a test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn with_target<R>(&self, gvr: impl Into<Gvr>, f: impl FnOnce(&mut Store, &Target) -> Result<R, ApiError>) -> Result<R, ApiError> {
        let gvr = gvr.into();
        let mut store = self.shared.store();
        let t = store.resolve(&gvr.group, &gvr.version, &gvr.resource).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({}/{}/{})", gvr.group, gvr.version, gvr.resource),
            )
        })?;
        f(&mut store, &t)
    }

    /// An object as GET returns it (`ns` is ignored for cluster-scoped types).
    pub fn get(&self, gvr: impl Into<Gvr>, ns: &str, name: &str) -> Option<Value> {
        self.with_target(gvr, |s, t| s.get(t, ns, name)).ok()
    }

    /// Every stored version of one object, oldest first (from the watch history: empty after
    /// [`ApiServer::compact`]).
    pub fn versions(&self, gvr: impl Into<Gvr>, ns: &str, name: &str) -> Vec<Value> {
        let Ok(key) = self.with_target(gvr, |_, t| Ok(t.key())) else { return Vec::new() };
        let store = self.shared.store();
        let history = store.events_since(0).unwrap_or_default();
        history
            .iter()
            .filter(|e| e.key == key && e.ns == ns && e.object.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
            .map(|e| e.object.clone())
            .collect()
    }

    /// Every object of a type in `ns` ("" for all namespaces / cluster-scoped), by namespace and name.
    pub fn list(&self, gvr: impl Into<Gvr>, ns: &str) -> Vec<Value> {
        self.list_selected(gvr, ns, "").unwrap_or_default()
    }

    /// [`list`](Self::list) with a label selector (`app=x,tier in (a,b),!legacy`).
    pub fn list_selected(&self, gvr: impl Into<Gvr>, ns: &str, label_selector: &str) -> Result<Vec<Value>, ApiError> {
        let sel = selector::Selectors::parse(label_selector, "").map_err(ApiError::bad_request)?;
        self.with_target(gvr, |s, t| {
            let ns = (!ns.is_empty()).then_some(ns);
            Ok(s.all(&t.key(), ns).into_iter().filter(|o| sel.matches(o)).map(|o| store::present(t, o)).collect())
        })
    }

    /// POST.
    pub fn create(&self, gvr: impl Into<Gvr>, ns: &str, obj: Value) -> Result<Value, ApiError> {
        self.with_target(gvr, |s, t| s.create(t, ns, obj, &WriteOpts::default()))
    }

    /// PUT of the whole object (its `metadata.name` names it; a set resourceVersion must match).
    pub fn update(&self, gvr: impl Into<Gvr>, ns: &str, obj: Value) -> Result<Value, ApiError> {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        self.with_target(gvr, |s, t| s.update(t, ns, &name, obj, &WriteOpts::default()))
    }

    /// A JSON merge patch of the object.
    pub fn patch(&self, gvr: impl Into<Gvr>, ns: &str, name: &str, merge_patch: Value) -> Result<Value, ApiError> {
        let body = serde_json::to_vec(&merge_patch).expect("json");
        self.with_target(gvr, |s, t| s.patch(t, ns, name, PatchType::Merge, &body, &PatchOpts::default()).map(|(o, _)| o))
    }

    /// Replaces `.status` through the status subresource (or the object, for types without one).
    pub fn put_status(&self, gvr: impl Into<Gvr>, ns: &str, name: &str, status: Value) -> Result<Value, ApiError> {
        self.with_target(gvr, |s, t| {
            let mut obj = s.get(t, ns, name)?;
            obj["status"] = status;
            obj["metadata"].as_object_mut().expect("metadata").remove("resourceVersion");
            s.update(t, ns, name, obj, &WriteOpts { status: true, ..Default::default() })
        })
    }

    /// A JSON merge patch through the status subresource, like kube's `Api::patch_status` with
    /// `Patch::Merge`: `json!({"status": {"phase": "Running"}})`; only `.status` changes.
    pub fn patch_status(&self, gvr: impl Into<Gvr>, ns: &str, name: &str, merge_patch: Value) -> Result<Value, ApiError> {
        let body = serde_json::to_vec(&merge_patch).expect("json");
        self.with_target(gvr, |s, t| {
            let opts = PatchOpts { write: WriteOpts { status: true, ..Default::default() }, ..Default::default() };
            s.patch(t, ns, name, PatchType::Merge, &body, &opts).map(|(o, _)| o)
        })
    }

    /// Server-side apply as `manager` (force: take conflicting fields).
    pub fn apply(&self, gvr: impl Into<Gvr>, ns: &str, obj: Value, manager: &str, force: bool) -> Result<Value, ApiError> {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let body = serde_json::to_vec(&obj).expect("json");
        self.with_target(gvr, |s, t| {
            let opts = PatchOpts { field_manager: Some(manager.into()), force, ..Default::default() };
            s.patch(t, ns, &name, PatchType::Apply, &body, &opts).map(|(o, _)| o)
        })
    }

    /// DELETE: `Some(object)` while finalizers hold it (with deletionTimestamp set), `None` once gone.
    pub fn delete(&self, gvr: impl Into<Gvr>, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
        self.with_target(gvr, |s, t| s.delete(t, ns, name, &DeleteOpts::default()).map(|(o, gone)| (!gone).then_some(o)))
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Forgets the watch history: watches resuming from an older resourceVersion get 410 Gone.
    pub fn compact_history(&self) {
        self.shared.store().compact();
    }

    /// Creates a namespace (a convenience; same as creating the object).
    pub fn create_namespace(&self, name: &str) -> Result<Value, ApiError> {
        self.create("v1/namespaces", "", json!({"metadata": {"name": name}}))
    }
}
