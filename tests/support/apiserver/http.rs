//! The HTTP face: routes Kubernetes API paths to the store, renders answers (objects, lists,
//! Tables, metadata) and errors (Status objects).
//!
//! Paths: `/api/v1[/namespaces/<ns>]/<plural>[/<name>[/status]]` and the same under
//! `/apis/<group>/<version>`; discovery and OpenAPI in `discovery.rs`; watches in `watch.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::discovery;
use super::error::ApiError;
use super::patch::{PatchOpts, PatchType};
use super::resources::Target;
use super::selector::Selectors;
use super::store::{DeleteOpts, Store, WriteOpts};
use super::table::{self, Render};
use super::watch;

pub struct Shared {
    pub store: Mutex<Store>,
    pub addr: SocketAddr,
    pub requests: Mutex<Vec<ResourceRequest>>,
    /// Injected failures: a request matching one is recorded, then answered with its error.
    pub faults: Mutex<Vec<Fault>>,
    /// How late watch events are delivered (zero: at once).
    pub watch_delay: Mutex<std::time::Duration>,
}

/// A failure the server answers instead of doing the request (a test's stand-in for an
/// overloaded or partitioned API server): every request with this verb on this resource.
#[derive(Clone, Debug)]
pub struct Fault {
    pub verb: String,
    pub resource: String,
    pub code: u16,
}

impl Shared {
    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One request to a resource, in authorization terms (like an audit log entry): who, which
/// verb, on what, where.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResourceRequest {
    /// Its place among all requests to this server (0, 1, ...).
    pub seq: usize,
    /// The bearer token sent (the test's name for a user); "" without one.
    pub user: String,
    /// get, list, watch, create, update, patch, delete.
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// None: cluster-wide (or a cluster-scoped type).
    pub namespace: Option<String>,
    /// None for list, watch and create.
    pub name: Option<String>,
}

pub type Query = HashMap<String, String>;

pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

pub fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

fn not_found() -> ApiError {
    ApiError::new(404, "NotFound", "the server could not find the requested resource")
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: Query = req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let (accept, content_type) = {
        let text = |h: header::HeaderName| req.headers().get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (text(header::ACCEPT), text(header::CONTENT_TYPE))
    };
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("reading the body: {e}"))),
    };
    let r = Req { user, method, query, accept, content_type, body: body.to_vec() };
    match route(&shared, &path, &r) {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

pub struct Req {
    pub user: String,
    pub method: Method,
    pub query: Query,
    pub accept: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true" | "1"))
    }

    fn write_opts(&self, status: bool) -> WriteOpts {
        WriteOpts {
            dry_run: self.q("dryRun") == Some("All"),
            status,
            strict: self.q("fieldValidation") == Some("Strict"),
            managed_fields: None,
        }
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        if self.content_type.contains("protobuf") {
            return super::protobuf::to_json(&self.body);
        }
        if self.content_type.contains("yaml") {
            serde_yaml::from_slice(&self.body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        } else {
            serde_json::from_slice(&self.body).map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
        }
    }
}

fn route(shared: &Arc<Shared>, path: &str, r: &Req) -> Result<Response, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get_only = |v: Option<Value>| -> Result<Response, ApiError> {
        if r.method != Method::GET {
            return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"));
        }
        v.map(|v| json_response(200, &v)).ok_or_else(not_found)
    };
    match segs.as_slice() {
        ["version"] => get_only(Some(discovery::version())),
        ["healthz" | "readyz" | "livez"] => {
            Ok(Response::builder().header(header::CONTENT_TYPE, "text/plain").body(Body::from("ok")).expect("response"))
        }
        ["api"] => get_only(Some(discovery::api_versions(&shared.addr.to_string()))),
        ["apis"] => get_only(Some(discovery::group_list(shared.store().types()))),
        ["apis", g] => get_only(discovery::group(shared.store().types(), g)),
        ["openapi", "v3"] => get_only(Some(discovery::openapi_root(shared.store().types()))),
        ["openapi", "v3", "api", v] => get_only(discovery::openapi_gv(shared.store().types(), "", v)),
        ["openapi", "v3", "apis", g, v] => get_only(discovery::openapi_gv(shared.store().types(), g, v)),
        ["api", v, rest @ ..] => resource(shared, "", v, rest, r),
        ["apis", g, v, rest @ ..] => resource(shared, g, v, rest, r),
        _ => Err(not_found()),
    }
}

