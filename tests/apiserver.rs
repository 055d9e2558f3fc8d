//! The in-process API server's own tests: real HTTP, the real kube client (and kube-runtime's
//! watcher), the real kubectl.

#[path = "support/apiserver/mod.rs"]
mod apiserver;

use std::time::Duration;

use apiserver::ApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.tests.regsweep.dev
spec:
  group: tests.regsweep.dev
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Phase, type: string, jsonPath: .status.phase}
        - {name: Result, type: string, jsonPath: .status.lastRun.result}
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, default: 1}
                color: {type: string}
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"#;

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn widgets(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("tests.regsweep.dev", "v1", "Widget"), "widgets");
    Api::namespaced_with(client.clone(), "default", &ar)
}

async fn install_widget_crd(client: &Client) {
    let crd: CustomResourceDefinition = serde_yaml::from_str(WIDGET_CRD).unwrap();
    Api::<CustomResourceDefinition>::all(client.clone()).create(&PostParams::default(), &crd).await.unwrap();
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

fn rv(o: &impl ResourceExt) -> u64 {
    o.resource_version().unwrap().parse().unwrap()
}

#[tokio::test]
async fn configmap_crud_conflicts_and_status_errors() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");

    let created = api.create(&PostParams::default(), &cm("one", json!({}))).await.unwrap();
    assert!(created.uid().is_some());
    assert!(created.creation_timestamp().is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let first_rv = rv(&created);

    let dup = api_error(api.create(&PostParams::default(), &cm("one", json!({}))).await.unwrap_err());
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"one\" already exists");

    // A write with the current resourceVersion succeeds and moves it on; the stale one fails.
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "v2".to_string())].into());
    let updated = api.replace("one", &PostParams::default(), &fresh).await.unwrap();
    assert!(rv(&updated) > first_rv);
    let stale = api_error(api.replace("one", &PostParams::default(), &fresh).await.unwrap_err());
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(stale.message.contains("the object has been modified"), "{}", stale.message);

    // generateName.
    let generated: ConfigMap = serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let generated = api.create(&PostParams::default(), &generated).await.unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9, "{}", generated.name_any());

    // The list carries its own resourceVersion.
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert_eq!(list.metadata.resource_version.unwrap().parse::<u64>().unwrap(), server.resource_version());

    api.delete("one", &DeleteParams::default()).await.unwrap();
    let missing = api_error(api.get("one").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));

    // Errors are Status objects, on the wire too.
    let body: Value =
        reqwest::get(format!("{}/apis/apps/v1/namespaces/default/deployments/nope", server.url())).await.unwrap().json().await.unwrap();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["code"], 404);
    assert_eq!(body["message"], "deployments.apps \"nope\" not found");
    assert_eq!(body["details"], json!({"name": "nope", "group": "apps", "kind": "deployments"}));

    // Namespaced objects need their namespace.
    let elsewhere: Api<ConfigMap> = Api::namespaced(server.client(), "nowhere");
    let e = api_error(elsewhere.create(&PostParams::default(), &cm("x", json!({}))).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (404, "namespaces \"nowhere\" not found"));
}

