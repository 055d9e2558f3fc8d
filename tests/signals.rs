//! One sweep at a time, signals, and what the command line says: the lock refuses a second
//! run, SIGTERM stops a sweep cleanly (children and temporary files included, a wrapper
//! script's registry too), credentials never show, and exit codes are as documented.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use regsweep::demo::DemoRegistry;
use regsweep::fixture::{Format, push_image, set_tag_pushed};

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");

const POLICY: &str = "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {name: t}\nspec:\n  registry: {}\n  rules:\n    - repositories: [\"**\"]\n      keepLatest: 1\n      untagged: Delete\n";

/// A frozen registry with `n` old tags to delete in one repository.
async fn frozen_with_old_tags(n: usize) -> DemoRegistry {
    support::ensure_registry_installed();
    let mut reg = DemoRegistry::start(None).await.unwrap();
    let (client, layout) = (reg.client().unwrap(), reg.layout());
    push_image(&client, "app", Some("keep"), Format::Docker, &[64], &[]).await.unwrap();
    for i in 0..n {
        let tag = format!("old-{i}");
        push_image(&client, "app", Some(&tag), Format::Docker, &[64], &[]).await.unwrap();
        set_tag_pushed(&layout, "app", &tag, Utc::now() - Duration::days(30)).unwrap();
    }
    reg.restart(true).await.unwrap();
    reg
}

fn policy(dir: &Path) -> PathBuf {
    let p = dir.join("policy.yaml");
    std::fs::write(&p, POLICY).unwrap();
    p
}

/// `regsweep maintenance` against the frozen registry, to completion.
fn maintenance(reg: &DemoRegistry, policy: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["maintenance", "-f"])
        .arg(policy)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", &reg.url()])
        .output()
        .unwrap()
}

/// `regsweep maintenance` with JSON logs at debug level, stderr piped.
fn spawn_maintenance(reg: &DemoRegistry, policy: &Path, tmp: &Path, extra: &[&str]) -> Child {
    spawn_maintenance_with_env(reg, policy, tmp, extra, &[])
}

fn spawn_maintenance_with_env(reg: &DemoRegistry, policy: &Path, tmp: &Path, extra: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(BIN)
        .args(["--log-format", "json", "maintenance", "--concurrency", "1", "-f"])
        .arg(policy)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", &reg.url()])
        .args(extra)
        .env("RUST_LOG", "regsweep=debug")
        .env("TMPDIR", tmp)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads stderr until a line contains `needle`; returns the lines read.
fn wait_for(child: &mut Child, needle: &str) -> Vec<String> {
    let reader = BufReader::new(child.stderr.as_mut().unwrap());
    let mut seen = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        let hit = line.contains(needle);
        seen.push(line);
        if hit {
            return seen;
        }
    }
    panic!("never logged {needle:?}:\n{}", seen.join("\n"));
}

/// Keeps reading stderr in the background, so the child never blocks on a full pipe.
fn drain(child: &mut Child) {
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
}

fn rest_of_stderr(child: &mut Child) -> String {
    let mut rest = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut rest).unwrap();
    rest
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_second_sweep_on_the_same_storage_is_refused_and_changes_nothing() {
    let reg = frozen_with_old_tags(40).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let mut first = spawn_maintenance(&reg, &policy, dir.path(), &[]);
    wait_for(&mut first, "sweep lock taken");
    drain(&mut first);
    let second = maintenance(&reg, &policy);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("another sweep holds") && stderr.contains(".regsweep/lock") && stderr.contains("since"), "{stderr}");
    assert!(stderr.contains(&first.id().to_string()), "names the holder's pid: {stderr}");
    assert!(first.wait().unwrap().success());
    let dot = reg.layout().root().join(".regsweep");
    assert!(!dot.join("lock").exists(), "a finished sweep leaves no lock behind");
    // Only the trash it did not wait for may stay (emptied by the next run).
    let left: Vec<_> = std::fs::read_dir(&dot).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
    assert!(left.iter().all(|n| n == "trash"), "{left:?}");

    // A crashed holder (SIGKILL) does not block the next run.
    let mut crashed = spawn_maintenance(&reg, &policy, dir.path(), &[]);
    wait_for(&mut crashed, "sweep lock taken");
    drain(&mut crashed);
    crashed.kill().unwrap();
    crashed.wait().unwrap();
    let rerun = maintenance(&reg, &policy);
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
}

