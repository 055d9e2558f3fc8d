//! Damaged storage, as production has it: unreadable, malformed and non-regular entries,
//! symlinks, and entries garbage-collect cannot get past. Against the real registry: a
//! repository whose tags cannot be proven deletes nothing and the rest is swept; nothing
//! outside the storage root is touched; what would fail the collector is refused before
//! anything changes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use regsweep::demo::DemoRegistry;
use regsweep::fixture::{Format, push_image, set_tag_pushed};
use regsweep::storage::Layout;

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");

const POLICY: &str = "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {name: t}\nspec:\n  registry: {}\n  rules:\n    - repositories: [\"**\"]\n      keepLatest: 1\n      untagged: Delete\n      untaggedGracePeriod: 1h\n";

/// Two repositories, `damaged` and `healthy`, each with a new tag (kept) and three old ones.
async fn two_repositories() -> DemoRegistry {
    support::ensure_registry_installed();
    let reg = DemoRegistry::start(None).await.unwrap();
    let (client, layout) = (reg.client().unwrap(), reg.layout());
    for repo in ["damaged", "healthy"] {
        for (tag, age) in [("new", 1), ("old-1", 10), ("old-2", 11), ("old-3", 12)] {
            push_image(&client, repo, Some(tag), Format::Docker, &[128], &[]).await.unwrap();
            set_tag_pushed(&layout, repo, tag, Utc::now() - Duration::days(age)).unwrap();
        }
    }
    reg
}