#[tokio::test]
async fn crd_generation_status_subresource_and_discovery() {
    let server = ApiServer::start().await;
    let client = server.client();
    install_widget_crd(&client).await;

    // The new type is discovered, with its short name and status subresource.
    let list: Value = reqwest::get(format!("{}/apis/tests.regsweep.dev/v1", server.url())).await.unwrap().json().await.unwrap();
    let names: Vec<&str> = list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["widgets", "widgets/status"]);
    assert_eq!(list["resources"][0]["shortNames"], json!(["wd"]));
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.groups().any(|g| g.name() == "tests.regsweep.dev"));

    let api = widgets(&client);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tests.regsweep.dev/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"color": "red", "unknown": true}, "status": {"phase": "Forged"},
    }))
    .unwrap();
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    assert_eq!(w.data.get("status"), None, "status is not written through the main resource");
    assert_eq!(w.data["spec"], json!({"color": "red", "size": 1}), "defaulted and pruned");

    // Spec changes count; metadata changes do not.
    let w = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 3}}))).await.unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    let w = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(w.metadata.generation, Some(2));

    // Status goes through /status only, and changes nothing else.
    let w = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}})))
        .await
        .unwrap();
    assert_eq!(w.data["status"]["phase"], "Ready");
    assert_eq!(w.data["spec"]["size"], 3);
    assert_eq!(w.metadata.generation, Some(2));
    let w = api.patch("w", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Hacked"}}))).await.unwrap();
    assert_eq!(w.data["status"]["phase"], "Ready");
    // A no-op write does not even move the resourceVersion.
    let again = api.patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ready"}}))).await.unwrap();
    assert_eq!(again.resource_version(), w.resource_version());

    // PUT /status with a stale resourceVersion conflicts, like any update.
    let mut stale = w.clone();
    stale.metadata.resource_version = Some("1".into());
    let e = api_error(api.replace_status("w", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!(e.code, 409);

    // Direct helpers see and make the same state.
    server
        .put_status("tests.regsweep.dev/v1/widgets", "default", "w", json!({"phase": "Done", "lastRun": {"result": "Succeeded"}}))
        .unwrap();
    assert_eq!(api.get("w").await.unwrap().data["status"]["lastRun"]["result"], "Succeeded");
    assert_eq!(server.get("tests.regsweep.dev/v1/widgets", "default", "w").unwrap()["metadata"]["generation"], 2);

    // Built-in types have the status subresource too.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 5},
    }))
    .unwrap();
    let d = deployments.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.status, None);
    let d = deployments.patch_status("d", &PatchParams::default(), &Patch::Merge(json!({"status": {"readyReplicas": 1}}))).await.unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, Some(1));
    assert_eq!(d.metadata.generation, Some(1));
}