/// A sweep killed (SIGKILL, nothing to clean up with) while it starts its private registry
/// must not leave that registry running: between fork and exec the child arms its
/// parent-death signal, and a parent that died before then must not get a registry.
#[tokio::test]
async fn a_sweep_killed_while_starting_its_private_registry_leaves_none_running() {
    let reg = frozen_with_old_tags(3).await;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let policy = policy(dir.path());
    let mut child = spawn_maintenance_with_env(&reg, &policy, &tmp, &[], &[("REGSWEEP_TEST_SPAWN_DELAY_MS", "1500")]);
    // After the collector's check (its own fork waited 1.5 s too), the journal is written and
    // the private registry forked: it waits in its 1.5 s window before exec.
    wait_for(&mut child, "garbage-collect finished");
    drain(&mut child);
    std::thread::sleep(StdDuration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(StdDuration::from_secs(3));
    let ours = tmp.display().to_string();
    let left = processes_mentioning(&ours);
    for p in &left {
        if let Some(pid) = p.split(':').next().and_then(|pid| pid.parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    assert!(left.is_empty(), "a private registry outlived the killed sweep: {left:?}");
}

#[tokio::test]
async fn sigterm_stops_new_deletes_stops_the_private_registry_and_cleans_up() {
    let reg = frozen_with_old_tags(150).await;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let policy = policy(dir.path());
    // A wrapper script as the registry binary: it does not exec, so the registry is its child.
    let wrapper = dir.path().join("registry-wrapper.sh");
    std::fs::write(&wrapper, format!("#!/bin/sh\n{} \"$@\"\n", reg.bin.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = spawn_maintenance(&reg, &policy, &tmp, &["--registry-bin", wrapper.to_str().unwrap()]);
    let seen = wait_for(&mut child, "\"manifest deleted\"");
    let private_config = seen.iter().find(|l| l.contains("registry starting")).expect("the private instance was started").clone();
    assert!(private_config.contains("private-registry.yml"), "{private_config}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let rest = rest_of_stderr(&mut child);
    let status = child.wait().unwrap();
    assert!(started.elapsed() < StdDuration::from_secs(20), "stopped within the stop timeout: {:?}", started.elapsed());
    assert_eq!(status.code(), Some(143), "{rest}");
    assert!(rest.contains("interrupted by SIGTERM while deleting") && rest.contains("rerun to finish"), "{rest}");
    // This run's private registry only: its configuration lives under this test's TMPDIR.
    let ours = tmp.display().to_string();
    assert!(processes_mentioning(&ours).is_empty(), "no private registry is left: {:?}", processes_mentioning(&ours));
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "the temporary directory is removed: {left:?}");
    let journal = reg.layout().root().join(".regsweep/journal.json");
    assert!(journal.exists(), "the approved deletions stay for the rerun");

    // The rerun finishes the job: exactly the kept tag is left, and it pulls whole.
    let out = maintenance(&reg, &policy);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!journal.exists());
    let mut reg = reg;
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    assert_eq!(client.tags("app").await.unwrap(), ["keep"]);
    let verify = regsweep::verify::verify_registry(&client).await.unwrap();
    assert!(verify.is_ok() && verify.tags == 1, "{verify:?}");
}

#[tokio::test]
async fn a_clean_sweep_prints_no_warning_and_reports_the_delete_loop_itself() {
    let reg = frozen_with_old_tags(30).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["maintenance", "-o", "json", "-f"])
        .arg(&policy)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", &reg.url()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("WARN"), "a clean sweep warns about nothing: {stderr}");
    assert!(started.elapsed() < StdDuration::from_secs(20), "no stop timeout was waited out: {:?}", started.elapsed());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let delete = &report["delete"];
    assert_eq!(delete["deleted"], 30);
    assert!(delete["durationMs"].as_u64().unwrap() <= report["timings"]["deleteMs"].as_u64().unwrap());
    assert!(report["timings"]["gcCheckMs"].as_u64().is_some());
}

#[tokio::test]
async fn credentials_in_urls_never_show_and_bad_input_has_clear_exit_codes() {
    support::ensure_registry_installed();
    let reg = DemoRegistry::start(None).await.unwrap();
    push_image(&reg.client().unwrap(), "app", Some("v1"), Format::Docker, &[64], &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let secret_url = reg.url().replace("http://", "http://alice:s3cr3t-pw@");
    for format in ["text", "json"] {
        let out = Command::new(BIN)
            .args(["--log-format", format, "plan", "-f"])
            .arg(&policy)
            .args(["--url", &secret_url])
            .env("RUST_LOG", "regsweep=debug")
            .output()
            .unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{all}");
        assert!(!all.contains("s3cr3t") && !all.contains("alice:"), "{format}: {all}");
        assert!(all.contains(&reg.url()), "the plan names the registry: {all}");
    }
    let out = Command::new(BIN)
        .args(["maintenance", "-f"])
        .arg(&policy)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", "http://alice:s3cr3t-pw@127.0.0.1:9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");

    // Exit code 2, with the reason, for input that can never work.
    let config = |root: &str| {
        let p = dir.path().join(format!("config-{}.yml", root.len()));
        std::fs::write(&p, format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")).unwrap();
        p
    };
    let file_root = dir.path().join("a-file");
    std::fs::write(&file_root, "").unwrap();
    let empty_root = dir.path().join("empty");
    std::fs::create_dir(&empty_root).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--config".into(), config("/nonexistent/storage").display().to_string()], "cannot be used"),
        (vec!["--config".into(), config("relative/storage").display().to_string()], "relative"),
        (vec!["--config".into(), config(file_root.to_str().unwrap()).display().to_string()], "not a directory"),
        (vec!["--config".into(), config(empty_root.to_str().unwrap()).display().to_string()], "not a registry storage"),
        (vec!["--config".into(), reg.config_path().display().to_string(), "--url".into(), "ftp://host".into()], "scheme"),
        (
            vec!["--config".into(), reg.config_path().display().to_string(), "--concurrency".into(), "-1".into()],
            "whole number from 1 to 256",
        ),
        (
            vec!["--config".into(), reg.config_path().display().to_string(), "--report".into(), "/nonexistent/dir/report.json".into()],
            "does not exist",
        ),
    ];
    let before = std::fs::read_dir(reg.layout().root()).unwrap().count();
    for (args, why) in cases {
        let out = Command::new(BIN).args(["maintenance", "-f"]).arg(&policy).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: says {why:?}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(reg.layout().root()).unwrap().count(), before, "nothing was created in the storage");
}

#[tokio::test]
async fn a_redis_blob_descriptor_cache_is_refused_unless_the_caller_flushes_it() {
    let reg = frozen_with_old_tags(3).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let config = dir.path().join("redis.yml");
    let original = std::fs::read_to_string(reg.config_path()).unwrap();
    std::fs::write(&config, original.replace("blobdescriptor: inmemory", "blobdescriptor: redis")).unwrap();
    assert_ne!(std::fs::read_to_string(&config).unwrap(), original, "the fixture uses an in-memory cache to replace");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["maintenance", "-f"])
            .arg(&policy)
            .arg("--config")
            .arg(&config)
            .args(["--url", &reg.url()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Redis") && stderr.contains("--allow-redis-cache") && stderr.contains("Nothing was changed"), "{stderr}");
    let out = run(&["--allow-redis-cache"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
