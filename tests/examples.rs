//! Every policy under `examples/` is valid: the real `kubectl` applies it with strict field
//! validation against the CRD, regsweep compiles it, and it plans against a real registry.

mod support;

#[path = "support/apiserver/mod.rs"]
mod apiserver;

use regsweep::demo::{DemoRegistry, fill};
use regsweep::plan::Action;

fn examples() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 5, "the examples are there: {:?}", out.iter().map(|e| &e.0).collect::<Vec<_>>());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_fit_the_crd_and_plan_against_a_real_registry() {
    support::ensure_registry_installed();
    let server = apiserver::ApiServer::start().await;
    server.kubectl_ok(&["apply", "-f", concat!(env!("CARGO_MANIFEST_DIR"), "/crds/registrycleanuppolicies.regsweep.dev.yaml")]);
    server.create_namespace("registry").unwrap();
    let reg = DemoRegistry::start(None).await.unwrap();
    fill(&reg.client().unwrap(), &reg.layout()).await.unwrap();
    let snapshot = regsweep::storage::read_storage(&reg.layout()).unwrap();
    for (name, yaml) in examples() {
        let path = server.dir().join(&name);
        std::fs::write(&path, &yaml).unwrap();
        server.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
        let policy = regsweep::policy::load::from_yaml(&yaml, &name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let compiled = regsweep::policy::compile(&policy.spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = regsweep::plan::plan(&compiled, &snapshot, &[], chrono::Utc::now());
        // Each example deletes something from the demo registry, and never a kept index's child.
        assert!(plan.summary.manifests_deleted > 0, "{name} deletes nothing from the demo registry");
        for repo in &plan.repositories {
            for m in &repo.manifests {
                assert!(!(m.action == Action::Delete && m.reason.starts_with("child of kept")), "{name}: {m:?}");
            }
        }
    }
    // A misspelt field is refused by the API server's strict validation, like by the CLI.
    let bad = server.dir().join("bad.yaml");
    std::fs::write(
        &bad,
        examples()[0].1.replace("keepLatest", "keeplatest").replace("keepWithin", "keepwithin").replace("untagged:", "untaged:"),
    )
    .unwrap();
    assert!(!server.kubectl(&["apply", "-f", bad.to_str().unwrap()]).status.success());
}
