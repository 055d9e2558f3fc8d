//! Watches: newline-delimited `{"type":…,"object":…}` events over a chunked response.
//!
//! - No resourceVersion (or "0", or `sendInitialEvents=true`): synthetic ADDED events for what
//!   exists now, then changes; with `sendInitialEvents` a BOOKMARK annotated
//!   `k8s.io/initial-events-end` follows the initial events.
//! - resourceVersion N: every change after N, replayed from the history; when N is older than
//!   the history, an ERROR event carrying a 410 Expired Status (as the real server sends it).
//! - Selectors apply to both the old and the new object: an object that stops matching
//!   is reported DELETED, one that starts matching ADDED.
//! - `allowWatchBookmarks=true`: a BOOKMARK with the current resourceVersion every second and
//!   when the watch times out.
//! - `timeoutSeconds` ends the stream (default 30 minutes).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::http::{Req, Shared};
use super::resources::Target;
use super::selector::Selectors;
use super::store::{Event, EventType, present};
use super::table::{self, Render};

const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

struct Filter {
    t: Target,
    ns: Option<String>,
    sel: Selectors,
    render: Render,
    include: String,
}

impl Filter {
    /// What a watcher of this filter sees of a store event.
    fn convert(&self, e: &Event) -> Option<(&'static str, Value)> {
        if e.key != self.t.key() || self.ns.as_ref().is_some_and(|n| *n != e.ns) {
            return None;
        }
        let now = self.sel.matches(&e.object);
        let before = e.old.as_ref().is_some_and(|o| self.sel.matches(o));
        let (type_, obj) = match (e.type_, now, before) {
            (EventType::Added | EventType::Deleted, true, _) => (e.type_, e.object.clone()),
            (EventType::Modified, true, true) => (EventType::Modified, e.object.clone()),
            (EventType::Modified, true, false) => (EventType::Added, e.object.clone()),
            (EventType::Modified, false, true) => {
                let mut old = e.old.clone().expect("old");
                old["metadata"]["resourceVersion"] = json!(e.rv.to_string());
                (EventType::Deleted, old)
            }
            _ => return None,
        };
        Some((type_.as_str(), obj))
    }

    fn line(&self, type_: &str, obj: &Value, rv: u64, first: bool) -> Bytes {
        let obj = present(&self.t, obj);
        let rendered = match self.render {
            Render::Full => obj,
            Render::Metadata => table::partial(&obj),
            Render::Table => table::table(&self.t, std::slice::from_ref(&obj), &self.include, rv, first),
        };
        let mut text = serde_json::to_vec(&json!({"type": type_, "object": rendered})).expect("json");
        text.push(b'\n');
        Bytes::from(text)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.t.rt.kind, "apiVersion": self.t.api_version(), "metadata": meta});
        let mut text = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).expect("json");
        text.push(b'\n');
        Bytes::from(text)
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut text = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).expect("json");
    text.push(b'\n');
    Bytes::from(text)
}

pub fn watch(shared: &Arc<Shared>, t: Target, ns: Option<String>, sel: Selectors, r: &Req) -> Result<Response, ApiError> {
    let timeout = Duration::from_secs(r.query.get("timeoutSeconds").and_then(|s| s.parse().ok()).unwrap_or(1800));
    let bookmarks = matches!(r.query.get("allowWatchBookmarks").map(String::as_str), Some("true" | "1"));
    let send_initial = matches!(r.query.get("sendInitialEvents").map(String::as_str), Some("true" | "1"));
    let rv_param = r.query.get("resourceVersion").cloned().unwrap_or_default();
    let include = r.query.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into());
    let filter = Filter { t, ns, sel, render: Render::from_accept(&r.accept), include };

    let mut first = true;
    let mut lines: Vec<Bytes> = Vec::new();
    let (mut rx, mut last_rv, expired) = {
        let store = shared.store();
        let rx = store.tx.subscribe();
        let cur = store.resource_version();
        let mut expired = None;
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            for obj in store.all(&filter.t.key(), filter.ns.as_deref()).into_iter().filter(|o| filter.sel.matches(o)) {
                lines.push(filter.line("ADDED", obj, cur, first));
                first = false;
            }
            if send_initial {
                lines.push(filter.bookmark(cur, true));
            }
        } else {
            let from: u64 = rv_param.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param:?}")))?;
            match store.events_since(from) {
                Ok(events) => {
                    for e in events {
                        if let Some((type_, obj)) = filter.convert(&e) {
                            lines.push(filter.line(type_, &obj, e.rv, first));
                            first = false;
                        }
                    }
                }
                Err(oldest) => expired = Some(ApiError::expired(from, oldest)),
            }
        }
        (rx, cur, expired)
    };

    let (tx, body_rx) = mpsc::channel::<Bytes>(256);
    // With a watch delay (a lagging cache, as behind a slow API server), every event reaches
    // this watcher that much later, in order.
    let delay = *shared.watch_delay.lock().unwrap_or_else(|e| e.into_inner());
    let tx = if delay.is_zero() {
        tx
    } else {
        let (delayed_tx, mut delayed_rx) = mpsc::channel::<(tokio::time::Instant, Bytes)>(4096);
        let out = tx.clone();
        tokio::spawn(async move {
            while let Some((due, line)) = delayed_rx.recv().await {
                tokio::time::sleep_until(due).await;
                if out.send(line).await.is_err() {
                    return;
                }
            }
        });
        let (relay_tx, mut relay_rx) = mpsc::channel::<Bytes>(256);
        tokio::spawn(async move {
            while let Some(line) = relay_rx.recv().await {
                if delayed_tx.send((tokio::time::Instant::now() + delay, line)).await.is_err() {
                    return;
                }
            }
        });
        relay_tx
    };
    tokio::spawn(async move {
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if let Some(e) = expired {
            let _ = tx.send(error_line(&e)).await;
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if bookmarks {
                        let _ = tx.send(filter.bookmark(last_rv, false)).await;
                    }
                    break;
                }
                _ = tx.closed() => break,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(filter.bookmark(last_rv, false)).await.is_err() {
                        break;
                    }
                }
                ev = rx.recv() => match ev {
                    Ok(e) => {
                        if e.rv <= last_rv {
                            continue;
                        }
                        last_rv = e.rv;
                        if let Some((type_, obj)) = filter.convert(&e) {
                            let line = filter.line(type_, &obj, e.rv, first);
                            first = false;
                            if tx.send(line).await.is_err() {
                                break;
                            }
                        }
                    }
                    // Too slow a reader: end the watch; the client resumes from its last resourceVersion.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
    let stream =
        futures::stream::unfold(body_rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx)) });
    Ok(Response::builder().status(200).header(header::CONTENT_TYPE, "application/json").body(Body::from_stream(stream)).expect("response"))
}