/// Runs the CLI with a deadline (a FIFO once hung it forever).
fn run(args: &[&str], extra: &[&Path]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).args(extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > StdDuration::from_secs(60) {
            child.kill().unwrap();
            panic!("regsweep {args:?} hung");
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `maintenance` against the registry's storage, proving its freeze through its URL.
fn maintain(reg: &DemoRegistry, policy: &Path) -> Output {
    run(&["maintenance", "-f"], &[policy, Path::new("--config"), &reg.config_path(), Path::new("--url"), Path::new(&reg.url())])
}

/// The registry, a temp dir with the policy, and a pristine copy of the filled storage that
/// `restore_tree` puts back between cases.
async fn damage_bench() -> (DemoRegistry, tempfile::TempDir, PathBuf, PathBuf) {
    let reg = two_repositories().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path());
    let pristine = dir.path().join("pristine");
    copy_tree(reg.layout().root(), &pristine);
    (reg, dir, policy, pristine)
}

fn policy_file(dir: &Path) -> PathBuf {
    let p = dir.join("policy.yaml");
    std::fs::write(&p, POLICY).unwrap();
    p
}

/// The plan as JSON, from `plan --storage`.
fn plan_json(layout: &Layout, policy: &Path) -> serde_json::Value {
    let out = run(&["plan", "-o", "json", "--storage"], &[layout.root(), Path::new("-f"), policy]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tag_decisions(plan: &serde_json::Value, repo: &str) -> Vec<(String, String, String)> {
    let r = plan["repositories"].as_array().unwrap().iter().find(|r| r["name"] == repo).unwrap();
    r["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tag"].as_str().unwrap().into(), t["action"].as_str().unwrap().into(), t["reason"].as_str().unwrap().into()))
        .collect()
}

type Damage = fn(&Path);

fn replace_with_file(p: &Path, content: &[u8]) {
    std::fs::remove_file(p).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Every way a tag link (or the tags directory) can be unreadable, as `(name, damage)`; each
/// gets the `current/link` of `damaged:old-2`.
fn damages() -> Vec<(&'static str, Damage)> {
    vec![
        ("empty", |p| replace_with_file(p, b"")),
        ("truncated", |p| {
            let text = std::fs::read_to_string(p).unwrap();
            replace_with_file(p, &text.as_bytes()[..20]);
        }),
        ("binary", |p| replace_with_file(p, &[0xff, 0xfe, 0, 1, 2])),
        ("oversized", |p| replace_with_file(p, &vec![b'a'; 1 << 20])),
        ("directory", |p| {
            std::fs::remove_file(p).unwrap();
            std::fs::create_dir(p).unwrap();
        }),
        ("fifo", |p| {
            std::fs::remove_file(p).unwrap();
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        }),
        ("symlink", |p| {
            let target = p.with_file_name("elsewhere");
            std::fs::rename(p, &target).unwrap();
            std::os::unix::fs::symlink(&target, p).unwrap();
        }),
        ("tags-is-a-file", |p| {
            let tags = p.ancestors().nth(3).unwrap().to_path_buf();
            std::fs::rename(&tags, tags.with_file_name("tags.moved")).unwrap();
            std::fs::write(&tags, "not a directory").unwrap();
        }),
    ]
}

#[tokio::test]
async fn a_repository_whose_tags_cannot_be_proven_deletes_nothing_and_the_rest_is_swept() {
    let (mut reg, _dir, policy, pristine) = damage_bench().await;
    let layout = reg.layout();
    for (name, damage) in damages() {
        restore_tree(&pristine, layout.root());
        damage(&layout.tag_current_link("damaged", "old-2"));
        let plan = plan_json(&layout, &policy);
        for (tag, action, reason) in tag_decisions(&plan, "damaged") {
            assert_eq!(action, "keep", "{name}: damaged:{tag} is kept ({reason})");
            assert!(reason.starts_with("repository has unreadable entries: "), "{name}: {reason}");
            assert!(reason.contains("damaged/_manifests/tags"), "{name}: the reason names the path: {reason}");
        }
        let healthy = tag_decisions(&plan, "healthy");
        assert_eq!(healthy.iter().filter(|t| t.1 == "delete").count(), 3, "{name}: the rest is swept: {healthy:?}");
    }

    // The whole sweep on the FIFO case: kept tags pull whole afterwards, healthy is swept.
    restore_tree(&pristine, layout.root());
    let fifo = damages().into_iter().find(|d| d.0 == "fifo").unwrap().1;
    fifo(&layout.tag_current_link("damaged", "old-2"));
    reg.restart(true).await.unwrap();
    let out = maintain(&reg, &policy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("damaged/_manifests/tags/old-2/current/link"), "the problem is reported with its path: {stderr}");
    reg.restart(false).await.unwrap();
    let client = reg.client().unwrap();
    let mut damaged = client.tags("damaged").await.unwrap();
    damaged.sort();
    assert_eq!(damaged, ["new", "old-1", "old-2", "old-3"]);
    assert_eq!(client.tags("healthy").await.unwrap(), ["new"]);
    let tags: Vec<(String, String)> = ["new", "old-1", "old-3"].iter().map(|t| ("damaged".to_string(), t.to_string())).collect();
    let verify = regsweep::verify::verify_tags(&client, &tags).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
}

#[tokio::test]
async fn an_unreadable_tag_link_as_a_non_root_user_keeps_its_repository() {
    // Root reads everything; the permission case needs an unprivileged user.
    if !nix::unistd::geteuid().is_root() || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and setpriv to drop privileges");
        return;
    }
    let reg = two_repositories().await;
    let layout = reg.layout();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path());
    for p in [reg.dir.path(), dir.path()] {
        Command::new("chmod").args(["-R", "a+rX"]).arg(p).status().unwrap();
    }
    let link = layout.tag_current_link("damaged", "old-2");
    std::fs::set_permissions(&link, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "plan", "-o", "json", "--storage"])
        .arg(layout.root())
        .arg("-f")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (tag, action, reason) in tag_decisions(&plan, "damaged") {
        assert_eq!(action, "keep", "damaged:{tag}: {reason}");
        assert!(reason.contains("unreadable entries") && reason.contains("old-2"), "{reason}");
    }
    assert_eq!(tag_decisions(&plan, "healthy").iter().filter(|t| t.1 == "delete").count(), 3);
}