fn list_doc(t: &Target, items: Vec<Value>, rv: u64) -> Value {
    json!({"kind": t.rt.list_kind, "apiVersion": t.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

fn render_one(t: &Target, obj: &Value, r: &Req, rv: u64) -> Value {
    match Render::from_accept(&r.accept) {
        Render::Full => obj.clone(),
        Render::Metadata => table::partial(obj),
        Render::Table => table::table(t, std::slice::from_ref(obj), r.q("includeObject").unwrap_or("Metadata"), rv, true),
    }
}

fn resource(shared: &Arc<Shared>, group: &str, version: &str, rest: &[&str], r: &Req) -> Result<Response, ApiError> {
    if rest.is_empty() {
        let store = shared.store();
        return match discovery::resource_list(store.types(), group, version) {
            Some(doc) if r.method == Method::GET => Ok(json_response(200, &doc)),
            Some(_) => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
            None => Err(not_found()),
        };
    }
    let store_types = shared.store();
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if store_types.resolve(group, version, plural).is_some_and(|t| t.rt.namespaced) => {
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            (Some(ns.to_string()), v)
        }
        _ => (None, rest.to_vec()),
    };
    let t = store_types.resolve(group, version, rest[0]).ok_or_else(not_found)?;
    drop(store_types);
    let name = rest.get(1).copied();
    let status = match rest.get(2).copied() {
        None => false,
        Some("status") if t.status_enabled() && rest.len() == 3 => true,
        Some(_) => return Err(not_found()),
    };
    if (!t.rt.namespaced && ns.is_some()) || (t.rt.namespaced && ns.is_none() && (name.is_some() || r.method != Method::GET)) {
        return Err(not_found());
    }
    let verb = match (&r.method, name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if r.flag("watch") => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "unknown",
    };
    let mut requests = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
    let seq = requests.len();
    requests.push(ResourceRequest {
        seq,
        user: r.user.clone(),
        verb: verb.into(),
        group: group.into(),
        resource: if status { format!("{}/status", rest[0]) } else { rest[0].to_string() },
        namespace: ns.clone(),
        name: name.map(String::from),
    });
    drop(requests);
    let fault = shared.faults.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|f| f.verb == verb && f.resource == rest[0]).cloned();
    if let Some(f) = fault {
        return Err(ApiError::new(f.code, "InternalError", format!("injected fault: {verb} {} fails with {}", rest[0], f.code)));
    }
    let ns_str = ns.clone().unwrap_or_default();
    let method = r.method.clone();
    match (method, name) {
        (Method::GET, None) => {
            let sel = Selectors::parse(r.q("labelSelector").unwrap_or_default(), r.q("fieldSelector").unwrap_or_default())
                .map_err(ApiError::bad_request)?;
            if r.flag("watch") {
                return watch::watch(shared, t, ns, sel, r);
            }
            let store = shared.store();
            let rv = store.resource_version();
            let key = t.key();
            let items: Vec<Value> =
                store.all(&key, ns.as_deref()).into_iter().filter(|o| sel.matches(o)).map(|o| super::store::present(&t, o)).collect();
            drop(store);
            let doc = match Render::from_accept(&r.accept) {
                Render::Full => list_doc(&t, items, rv),
                Render::Metadata => table::partial_list(&items, rv),
                Render::Table => table::table(&t, &items, r.q("includeObject").unwrap_or("Metadata"), rv, true),
            };
            Ok(json_response(200, &doc))
        }
        (Method::GET, Some(name)) => {
            let store = shared.store();
            let obj = store.get(&t, &ns_str, name)?;
            Ok(json_response(200, &render_one(&t, &obj, r, store.resource_version())))
        }
        (Method::POST, None) => {
            let obj = r.json_body()?;
            let mut store = shared.store();
            if t.rt.group.is_empty() && t.rt.plural == "pods" {
                super::admission::quota_admits(&store, &ns_str, &obj)?;
            }
            let created = store.create(&t, &ns_str, obj, &r.write_opts(false))?;
            Ok(json_response(201, &render_one(&t, &created, r, store.resource_version())))
        }
        (Method::PUT, Some(name)) => {
            let obj = r.json_body()?;
            let mut store = shared.store();
            let updated = store.update(&t, &ns_str, name, obj, &r.write_opts(status))?;
            Ok(json_response(200, &render_one(&t, &updated, r, store.resource_version())))
        }
        (Method::PATCH, Some(name)) => {
            let pt = PatchType::from_content_type(&r.content_type).ok_or_else(|| ApiError::unsupported_media_type(&r.content_type))?;
            let opts =
                PatchOpts { write: r.write_opts(status), field_manager: r.q("fieldManager").map(String::from), force: r.flag("force") };
            let mut store = shared.store();
            let (obj, created) = store.patch(&t, &ns_str, name, pt, &r.body, &opts)?;
            Ok(json_response(if created { 201 } else { 200 }, &render_one(&t, &obj, r, store.resource_version())))
        }
        (Method::DELETE, Some(name)) if !status => {
            let body: Value = if r.body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&r.body).map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
            };
            let policy = body.get("propagationPolicy").and_then(Value::as_str).or(r.q("propagationPolicy"));
            let dry_run =
                body.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All")) || r.q("dryRun") == Some("All");
            let opts = DeleteOpts {
                dry_run,
                uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from),
                resource_version: body.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from),
                orphan: policy == Some("Orphan") || body.get("orphanDependents").and_then(Value::as_bool) == Some(true),
            };
            let mut store = shared.store();
            let (obj, gone) = store.delete(&t, &ns_str, name, &opts)?;
            Ok(json_response(if gone { 200 } else { 202 }, &obj))
        }
        (Method::DELETE, None) => Err(ApiError::method_not_allowed("deletecollection is not supported by this test API server")),
        _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
    }
}
