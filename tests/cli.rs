//! The `regsweep` command line as a user runs it: plan from storage and from the API, the
//! maintenance report files, verify's exit code, and the CRD.

mod support;

use std::process::Command;

use regsweep::demo::{DEMO_POLICY, DemoRegistry, fill};

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn plan_maintenance_and_verify_from_the_command_line() {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    fill(&reg.client().unwrap(), &reg.layout()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, DEMO_POLICY).unwrap();

    // From storage: sees untagged manifests and push times.
    let out = Command::new(BIN).args(["plan", "-o", "json", "-f"]).arg(&policy).arg("--storage").arg(reg.layout().root()).output().unwrap();
    let storage_plan = json(&out);
    let deleted = storage_plan["summary"]["tagsDeleted"].as_u64().unwrap();
    assert!(deleted > 0);
    assert!(storage_plan["summary"]["bytesFreed"].as_u64().unwrap() > 0);
    // The table names the reasons.
    let out = Command::new(BIN).args(["plan", "-f"]).arg(&policy).arg("--storage").arg(reg.layout().root()).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("shares its digest with kept tag stable"), "{table}");
    assert!(table.contains("garbage collection would free"), "{table}");

    // From the API, ages from image configs by default (the API has no push times): keepLatest
    // orders by build time and deletes; the plan says which times it compared.
    let out = Command::new(BIN).args(["plan", "-o", "json", "-f"]).arg(&policy).args(["--url", &reg.url()]).output().unwrap();
    let api_plan = json(&out);
    let tags = |plan: &serde_json::Value| plan["summary"]["tagsKept"].as_u64().unwrap() + plan["summary"]["tagsDeleted"].as_u64().unwrap();
    assert_eq!(tags(&api_plan), tags(&storage_plan), "the API sees every tag");
    let manifests = |plan: &serde_json::Value| {
        plan["summary"]["manifestsKept"].as_u64().unwrap() + plan["summary"]["manifestsDeleted"].as_u64().unwrap()
    };
    assert_eq!(manifests(&storage_plan) - manifests(&api_plan), 3, "but not the three untagged manifests outside any index");
    assert!(api_plan["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("untagged")));
    // Every tag has an age (before, none did unless asked, so keepLatest deleted nothing).
    let api_tags: Vec<&serde_json::Value> =
        api_plan["repositories"].as_array().unwrap().iter().flat_map(|r| r["tags"].as_array().unwrap()).collect();
    // (A cosign signature's config has no `created`.)
    let images: Vec<_> = api_tags.iter().filter(|t| !t["tag"].as_str().unwrap().ends_with(".sig")).collect();
    assert!(images.len() > 10 && images.iter().all(|t| t["pushed"].is_string()), "{images:?}");
    assert_eq!(api_plan["times"], "configCreated");
    assert_eq!(storage_plan["times"], "pushTime");
    assert!(
        api_plan["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("build times")),
        "{}",
        api_plan["warnings"]
    );
    // Without ages, age-based rules keep everything, and the plan says so.
    let out = Command::new(BIN)
        .args(["plan", "-o", "json", "--ages", "unknown", "-f"])
        .arg(&policy)
        .args(["--url", &reg.url()])
        .output()
        .unwrap();
    let ageless = json(&out);
    assert_eq!(ageless["times"], "unknown");
    let ageless_tags: Vec<&serde_json::Value> =
        ageless["repositories"].as_array().unwrap().iter().flat_map(|r| r["tags"].as_array().unwrap()).collect();
    assert!(ageless_tags.iter().all(|t| t["pushed"].is_null()), "{ageless_tags:?}");

    // Maintenance writes its report and a compact summary for a termination message.
    reg.restart(true).await.unwrap();
    let (report, summary) = (dir.path().join("report.json"), dir.path().join("summary.json"));
    let out = Command::new(BIN)
        .args(["maintenance", "-f"])
        .arg(&policy)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", &reg.url(), "--report"])
        .arg(&report)
        .arg("--summary-file")
        .arg(&summary)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(report["plan"]["tagsDeleted"].as_u64().unwrap(), deleted);
    assert_eq!(summary["tagsDeleted"].as_u64().unwrap(), deleted);
    assert!(summary["bytesReclaimed"].as_u64().unwrap() > 0);
    assert!(std::fs::read(dir.path().join("summary.json")).unwrap().len() < 4096, "fits a termination message");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("policy") && logs.contains("run"), "logs carry the policy and run: {logs}");

    reg.restart(false).await.unwrap();
    let out = Command::new(BIN).args(["verify", "--url", &reg.url()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // Damage one kept layer: verify exits 4 and names the tag.
    let stored = regsweep::storage::read_storage(&reg.layout()).unwrap();
    let tag = &stored.repositories["team-b/worker"].tags["pr-9"];
    let layer = match &stored.repositories["team-b/worker"].manifests[&tag.digest].content {
        regsweep::storage::Content::Image { layers, .. } => layers[0].clone(),
        other => panic!("{other:?}"),
    };
    std::fs::remove_file(reg.layout().blob_data(&layer)).unwrap();
    reg.restart(false).await.unwrap();
    let out = Command::new(BIN).args(["verify", "--url", &reg.url()]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("team-b/worker:pr-9"));
}

#[test]
fn crd_command_prints_the_committed_crd() {
    let out = Command::new(BIN).arg("crd").output().unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/registrycleanuppolicies.regsweep.dev.yaml")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}

#[test]
fn copy_self_installs_a_working_binary() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("regsweep");
    let out = Command::new(BIN).arg("copy-self").arg(&dest).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(&dest).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("regsweep "));
}

/// The sweep runs inside the registry's image, which may have no CA bundle: plain HTTP (the
/// private instance, an in-cluster URL) must still work, and HTTPS must say what is missing.
#[tokio::test]
async fn a_machine_without_ca_certificates_still_talks_plain_http() {
    let reg = support::TestRegistry::start(Default::default()).await;
    let empty = tempfile::tempdir().unwrap();
    let no_roots = |args: &[&str]| {
        Command::new(BIN).args(args).env("SSL_CERT_FILE", empty.path().join("none.pem")).env("SSL_CERT_DIR", empty.path()).output().unwrap()
    };
    let out = no_roots(&["verify", "--url", &reg.url()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = no_roots(&["verify", "--url", "https://registry.invalid:5000"]);
    assert_eq!(out.status.code(), Some(2), "an unusable TLS setup is invalid input");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ca-certificates") && err.contains("--ca-cert"), "{err}");
}

#[test]
fn with_json_logs_an_error_is_json_too_and_nothing_is_coloured() {
    let out = std::process::Command::new(BIN)
        .args(["--log-format", "json", "plan", "-f", "/nonexistent/policy.yaml", "--storage", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    let error: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!((error["level"].as_str(), error["exit_code"].as_u64()), (Some("ERROR"), Some(2)), "{error}");
    assert!(error["message"].as_str().unwrap().contains("policy.yaml"), "{error}");
    // Logs to a pipe carry no ANSI colours, with or without NO_COLOR.
    let out = std::process::Command::new(BIN)
        .args(["plan", "-f", "/nonexistent/p.yaml", "--storage", "/x"])
        .env("RUST_LOG", "regsweep=debug")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\u{1b}'), "no escape codes on a pipe");
}