#[tokio::test]
async fn what_garbage_collect_fails_on_is_refused_before_anything_changes() {
    let (mut reg, _dir, policy, pristine) = damage_bench().await;
    let layout = reg.layout();
    let revision = |layout: &Layout| {
        let revs = layout.revisions("healthy");
        std::fs::read_dir(&revs).unwrap().next().unwrap().unwrap().path().join("link")
    };
    let hex = "ab".repeat(32);
    type MakeDamage<'a> = Box<dyn Fn(&Layout) -> PathBuf + 'a>;
    let cases: Vec<(&str, MakeDamage<'_>)> = vec![
        (
            "garbage revision link",
            Box::new(|l| {
                let p = revision(l);
                std::fs::write(&p, "garbage").unwrap();
                p
            }),
        ),
        (
            "non-hex blob directory",
            Box::new(|l| {
                let p = l.blobs().join("ab/not-a-digest");
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("data"), "x").unwrap();
                p
            }),
        ),
        (
            "blob under the wrong prefix",
            Box::new(move |l| {
                let p = l.blobs().join("00").join(&hex);
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("data"), "x").unwrap();
                p
            }),
        ),
        (
            "symlink loop",
            Box::new(|l| {
                let p = l.repository("healthy").join("loop");
                std::os::unix::fs::symlink("..", &p).unwrap();
                p
            }),
        ),
        (
            "FIFO revision link",
            Box::new(|l| {
                let p = revision(l);
                std::fs::remove_file(&p).unwrap();
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
                p
            }),
        ),
    ];
    reg.restart(true).await.unwrap();
    for (name, damage) in cases {
        restore_tree(&pristine, layout.root());
        let path = damage(&layout);
        let before = fingerprint(layout.root());
        let out = maintain(&reg, &policy);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{name}: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{name}: names {}: {stderr}", path.display());
        assert!(stderr.contains("nothing was changed"), "{name}: {stderr}");
        assert_eq!(fingerprint(layout.root()), before, "{name}: nothing changed");
    }

    // A stray file directly in blobs/ (or beside the prefixes) does not block a sweep.
    restore_tree(&pristine, layout.root());
    std::fs::write(layout.v2().join("blobs/README"), "hand-written").unwrap();
    std::fs::write(layout.blobs().join("notes.txt"), "hand-written").unwrap();
    let out = maintain(&reg, &policy);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(layout.v2().join("blobs/README").exists() && layout.blobs().join("notes.txt").exists());
}

#[tokio::test]
async fn the_freeze_is_proven_before_the_storage_is_read() {
    let reg = two_repositories().await;
    let layout = reg.layout();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_file(dir.path());
    // A FIFO the snapshot reports: a run that read storage first would report it. The
    // public registry is writable, so the run must stop at the probe, before reading.
    let link = layout.tag_current_link("damaged", "old-2");
    std::fs::remove_file(&link).unwrap();
    nix::unistd::mkfifo(&link, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let before = fingerprint(layout.root());
    let out = run(
        &["maintenance", "--log-format", "json", "-f"],
        &[&policy, Path::new("--config"), &reg.config_path(), Path::new("--url"), Path::new(&reg.url())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("still accepts writes"), "{stderr}");
    assert!(!stderr.contains("current/link"), "the storage was not read before the freeze was proven: {stderr}");
    assert_eq!(fingerprint(layout.root()), before, "a refusal changes nothing");
}

/// Files (not FIFOs) with sizes and small contents; FIFOs and symlinks by kind.
fn fingerprint(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            let t = e.file_type().unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if t.is_dir() {
                stack.push(path);
                out.push((rel, "dir".into()));
            } else if t.is_file() {
                let m = e.metadata().unwrap();
                let small =
                    if m.len() < 200 { String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned() } else { String::new() };
                out.push((rel, format!("{} {small}", m.len())));
            } else {
                out.push((rel, format!("{t:?}")));
            }
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

/// Puts `pristine` back in place of `root`, keeping `root`'s own directory (the registry's
/// config names it).
fn restore_tree(pristine: &Path, root: &Path) {
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() { std::fs::remove_dir_all(&p).unwrap() } else { std::fs::remove_file(&p).unwrap() }
    }
    let status = Command::new("cp").arg("-a").arg(format!("{}/.", pristine.display())).arg(root).status().unwrap();
    assert!(status.success());
}

/// Unmounts when dropped, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_read_only_filesystem_says_so_and_changes_nothing() {
    let reg = two_repositories().await;
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(&mnt).status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _guard = Mount(mnt.clone());
    copy_tree(reg.layout().root(), &mnt.join("storage"));
    let config = dir.path().join("config.yml");
    std::fs::write(&config, format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n", mnt.join("storage").display()))
        .unwrap();
    assert!(Command::new("mount").args(["-o", "remount,ro"]).arg(&mnt).status().unwrap().success());
    let policy = policy_file(dir.path());
    let out = run(&["maintenance", "-f"], &[&policy, Path::new("--config"), &config]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("read-only filesystem") && stderr.contains("nothing was changed"), "{stderr}");
    assert!(!stderr.contains("500"), "{stderr}");
}