#[tokio::test]
async fn finalizers_deletion_timestamp_and_garbage_collection() {
    let server = ApiServer::start().await;
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["test/hold".into()]);
    let held = api.create(&PostParams::default(), &held).await.unwrap();

    // Owned objects.
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "held", "uid": held.uid().unwrap()}]);
    let child: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "child", "ownerReferences": owner_ref}})).unwrap();
    api.create(&PostParams::default(), &child).await.unwrap();

    let deleted = api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = deleted.left().expect("the object, still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let still = api.get("held").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    assert!(api.get("child").await.is_ok(), "the owner still exists");

    // No new finalizers while deleting.
    let e = api_error(
        api.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": ["test/hold", "test/more"]}})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));

    // Emptying the finalizers completes the deletion, and the dependents go with it.
    let stream = api.watch(&WatchParams::default(), &still.resource_version().unwrap()).await.unwrap();
    api.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(api_error(api.get("held").await.unwrap_err()).code, 404);
    assert_eq!(api_error(api.get("child").await.unwrap_err()).code, 404);
    let events: Vec<String> = stream
        .take(2)
        .map(|e| match e.unwrap() {
            WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
            other => format!("{other:?}"),
        })
        .collect()
        .await;
    assert_eq!(events, ["DELETED held", "DELETED child"]);

    // Deleting a namespace deletes what is in it.
    server.create_namespace("doomed").unwrap();
    server.create("v1/configmaps", "doomed", json!({"metadata": {"name": "x"}})).unwrap();
    assert_eq!(server.delete("v1/namespaces", "", "doomed").unwrap(), None);
    assert!(server.get("v1/configmaps", "doomed", "x").is_none());
    assert!(server.get("v1/namespaces", "", "doomed").is_none());
}

#[tokio::test]
async fn merge_json_strategic_and_apply_patches() {
    let server = ApiServer::start().await;
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "p"}, "data": {"a": "1", "b": "2"}})).unwrap())
        .await
        .unwrap();

    let merged = api.patch("p", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": null, "c": "3"}}))).await.unwrap();
    assert_eq!(merged.data.unwrap(), [("b".to_string(), "2".to_string()), ("c".to_string(), "3".to_string())].into());

    let ops: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/data/b", "value": "20"}, {"op": "add", "path": "/data/d", "value": "4"}]),
    )
    .unwrap();
    let patched = api.patch("p", &PatchParams::default(), &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["b"], "20");
    assert_eq!(patched.data.as_ref().unwrap()["d"], "4");
    let failing: json_patch::Patch = serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "nope"}])).unwrap();
    let e = api_error(api.patch("p", &PatchParams::default(), &Patch::<()>::Json(failing)).await.unwrap_err());
    assert_eq!(e.code, 422);

    // Strategic merge: containers merge by name.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "one", "image": "i1"}, {"name": "two", "image": "i2"}]}}},
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let d = deployments
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "two", "image": "i2b"}]}}}})),
        )
        .await
        .unwrap();
    let images: Vec<String> = d.spec.template.spec.unwrap().containers.iter().map(|c| c.image.clone().unwrap()).collect();
    assert_eq!(images, ["i1", "i2b"]);

    // Server-side apply: creates, records the manager, removes what it no longer applies.
    let ssa = PatchParams::apply("tester");
    let applied = api
        .patch(
            "applied",
            &ssa,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "labels": {"x": "1"}}, "data": {"a": "1", "b": "2"}})),
        )
        .await
        .unwrap();
    let managers: Vec<String> = applied.metadata.managed_fields.unwrap().iter().map(|m| m.manager.clone().unwrap()).collect();
    assert_eq!(managers, ["tester"]);
    let applied = api
        .patch(
            "applied",
            &ssa,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.clone().unwrap(), [("a".to_string(), "1".to_string())].into());
    assert_eq!(applied.labels().get("x"), None);
    // Another manager changing an owned field conflicts, unless it forces.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "changed"}});
    let e = api_error(api.patch("applied", &PatchParams::apply("other"), &Patch::Apply(other.clone())).await.unwrap_err());
    assert_eq!(e.code, 409);
    assert!(e.message.contains("conflict with \"tester\": .data.a"), "{}", e.message);
    let forced = api.patch("applied", &PatchParams::apply("other").force(), &Patch::Apply(other)).await.unwrap();
    assert_eq!(forced.data.unwrap()["a"], "changed");
    // Apply without a field manager is refused.
    let raw = reqwest::Client::new()
        .patch(format!("{}/api/v1/namespaces/default/configmaps/applied", server.url()))
        .header("content-type", "application/apply-patch+yaml")
        .body("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
}

#[tokio::test]
async fn label_and_field_selectors() {
    let server = ApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web", "tier": "back"})),
        ("c", json!({"app": "db"})),
        ("d", json!({})),
    ] {
        api.create(&PostParams::default(), &cm(name, labels)).await.unwrap();
    }
    let names = |selector: &'static str| {
        let api = api.clone();
        async move {
            let mut n: Vec<String> =
                api.list(&ListParams::default().labels(selector)).await.unwrap().items.iter().map(|o| o.name_any()).collect();
            n.sort();
            n.join(",")
        }
    };
    assert_eq!(names("app=web").await, "a,b");
    assert_eq!(names("app==web,tier!=back").await, "a");
    assert_eq!(names("app!=web").await, "c,d");
    assert_eq!(names("tier in (front,back)").await, "a,b");
    assert_eq!(names("app notin (web)").await, "c,d");
    assert_eq!(names("tier").await, "a,b");
    assert_eq!(names("!tier").await, "c,d");
    let by_name = api.list(&ListParams::default().fields("metadata.name=c")).await.unwrap();
    assert_eq!(by_name.items.len(), 1);
    assert_eq!(by_name.items[0].name_any(), "c");
    let all: Api<ConfigMap> = Api::all(server.client());
    assert_eq!(all.list(&ListParams::default().fields("metadata.namespace=default,metadata.name!=c")).await.unwrap().items.len(), 3);
    assert_eq!(server.list_selected("v1/configmaps", "default", "app=web,tier=back").unwrap().len(), 1);
}

#[tokio::test]
async fn watches_for_kube_runtime() {
    let server = ApiServer::start().await;
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("before", json!({"app": "w"}))).await.unwrap();

    // kube-runtime's watcher: list, then watch from the list's resourceVersion.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = api.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(watched, watcher::Config::default().labels("app=w")).boxed();
        while let Some(e) = stream.try_next().await.unwrap() {
            let line = match e {
                watcher::Event::InitApply(o) => format!("init {}", o.name_any()),
                watcher::Event::InitDone => "init done".into(),
                watcher::Event::Apply(o) => {
                    format!("apply {} {}", o.name_any(), o.data.unwrap_or_default().get("k").cloned().unwrap_or_default())
                }
                watcher::Event::Delete(o) => format!("delete {}", o.name_any()),
                watcher::Event::Init => continue,
            };
            tx.send(line).unwrap();
        }
    });
    let mut next = async || tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a watcher event").unwrap();
    assert_eq!(next().await, "init before");
    assert_eq!(next().await, "init done");
    api.create(&PostParams::default(), &cm("new", json!({"app": "w"}))).await.unwrap();
    api.create(&PostParams::default(), &cm("unrelated", json!({"app": "other"}))).await.unwrap();
    api.patch("new", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v2"}}))).await.unwrap();
    api.delete("new", &DeleteParams::default()).await.unwrap();
    // Leaving the selector is a deletion for this watcher.
    api.patch("before", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}}))).await.unwrap();
    assert_eq!(next().await, "apply new v");
    assert_eq!(next().await, "apply new v2");
    assert_eq!(next().await, "delete new");
    assert_eq!(next().await, "delete before");
    task.abort();

    // Raw watch events: from a resourceVersion, with bookmarks, and 410 once compacted.
    let from = server.resource_version();
    api.create(&PostParams::default(), &cm("late", json!({}))).await.unwrap();
    let events: Vec<String> = api
        .watch(&WatchParams::default().timeout(1), &from.to_string())
        .await
        .unwrap()
        .filter_map(|e| async move {
            match e.unwrap() {
                WatchEvent::Added(o) => Some(format!("ADDED {}", o.name_any())),
                WatchEvent::Bookmark(_) => None,
                other => Some(format!("{other:?}")),
            }
        })
        .collect()
        .await;
    assert_eq!(events, ["ADDED late"], "and the stream ends after timeoutSeconds");
    server.compact_history();
    let mut stream = api.watch(&WatchParams::default(), &from.to_string()).await.unwrap().boxed();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Error(s) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    let mut raw = reqwest::get(format!(
        "{}/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&resourceVersion={}",
        server.url(),
        server.resource_version()
    ))
    .await
    .unwrap();
    assert_eq!(raw.headers()["transfer-encoding"], "chunked");
    let chunk = tokio::time::timeout(Duration::from_secs(3), raw.chunk()).await.expect("a bookmark within seconds").unwrap().unwrap();
    let first: Value = serde_json::from_slice(chunk.strip_suffix(b"\n").expect("newline-delimited")).unwrap();
    assert_eq!(first["type"], "BOOKMARK");
    assert_eq!(first["object"]["metadata"]["resourceVersion"], server.resource_version().to_string());

    // Pods work the same (one more type, for good measure).
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));
}

#[tokio::test]
async fn kubectl_apply_get_and_delete() {
    let server = ApiServer::start().await;
    let dir = server.dir().to_path_buf();
    std::fs::write(dir.join("crd.yaml"), WIDGET_CRD).unwrap();
    std::fs::write(
        dir.join("w.yaml"),
        "apiVersion: tests.regsweep.dev/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {color: blue, size: 7}\n",
    )
    .unwrap();
    let out = server.kubectl_ok(&["apply", "-f", dir.join("crd.yaml").to_str().unwrap()]);
    assert_eq!(out.trim(), "customresourcedefinition.apiextensions.k8s.io/widgets.tests.regsweep.dev created");
    let out = server.kubectl_ok(&["apply", "-f", dir.join("w.yaml").to_str().unwrap()]);
    assert_eq!(out.trim(), "widget.tests.regsweep.dev/w1 created");
    // A second apply with a change patches it.
    std::fs::write(
        dir.join("w.yaml"),
        "apiVersion: tests.regsweep.dev/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {color: green, size: 7}\n",
    )
    .unwrap();
    let out = server.kubectl_ok(&["apply", "-f", dir.join("w.yaml").to_str().unwrap()]);
    assert_eq!(out.trim(), "widget.tests.regsweep.dev/w1 configured");
    assert_eq!(server.get("tests.regsweep.dev/v1/widgets", "default", "w1").unwrap()["metadata"]["generation"], 2);

    server
        .put_status("tests.regsweep.dev/v1/widgets", "default", "w1", json!({"phase": "Idle", "lastRun": {"result": "Succeeded"}}))
        .unwrap();
    let table = server.kubectl_ok(&["get", "wd"]);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "PHASE", "RESULT", "SIZE", "AGE"], "{table}");
    assert_eq!(lines[1][..4], ["w1", "Idle", "Succeeded", "7"], "{table}");
    assert!(lines[1][4].ends_with('s'), "an age: {table}");
    let color = server.kubectl_ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.color}"]);
    assert_eq!(color, "green");
    // Unknown fields are refused, as kubectl asks for strict validation.
    std::fs::write(dir.join("bad.yaml"), "apiVersion: tests.regsweep.dev/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {colour: red}\n")
        .unwrap();
    let bad = server.kubectl(&["apply", "-f", dir.join("bad.yaml").to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown field \"spec.colour\""), "{}", String::from_utf8_lossy(&bad.stderr));

    // Built-ins: create, server-side apply, labels, get.
    server.kubectl_ok(&["create", "namespace", "apps"]);
    server.kubectl_ok(&["create", "configmap", "c1", "-n", "apps", "--from-literal=a=b"]);
    server.kubectl_ok(&["label", "configmap", "c1", "-n", "apps", "tier=x"]);
    server.kubectl_ok(&["create", "deployment", "web", "-n", "apps", "--image=nginx", "--port=80", "--replicas=0"]);
    let web = server.get("apps/v1/deployments", "apps", "web").unwrap();
    assert_eq!(web["spec"]["replicas"], 0, "kubectl's protobuf body, decoded: {web}");
    assert_eq!(web["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
    assert_eq!(server.kubectl_ok(&["get", "cm", "-n", "apps", "-l", "tier=x", "-o", "name"]).trim(), "configmap/c1");
    std::fs::write(dir.join("ssa.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c2, namespace: apps}\ndata: {k: v}\n").unwrap();
    server.kubectl_ok(&["apply", "--server-side", "-f", dir.join("ssa.yaml").to_str().unwrap()]);
    assert_eq!(server.get("v1/configmaps", "apps", "c2").unwrap()["metadata"]["managedFields"][0]["manager"], "kubectl");

    let out = server.kubectl_ok(&["delete", "wd", "w1"]);
    assert_eq!(out.trim(), "widget.tests.regsweep.dev \"w1\" deleted");
    assert!(server.get("tests.regsweep.dev/v1/widgets", "default", "w1").is_none());
    let out = server.kubectl(&["get", "wd"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No resources found"), "{out:?}");
}

/// `cargo test --test apiserver serve_for_manual_testing -- --ignored --nocapture`, then use
/// the printed KUBECONFIG with kubectl (add `-v=8` to see the requests) for ten minutes.
#[tokio::test]
#[ignore]
async fn serve_for_manual_testing() {
    let server = ApiServer::start().await;
    eprintln!("serving at {}: export KUBECONFIG={}", server.url(), server.kubeconfig_path().display());
    tokio::time::sleep(Duration::from_secs(600)).await;
}
