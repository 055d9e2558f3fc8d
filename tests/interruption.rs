//! Convergence after interruption (issue 9 §2): `regsweep maintenance` is SIGKILLed at many
//! points of its own log, then the same maintenance is run again to completion, and the end
//! state must equal an uninterrupted run's, tag by tag, revision by revision, blob by blob.
//!
//! One registry is filled once (multi-arch indexes and a Docker manifest list whose children
//! are untagged, a child shared by two indexes, tags sharing a digest, tag history, old and
//! young untagged manifests, cosign signatures of deleted and kept images, a layer shared by
//! two repositories, a repository emptied entirely, one no rule matches). Two policies sweep
//! it: `untagged: Delete` and `untagged: Keep` (with Keep, the children of an index deleted
//! before them are plain untagged manifests to a rerun that forgot what it approved).
//!
//! For each scenario the filled storage is copied (`cp -a`: the mtimes are the push times) and
//! swept without interruption: that is the reference. For each kill point: a fresh copy, its
//! own public registry restarted read-only, `regsweep --log-format json maintenance` with
//! `RUST_LOG=regsweep=debug`, SIGKILL on the chosen line of its stderr, a check that no
//! registry process of that run survives, the same command again to completion, then the end
//! state read from disk and compared (per repository: tag → `current/link`, revision links,
//! `_layers` links; every blob's `data`; regsweep's own files outside the registry's layout),
//! and `verify` against the public registry restarted read-write.
//!
//! The kill points are the table [`KILL_POINTS`] below; log messages may change, so that is
//! the one place to adjust. The sweep runs with `--concurrency 1`, so the n-th delete line is
//! the n-th manifest of the plan's order; stderr is read on a thread that kills, so the kill
//! lands at the line or just after it (the report shows what the killed run had removed). A
//! phase without a line of its own is hit after a delay measured on the uninterrupted run. A
//! kill point that is not reached (its phase ends before the line, the run exits before the
//! kill lands, or the uninterrupted run never logs the line) is reported and does not count;
//! at least [`MIN_HITS`] must be hit. Some kill points also SIGKILL the registry processes
//! (as when the pod dies), or kill the rerun once more.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::RngCore;
use regsweep::fixture::{Format, Pushed, push_image, push_index, push_signature, set_manifest_pushed, set_tag_pushed};
use regsweep::registry::RegistryClient;
use regsweep::storage::Layout;
use support::{TestRegistry, TestRegistryOptions};

const BIN: &str = env!("CARGO_BIN_EXE_regsweep");

// ---------------------------------------------------------------------------------------------
// The kill points.
// ---------------------------------------------------------------------------------------------

/// The policies the filled registry is swept with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    UntaggedDelete,
    UntaggedKeep,
}

const BOTH: &[Scenario] = &[Scenario::UntaggedDelete, Scenario::UntaggedKeep];
const DELETE: &[Scenario] = &[Scenario::UntaggedDelete];
const KEEP: &[Scenario] = &[Scenario::UntaggedKeep];

/// What a deleted manifest is, from the fill: the plan deletes signatures, then indexes, then
/// images, then index children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Signature,
    Index,
    Image,
    Child,
}

/// Which occurrence of the line; the relative ones are counted in the uninterrupted run's log.
#[derive(Clone, Copy, Debug)]
enum Nth {
    /// The n-th (from 1).
    At(usize),
    /// The middle one.
    Middle,
    /// The last one but `k` (0: the last).
    FromEnd(usize),
    /// `manifest deleted` only: the first delete of a manifest of this kind.
    First(Kind),
    /// `manifest deleted` only: the last delete of a manifest of this kind.
    Last(Kind),
}

/// When to kill once the line is read.
#[derive(Clone, Copy, Debug)]
enum Then {
    Now,
    /// For a phase that logs nothing while it works: `fraction` of the time the uninterrupted
    /// run took from this line to the next `until` line, at most `max_ms`. Missed if `until`
    /// comes first.
    Within {
        until: Msg,
        fraction: f64,
        max_ms: u64,
    },
}

/// What is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    /// regsweep alone (SIGKILL); its registry processes get their parent-death signal.
    Sweep,
    /// regsweep and every registry process it started, at once (SIGKILL), as when the pod or
    /// the machine dies: the private instance cannot finish an in-flight DELETE.
    Pod,
}

/// A log line: its JSON `message`; the start of its `target` (module, "" for any) and field
/// values (`dry_run` = `true`) when the message alone is ambiguous; and the fields that make
/// an occurrence distinct, when one event may be logged twice (empty: every line counts).
#[derive(Clone, Copy, Debug)]
struct Msg {
    message: &'static str,
    target: &'static str,
    when: &'static [(&'static str, &'static str)],
    distinct: &'static [&'static str],
}

const fn msg(message: &'static str) -> Msg {
    Msg { message, target: "", when: &[], distinct: &[] }
}

struct KillPoint {
    name: &'static str,
    scenarios: &'static [Scenario],
    line: Msg,
    nth: Nth,
    then: Then,
    victim: Victim,
    /// Kill the rerun too, at its first delete, before a third run finishes.
    twice: bool,
}

const fn kp(name: &'static str, scenarios: &'static [Scenario], line: Msg, nth: Nth, then: Then) -> KillPoint {
    KillPoint { name, scenarios, line, nth, then, victim: Victim::Sweep, twice: false }
}

impl KillPoint {
    const fn pod(self) -> KillPoint {
        KillPoint { victim: Victim::Pod, ..self }
    }

    const fn twice(self) -> KillPoint {
        KillPoint { twice: true, ..self }
    }
}

// One delete: the API client and the executor may both log it.
const DELETED: Msg = Msg { distinct: &["repository", "digest"], ..msg("manifest deleted") };
// Before the deletes: will the collector accept this storage?
const GC_CHECK_START: Msg = Msg { when: &[("dry_run", "true")], ..msg("running registry garbage-collect") };
const GC_CHECK_END: Msg = Msg { when: &[("dry_run", "true")], ..msg("garbage-collect finished") };
const GC_START: Msg = Msg { when: &[("dry_run", "false")], ..msg("running registry garbage-collect") };
const GC_END: Msg = Msg { when: &[("dry_run", "false")], ..msg("garbage-collect finished") };
const STARTING: Msg = msg("registry starting");
const PRUNED: Msg = msg("pruned");

use Nth::*;
use Then::*;

/// Every kill point: a name, the scenarios it runs in, the log line and which occurrence of
/// it, and when to kill after reading it; `.pod()` kills the registry processes too,
/// `.twice()` kills the rerun as well (at its first delete).
#[rustfmt::skip]
const KILL_POINTS: &[KillPoint] = &[
    // Plan and snapshot.
    kp("config loaded, before the lock",              DELETE, msg("registry configuration loaded"),          At(1),                 Now),
    kp("lock taken",                                  KEEP,   msg("sweep lock taken"),                       At(1),                 Now),
    kp("freeze proven, before the snapshot",          BOTH,   msg("public registry refuses writes"),         At(1),                 Now),
    kp("storage measured, before the plan",           DELETE, msg("storage measured"),                       At(1),                 Now),
    kp("plan made",                                   BOTH,   msg("plan made"),                              At(1),                 Now),
    kp("garbage-collect check running",               KEEP,   GC_CHECK_START,                                At(1),                 Within { until: GC_CHECK_END, fraction: 0.5, max_ms: 1000 }),
    kp("garbage-collect check done",                  DELETE, GC_CHECK_END,                                  At(1),                 Now),
    kp("journal written, instance starting",          KEEP,   GC_CHECK_END,                                  At(1),                 Within { until: STARTING, fraction: 0.5, max_ms: 1000 }),
    kp("planned tags removed, no manifest deleted",   BOTH,   msg("planned tags removed from the frozen storage"), At(1),           Now),
    // The private instance.
    kp("private config derived",                      KEEP,   msg("private instance configuration derived"), At(1),                 Now),
    kp("private instance spawned, not ready",         BOTH,   STARTING,                                      At(1),                 Now),
    kp("private instance ready",                      BOTH,   msg("registry ready"),                         At(1),                 Now),
    // Deletes (concurrency 1, so the n-th line is the n-th manifest of the plan's order).
    kp("first delete",                                BOTH,   DELETED,                                       At(1),                 Now),
    kp("signatures deleted",                          KEEP,   DELETED,                                       Last(Kind::Signature), Now),
    kp("first index deleted",                         KEEP,   DELETED,                                       First(Kind::Index),    Now),
    kp("indexes deleted, children not",               BOTH,   DELETED,                                       Last(Kind::Index),     Now),
    kp("indexes deleted, the pod dies",               KEEP,   DELETED,                                       Last(Kind::Index),     Now).pod(),
    kp("indexes deleted, the rerun killed too",       KEEP,   DELETED,                                       Last(Kind::Index),     Now).twice(),
    kp("middle of the deletes",                       BOTH,   DELETED,                                       Middle,                Now),
    kp("middle of the deletes, the pod dies",         DELETE, DELETED,                                       Middle,                Now).pod(),
    kp("middle of the deletes, the rerun killed too", DELETE, DELETED,                                       Middle,                Now).twice(),
    kp("images deleted, index children not",          BOTH,   DELETED,                                       Last(Kind::Image),     Now),
    kp("one delete left",                             KEEP,   DELETED,                                       FromEnd(1),            Now),
    kp("last delete",                                 BOTH,   DELETED,                                       FromEnd(0),            Now),
    kp("stopping the private instance",               BOTH,   DELETED,                                       FromEnd(0),            Within { until: GC_START, fraction: 0.5, max_ms: 2 }),
    // Garbage collection.
    kp("gc started",                                  BOTH,   GC_START,                                      At(1),                 Now),
    kp("gc midway",                                   BOTH,   GC_START,                                      At(1),                 Within { until: GC_END, fraction: 0.5, max_ms: 1000 }),
    kp("gc midway, the pod dies",                     KEEP,   GC_START,                                      At(1),                 Within { until: GC_END, fraction: 0.5, max_ms: 1000 }).pod(),
    kp("gc finished",                                 BOTH,   GC_END,                                        At(1),                 Now),
    // Prune.
    kp("first prune",                                 BOTH,   PRUNED,                                        At(1),                 Now),
    kp("middle of the prune",                         KEEP,   PRUNED,                                        Middle,                Now),
    kp("emptied repository being removed",            DELETE, msg("removing an emptied repository"),         At(1),                 Now),
    kp("last prune",                                  BOTH,   PRUNED,                                        FromEnd(0),            Now),
    kp("prune finished",                              KEEP,   msg("pruned GC litter"),                       At(1),                 Now),
    kp("storage measured after the prune",            DELETE, msg("storage measured"),                       At(2),                 Now),
    kp("maintenance finished",                        KEEP,   msg("maintenance finished"),                   At(1),                 Now),
];

/// Distinct (scenario, kill point) pairs that must actually be hit.
const MIN_HITS: usize = 20;
/// Kill points run at once, each on its own storage copy and ports.
const PARALLEL: usize = 3;
/// How long a registry process of a killed run may outlive it (the private instance drains
/// for up to 10 s on SIGTERM).
const LEFTOVER_GRACE: StdDuration = StdDuration::from_secs(15);
/// A maintenance run that takes longer is killed and reported as hung.
const RUN_TIMEOUT: StdDuration = StdDuration::from_secs(90);

fn policy(untagged: &str) -> String {
    let rule = |repos: &str, extra: &str| {
        format!("    - repositories: {repos}\n{extra}      untagged: {untagged}\n      untaggedGracePeriod: 24h\n")
    };
    format!(
        "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {{name: interruption}}\nspec:\n  registry: {{}}\n  rules:\n{}{}{}",
        rule("[\"scratch\"]", "      deleteTags: [\"tmp-*\"]\n      keepLatest: 0\n"),
        rule("[\"app\"]", "      keepLatest: 3\n"),
        rule("[\"multi\", \"tools/**\"]", "      keepLatest: 2\n"),
    )
}

impl Scenario {
    fn policy(self) -> String {
        match self {
            Scenario::UntaggedDelete => policy("Delete"),
            Scenario::UntaggedKeep => policy("Keep"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The registry's contents.
// ---------------------------------------------------------------------------------------------

/// What each pushed digest (manifest or blob) is, for readable diffs and for the delete kinds.
#[derive(Default)]
struct Labels {
    manifests: BTreeMap<String, (Kind, String)>,
    blobs: BTreeMap<String, String>,
}

impl Labels {
    fn manifest(&mut self, pushed: &Pushed, kind: Kind, label: String) {
        for b in &pushed.blobs {
            self.blobs.entry(b.to_string()).or_insert_with(|| format!("blob of {label}"));
        }
        self.blobs.insert(pushed.digest.to_string(), format!("manifest {label}"));
        self.manifests.insert(pushed.digest.to_string(), (kind, label));
    }

    /// `sha256:0123456789ab… (app build-03)`.
    fn show(&self, digest: &str) -> String {
        let short: String = digest.chars().take(19).collect();
        let label = self.manifests.get(digest).map(|(_, l)| l.as_str()).or_else(|| self.blobs.get(digest).map(String::as_str));
        match label {
            Some(l) => format!("{short}… ({l})"),
            None => format!("{short}…"),
        }
    }
}

/// Fills the registry: about thirty tags in five repositories, push times set back on disk.
async fn fill(client: &RegistryClient, layout: &Layout) -> Labels {
    let now = Utc::now();
    let days = |n: i64| now - Duration::hours(n * 24);
    let mut labels = Labels::default();
    let mut base = vec![0u8; 2048];
    rand::rng().fill_bytes(&mut base);
    let base_layer = client.push_blob("app", &base).await.unwrap();
    client.push_blob("tools/cli", &base).await.unwrap();
    labels.blobs.insert(base_layer.to_string(), "base layer of app and tools/cli".into());
    let shared = [(base_layer.clone(), base.len())];

    // app: builds (keepLatest 3), `stable` sharing build-02's digest, `latest` re-pushed (its
    // old digests are tag history), untagged manifests old and young, two signatures.
    let mut builds = Vec::new();
    for i in 1..=10i64 {
        let tag = format!("build-{i:02}");
        let img = push_image(client, "app", Some(&tag), Format::Docker, &[512], &shared).await.unwrap();
        set_tag_pushed(layout, "app", &tag, days(44 - 4 * i)).unwrap();
        set_manifest_pushed(layout, "app", &img.digest, days(44 - 4 * i)).unwrap();
        labels.manifest(&img, Kind::Image, format!("app {tag}"));
        builds.push(img);
    }
    let body = client.get_manifest("app", &builds[1].digest.as_str()).await.unwrap().body;
    client.put_manifest("app", "stable", &builds[1].media_type, &body).await.unwrap();
    set_tag_pushed(layout, "app", "stable", days(1)).unwrap();
    for (n, hours) in [(1, 50 * 24), (2, 30 * 24), (3, 12)] {
        let img = push_image(client, "app", Some("latest"), Format::Docker, &[512], &shared).await.unwrap();
        let when = now - Duration::hours(hours);
        set_manifest_pushed(layout, "app", &img.digest, when).unwrap();
        set_tag_pushed(layout, "app", "latest", when).unwrap();
        labels.manifest(&img, Kind::Image, if n == 3 { "app latest".into() } else { format!("app latest, push {n} (history)") });
    }
    let old = push_image(client, "app", None, Format::Oci, &[512], &[]).await.unwrap();
    set_manifest_pushed(layout, "app", &old.digest, days(60)).unwrap();
    labels.manifest(&old, Kind::Image, "app untagged, 60 days old".into());
    let young = push_image(client, "app", None, Format::Oci, &[512], &[]).await.unwrap();
    labels.manifest(&young, Kind::Image, "app untagged, just pushed".into());
    for i in [0, 9] {
        let sig = push_signature(client, "app", &builds[i].digest).await.unwrap();
        labels.manifest(&sig, Kind::Signature, format!("app signature of build-{:02}", i + 1));
    }

    // multi: OCI indexes (keepLatest 2) over untagged children, idx-1 and idx-5 sharing one,
    // a signed index, and a Docker manifest list.
    let shared_child = push_image(client, "multi", None, Format::Oci, &[512], &[]).await.unwrap();
    set_manifest_pushed(layout, "multi", &shared_child.digest, days(50)).unwrap();
    labels.manifest(&shared_child, Kind::Child, "multi child arm64 of idx-1 and idx-5".into());
    for (i, age) in [(1, 50), (2, 40), (3, 30), (4, 20), (5, 10)] {
        let tag = format!("idx-{i}");
        let amd = push_image(client, "multi", None, Format::Oci, &[512], &[]).await.unwrap();
        set_manifest_pushed(layout, "multi", &amd.digest, days(age)).unwrap();
        labels.manifest(&amd, Kind::Child, format!("multi {tag} child amd64"));
        let arm = if i == 1 || i == 5 {
            shared_child.clone()
        } else {
            let arm = push_image(client, "multi", None, Format::Oci, &[512], &[]).await.unwrap();
            set_manifest_pushed(layout, "multi", &arm.digest, days(age)).unwrap();
            labels.manifest(&arm, Kind::Child, format!("multi {tag} child arm64"));
            arm
        };
        let idx = push_index(client, "multi", &tag, Format::Oci, &[(&amd, "amd64"), (&arm, "arm64")]).await.unwrap();
        set_manifest_pushed(layout, "multi", &idx.digest, days(age)).unwrap();
        set_tag_pushed(layout, "multi", &tag, days(age)).unwrap();
        labels.manifest(&idx, Kind::Index, format!("multi {tag} index"));
        if i == 2 {
            let sig = push_signature(client, "multi", &idx.digest).await.unwrap();
            labels.manifest(&sig, Kind::Signature, "multi signature of idx-2".into());
        }
    }
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let c = push_image(client, "multi", None, Format::Docker, &[512], &[]).await.unwrap();
        set_manifest_pushed(layout, "multi", &c.digest, days(45)).unwrap();
        labels.manifest(&c, Kind::Child, format!("multi list-1 child {arch}"));
        children.push(c);
    }
    let list = push_index(client, "multi", "list-1", Format::Docker, &[(&children[0], "amd64"), (&children[1], "arm64")]).await.unwrap();
    set_manifest_pushed(layout, "multi", &list.digest, days(45)).unwrap();
    set_tag_pushed(layout, "multi", "list-1", days(45)).unwrap();
    labels.manifest(&list, Kind::Index, "multi list-1 manifest list".into());

    // tools/cli (nested): releases sharing app's base layer (keepLatest 2).
    for (i, age) in [(1, 30), (2, 25), (3, 20), (4, 15), (5, 10), (6, 5)] {
        let tag = format!("v{i}");
        let img = push_image(client, "tools/cli", Some(&tag), Format::Oci, &[512], &shared).await.unwrap();
        set_tag_pushed(layout, "tools/cli", &tag, days(age)).unwrap();
        set_manifest_pushed(layout, "tools/cli", &img.digest, days(age)).unwrap();
        labels.manifest(&img, Kind::Image, format!("tools/cli {tag}"));
    }
    // scratch: every tag deleted, so the repository is emptied and pruned away.
    for (i, age) in [(1, 20), (2, 15), (3, 10)] {
        let tag = format!("tmp-{i}");
        let img = push_image(client, "scratch", Some(&tag), Format::Docker, &[512], &[]).await.unwrap();
        set_tag_pushed(layout, "scratch", &tag, days(age)).unwrap();
        set_manifest_pushed(layout, "scratch", &img.digest, days(age)).unwrap();
        labels.manifest(&img, Kind::Image, format!("scratch {tag}"));
    }
    // legacy/keep: no rule matches it.
    let legacy = push_image(client, "legacy/keep", Some("0.1"), Format::Docker, &[512], &[]).await.unwrap();
    set_tag_pushed(layout, "legacy/keep", "0.1", days(700)).unwrap();
    set_manifest_pushed(layout, "legacy/keep", &legacy.digest, days(700)).unwrap();
    labels.manifest(&legacy, Kind::Image, "legacy/keep 0.1".into());
    labels
}

// ---------------------------------------------------------------------------------------------
// The end state, read from disk.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RepoState {
    /// Tag → its `current/link` (or why there is none: the directory alone is still listed).
    tags: BTreeMap<String, String>,
    /// Digests with a revision `link`.
    revisions: BTreeSet<String>,
    /// Digests with a `_layers` link.
    layers: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct EndState {
    repositories: BTreeMap<String, RepoState>,
    /// Digests with `blobs/sha256/xx/<hex>/data`.
    blobs: BTreeSet<String>,
    /// Files under the storage root outside `repositories/` and `blobs/` (regsweep's own state,
    /// such as its lock and journal; not its trash), relative to the root.
    others: BTreeSet<String>,
}

/// The entries of a directory (name, is a directory), sorted; symlinks are not followed.
fn entries(dir: &Path) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    out.sort();
    out
}

fn has_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn end_state(root: &Path) -> EndState {
    let v2 = root.join("docker/registry/v2");
    let mut state = EndState::default();
    let mut stack = vec![(v2.join("repositories"), String::new())];
    while let Some((dir, name)) = stack.pop() {
        let children = entries(&dir);
        if !name.is_empty() && children.iter().any(|(n, d)| *d && ["_manifests", "_layers", "_uploads"].contains(&n.as_str())) {
            state.repositories.insert(name.clone(), repo_state(&dir));
        }
        for (child, is_dir) in children {
            if is_dir && !child.starts_with('_') {
                let child_name = if name.is_empty() { child.clone() } else { format!("{name}/{child}") };
                stack.push((dir.join(child), child_name));
            }
        }
    }
    let blobs = v2.join("blobs/sha256");
    for (prefix, is_dir) in entries(&blobs) {
        if is_dir {
            for (hex, _) in entries(&blobs.join(&prefix)) {
                if has_file(&blobs.join(&prefix).join(&hex).join("data")) {
                    state.blobs.insert(format!("sha256:{hex}"));
                }
            }
        }
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for (name, is_dir) in entries(&dir) {
            let path = dir.join(&name);
            // What the trash still holds depends on how far its background emptying got (a run
            // does not wait for it; the next run empties it): never part of the registry's state.
            if path == v2.join("repositories") || path == blobs || path == root.join(".regsweep/trash") {
                continue;
            }
            if is_dir {
                stack.push(path);
            } else {
                state.others.insert(path.strip_prefix(root).unwrap_or(&path).display().to_string());
            }
        }
    }
    state
}

fn repo_state(dir: &Path) -> RepoState {
    let mut repo = RepoState::default();
    let tags = dir.join("_manifests/tags");
    for (tag, _) in entries(&tags) {
        let value = match std::fs::read_to_string(tags.join(&tag).join("current/link")) {
            Ok(link) => link.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "(directory without current/link)".into(),
            Err(e) => format!("(unreadable current/link: {e})"),
        };
        repo.tags.insert(tag, value);
    }
    for (sub, set) in [("_manifests/revisions/sha256", &mut repo.revisions), ("_layers/sha256", &mut repo.layers)] {
        for (hex, _) in entries(&dir.join(sub)) {
            if has_file(&dir.join(sub).join(&hex).join("link")) {
                set.insert(format!("sha256:{hex}"));
            }
        }
    }
    repo
}

/// One difference between the uninterrupted result and the rerun's: a category (for the
/// summary) and a readable line.
struct Difference {
    category: String,
    line: String,
}

fn diff(expected: &EndState, got: &EndState, labels: &Labels) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |category: &str, line: String| out.push(Difference { category: category.to_string(), line });
    let names: BTreeSet<&String> = expected.repositories.keys().chain(got.repositories.keys()).collect();
    for name in names {
        let empty = RepoState::default();
        let (e, g) = match (expected.repositories.get(name), got.repositories.get(name)) {
            (Some(e), Some(g)) => (e, g),
            (Some(e), None) => {
                push("missing repositories", format!("repository {name}: gone after the rerun, kept by the uninterrupted run"));
                (e, &empty)
            }
            (None, Some(g)) => {
                push("extra repositories", format!("repository {name}: still there after the rerun, removed by the uninterrupted run"));
                (&empty, g)
            }
            (None, None) => unreachable!(),
        };
        let tags: BTreeSet<&String> = e.tags.keys().chain(g.tags.keys()).collect();
        for tag in tags {
            match (e.tags.get(tag), g.tags.get(tag)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    push("changed tags", format!("{name}:{tag}: uninterrupted → {}, rerun → {}", labels.show(a), labels.show(b)))
                }
                (Some(a), None) => push("missing tags", format!("{name}:{tag} → {}: missing after the rerun", labels.show(a))),
                (None, Some(b)) => {
                    push("extra tags", format!("{name}:{tag} → {}: left by the rerun, deleted by the uninterrupted run", labels.show(b)))
                }
                (None, None) => unreachable!(),
            }
        }
        for (what, a, b) in [("revision", &e.revisions, &g.revisions), ("layer link", &e.layers, &g.layers)] {
            for d in b.difference(a) {
                push(
                    &format!("extra {what}s"),
                    format!("{name} {what} {}: left by the rerun, removed by the uninterrupted run", labels.show(d)),
                );
            }
            for d in a.difference(b) {
                push(&format!("missing {what}s"), format!("{name} {what} {}: missing after the rerun", labels.show(d)));
            }
        }
    }
    for d in got.blobs.difference(&expected.blobs) {
        push("extra blobs", format!("blob {}: left by the rerun, collected by the uninterrupted run", labels.show(d)));
    }
    for d in expected.blobs.difference(&got.blobs) {
        push("missing blobs", format!("blob {}: missing after the rerun", labels.show(d)));
    }
    for f in got.others.difference(&expected.others) {
        push("extra files", format!("{f}: left by the rerun, not by the uninterrupted run"));
    }
    for f in expected.others.difference(&got.others) {
        push("missing files", format!("{f}: left by the uninterrupted run, not by the rerun"));
    }
    out
}

/// How many revision links are gone.
fn unlinked(before: &EndState, after: &EndState) -> usize {
    let count = |s: &EndState| s.repositories.values().map(|r| r.revisions.len()).sum::<usize>();
    count(before).saturating_sub(count(after))
}

/// What a killed run had removed: `12 revisions  3 tags  0 blobs  0 layer links`.
fn damage(before: &EndState, after: &EndState) -> String {
    let count = |f: fn(&RepoState) -> usize, s: &EndState| s.repositories.values().map(f).sum::<usize>();
    let gone = |f: fn(&RepoState) -> usize| count(f, before).saturating_sub(count(f, after));
    format!(
        "{:>2} revisions {:>2} tags {:>2} blobs {:>2} layer links",
        gone(|r| r.revisions.len()),
        gone(|r| r.tags.len()),
        before.blobs.len().saturating_sub(after.blobs.len()),
        gone(|r| r.layers.len()),
    )
}

/// `extra blobs: 5, extra revisions: 3`.
fn summary(diffs: &[Difference]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in diffs {
        *counts.entry(&d.category).or_default() += 1;
    }
    counts.iter().map(|(c, n)| format!("{c}: {n}")).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// Running `regsweep maintenance`.
// ---------------------------------------------------------------------------------------------

struct LogLine {
    at: Instant,
    json: serde_json::Value,
    raw: String,
}

impl LogLine {
    fn parse(raw: String) -> LogLine {
        let json: serde_json::Value = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
        LogLine { at: Instant::now(), json, raw }
    }

    fn field(&self, name: &str) -> &str {
        self.json.get(name).and_then(|v| v.as_str()).unwrap_or_default()
    }

    /// A field as text (strings unquoted).
    fn value(&self, name: &str) -> String {
        match self.json.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }
    }

    fn is(&self, m: Msg) -> bool {
        self.field("message") == m.message && self.field("target").starts_with(m.target) && m.when.iter().all(|(k, v)| self.value(k) == *v)
    }

    /// `WARN message key=value …` (non-JSON lines as they are).
    fn compact(&self) -> String {
        let Some(map) = self.json.as_object() else { return self.raw.clone() };
        let mut s = format!("{} {}", self.field("level"), self.field("message"));
        for (k, v) in map.iter().filter(|(k, _)| !["timestamp", "level", "message", "target", "span", "spans"].contains(&k.as_str())) {
            let _ = write!(s, " {k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
        s
    }
}

/// Counts the occurrences of a line (an event logged twice counts once).
struct Counter {
    line: Msg,
    seen: HashSet<Vec<String>>,
    count: usize,
}

impl Counter {
    fn new(line: Msg) -> Self {
        Counter { line, seen: HashSet::new(), count: 0 }
    }

    /// Whether `l` is a new occurrence (then counted).
    fn occurs(&mut self, l: &LogLine) -> bool {
        if !l.is(self.line)
            || (!self.line.distinct.is_empty() && !self.seen.insert(self.line.distinct.iter().map(|f| l.value(f)).collect()))
        {
            return false;
        }
        self.count += 1;
        true
    }
}

/// Where and how one maintenance is run: its policy, the public registry's config and URL,
/// and a TMPDIR of its own, so its private instance's config (and thereby its registry
/// processes) can be told from every other run's.
struct Ctx {
    policy: PathBuf,
    config: PathBuf,
    url: String,
    tmp: PathBuf,
}

/// A resolved kill point: SIGKILL on the `nth` `line`, at once or after a delay unless
/// `until` comes first.
#[derive(Clone, Debug)]
struct Trigger {
    line: Msg,
    nth: usize,
    within: Option<(StdDuration, Msg)>,
    victim: Victim,
}

struct Run {
    lines: Vec<LogLine>,
    status: ExitStatus,
    /// With a trigger: Ok(what the kill interrupted) or Err(why the point was not reached).
    kill: Option<Result<String, String>>,
    /// Killed after [`RUN_TIMEOUT`].
    hung: bool,
}

impl Run {
    fn tail(&self, n: usize) -> String {
        self.lines[self.lines.len().saturating_sub(n)..].iter().map(|l| format!("    {}", l.compact())).collect::<Vec<_>>().join("\n")
    }
}

/// Kills the sweep, or the sweep and its registry processes at once (the sweep is stopped
/// first, so it starts nothing while they are looked for).
fn kill_victim(pid: Pid, victim: Victim, tmp: &Path) {
    if victim == Victim::Pod {
        let _ = kill(pid, Signal::SIGSTOP);
        for (p, _) in processes_of(tmp) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Runs `regsweep maintenance`; with a trigger, kills it there. Its stderr is read on a
/// thread of its own, which also kills, so the kill lands as soon after the line as the
/// scheduler allows (the sweep keeps running meanwhile: the kill is at the line or a little
/// after it, never before).
async fn maintenance(ctx: &Ctx, trigger: Option<&Trigger>, labels: &Labels) -> Run {
    let mut child = std::process::Command::new(BIN)
        .args(["--log-format", "json", "maintenance", "--concurrency", "1", "-f"])
        .arg(&ctx.policy)
        .arg("--config")
        .arg(&ctx.config)
        .args(["--url", &ctx.url])
        .env("RUST_LOG", "regsweep=debug")
        .env("TMPDIR", &ctx.tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start regsweep maintenance");
    let pid = Pid::from_raw(child.id() as i32);
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watch = Watch { pid, trigger: trigger.cloned(), tmp: ctx.tmp.clone() };
    std::thread::spawn(move || {
        let watched = watch.run(stderr);
        let status = child.wait().expect("wait for regsweep");
        let _ = tx.send((watched, status));
    });
    let mut rx = rx;
    let (watched, status, hung) = match tokio::time::timeout(RUN_TIMEOUT, &mut rx).await {
        Ok(done) => {
            let (watched, status) = done.expect("the watcher thread reports");
            (watched, status, false)
        }
        Err(_) => {
            kill_victim(pid, Victim::Pod, &ctx.tmp);
            let (mut watched, status) = rx.await.expect("the watcher thread reports");
            watched.missed = Some(format!("the run hung for {}s and was killed", RUN_TIMEOUT.as_secs()));
            (watched, status, true)
        }
    };
    let Watched { lines, count, killed_at, missed } = watched;
    let kill = trigger.map(|t| match (killed_at, missed) {
        (_, Some(why)) => Err(why),
        (Some(at), None) if status.signal() == Some(Signal::SIGKILL as i32) => Ok(match &t.within {
            Some((delay, until)) => format!("{} #{} + {}ms, before `{}`", t.line.message, t.nth, delay.as_millis(), until.message),
            None if t.line.message == "manifest deleted" => {
                let l = &lines[at];
                format!("manifest deleted #{}: {}@{}", t.nth, l.field("repository"), labels.show(l.field("digest")))
            }
            None => format!("{} #{}", t.line.message, t.nth),
        }),
        (Some(_), None) => Err(format!("the run ended ({status}) before the kill landed")),
        (None, None) => Err(format!("the run ended ({status}) after {count} of the {} `{}` lines needed", t.nth, t.line.message)),
    });
    Run { lines, status, kill, hung }
}

/// The stderr watcher of one run.
struct Watch {
    pid: Pid,
    trigger: Option<Trigger>,
    tmp: PathBuf,
}

struct Watched {
    lines: Vec<LogLine>,
    /// Occurrences of the trigger's line seen.
    count: usize,
    /// Index in `lines` of the line the kill was sent at (or armed at, for a delayed kill).
    killed_at: Option<usize>,
    missed: Option<String>,
}

/// A delayed kill: armed, then fired by the timer or defused by the `until` line.
const ARMED: u8 = 0;
const FIRED: u8 = 1;
const DEFUSED: u8 = 2;

impl Watch {
    fn run(self, stderr: std::process::ChildStderr) -> Watched {
        use std::io::BufRead;
        let mut out = Watched { lines: Vec::new(), count: 0, killed_at: None, missed: None };
        let mut counter = self.trigger.as_ref().map(|t| Counter::new(t.line));
        let mut delayed: Option<(Arc<AtomicU8>, Msg)> = None;
        for raw in std::io::BufReader::new(stderr).lines() {
            let Ok(raw) = raw else { break };
            let line = LogLine::parse(raw);
            let index = out.lines.len();
            out.lines.push(line);
            let Some(t) = &self.trigger else { continue };
            let line = &out.lines[index];
            if let Some((state, until)) = &delayed {
                if line.is(*until) && state.compare_exchange(ARMED, DEFUSED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    kill_victim(self.pid, t.victim, &self.tmp);
                    out.missed = Some(format!("`{}` came before the delay was over (killed there instead)", until.message));
                }
                continue;
            }
            let counter = counter.as_mut().expect("a counter with the trigger");
            if out.killed_at.is_some() || !counter.occurs(line) {
                continue;
            }
            out.count = counter.count;
            if out.count < t.nth {
                continue;
            }
            out.killed_at = Some(index);
            match t.within {
                None => kill_victim(self.pid, t.victim, &self.tmp),
                Some((delay, until)) => {
                    let state = Arc::new(AtomicU8::new(ARMED));
                    let (timer_state, pid, victim, tmp) = (state.clone(), self.pid, t.victim, self.tmp.clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        if timer_state.compare_exchange(ARMED, FIRED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                            kill_victim(pid, victim, &tmp);
                        }
                    });
                    delayed = Some((state, until));
                }
            }
        }
        // The run ended before a delayed kill fired: it missed.
        if let Some((state, until)) = delayed
            && state.compare_exchange(ARMED, DEFUSED, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            out.missed.get_or_insert_with(|| format!("the run ended before the delay was over (no `{}` seen)", until.message));
        }
        out
    }
}

/// Registry processes (`serve` or `garbage-collect`) started by the run that used `tmp`: their
/// command line names the private config under it.
fn processes_of(tmp: &Path) -> Vec<(i32, String)> {
    let needle = tmp.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.iter().any(|a| a.contains(&needle)) {
            out.push((pid, args.join(" ").trim().to_string()));
        }
    }
    out
}

/// Waits until no registry process of the run is left; returns those still there after the
/// grace period (killed then, so they do not disturb the rerun) and how long it took.
async fn leftovers(tmp: &Path) -> (Vec<String>, StdDuration) {
    let started = Instant::now();
    loop {
        let procs = processes_of(tmp);
        if procs.is_empty() {
            return (Vec::new(), started.elapsed());
        }
        if started.elapsed() > LEFTOVER_GRACE {
            for (pid, _) in &procs {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            return (procs.into_iter().map(|(pid, cmd)| format!("pid {pid}: {cmd}")).collect(), started.elapsed());
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// The same maintenance to completion; waits out a lock a killed run may still hold.
async fn rerun(ctx: &Ctx, labels: &Labels) -> Result<Run, String> {
    let started = Instant::now();
    loop {
        let run = maintenance(ctx, None, labels).await;
        if run.status.success() {
            return Ok(run);
        }
        let locked = run.lines.iter().any(|l| l.raw.to_lowercase().contains("another sweep"));
        if !locked || started.elapsed() > StdDuration::from_secs(20) {
            let how =
                if run.hung { format!("hung and was killed after {}s", RUN_TIMEOUT.as_secs()) } else { format!("failed ({})", run.status) };
            return Err(format!("the rerun {how}; its log ends with:\n{}", run.tail(15)));
        }
        tokio::time::sleep(StdDuration::from_millis(250)).await;
    }
}

/// Thaws the public registry (restart read-write, which also drops its blob cache) and
/// verifies every tag from outside; returns the problems.
async fn thaw_and_verify(reg: &mut TestRegistry) -> Vec<String> {
    reg.restart(false).await;
    match regsweep::verify::verify_registry(&reg.client()).await {
        Ok(report) => report
            .problems
            .iter()
            .map(|p| format!("{}:{} {}: {}", p.repository, p.tag, p.digest.as_ref().map(|d| d.to_string()).unwrap_or_default(), p.problem))
            .collect(),
        Err(e) => vec![format!("verify failed: {e}")],
    }
}

async fn copy_tree(from: &Path, to: &Path) {
    let status = tokio::process::Command::new("cp").arg("-a").arg(from).arg(to).status().await.expect("run cp -a");
    assert!(status.success(), "cp -a {} {} failed", from.display(), to.display());
}

// ---------------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------------

struct Bed {
    dir: PathBuf,
    pristine: PathBuf,
    /// The end state of the filled storage, before any sweep.
    before: EndState,
    labels: Labels,
}

impl Bed {
    /// A fresh copy of the filled storage with its own public registry, frozen.
    async fn frozen_copy(&self, name: &str, scenario: Scenario) -> (TestRegistry, Ctx) {
        let run = self.dir.join("runs").join(name);
        std::fs::create_dir_all(run.join("tmp")).unwrap();
        copy_tree(&self.pristine, &run.join("storage")).await;
        let reg =
            TestRegistry::start(TestRegistryOptions { storage_root: Some(run.join("storage")), read_only: true, ..Default::default() })
                .await;
        let ctx = Ctx { policy: self.policy_file(scenario), config: reg.config_path(), url: reg.url(), tmp: run.join("tmp") };
        (reg, ctx)
    }

    fn policy_file(&self, scenario: Scenario) -> PathBuf {
        self.dir.join(format!("{scenario:?}.yaml"))
    }
}

struct Reference {
    lines: Vec<LogLine>,
    state: EndState,
}

async fn reference(bed: &Bed, scenario: Scenario) -> Reference {
    let (mut reg, ctx) = bed.frozen_copy(&format!("{scenario:?}-reference"), scenario).await;
    let run = maintenance(&ctx, None, &bed.labels).await;
    assert!(run.status.success(), "{scenario:?}: the uninterrupted maintenance failed ({}):\n{}", run.status, run.tail(30));
    let state = end_state(reg.storage_root());
    let problems = thaw_and_verify(&mut reg).await;
    assert!(problems.is_empty(), "{scenario:?}: verify after the uninterrupted maintenance: {problems:#?}");
    reg.stop().await;
    check_reference(scenario, &state, &bed.labels);
    Reference { lines: run.lines, state }
}

/// The uninterrupted run did what this test is built on: indexes deleted with their children,
/// untagged manifests deleted or kept as the scenario says, a repository emptied.
fn check_reference(scenario: Scenario, state: &EndState, labels: &Labels) {
    let digest = |label: &str| labels.manifests.iter().find(|(_, (_, l))| l == label).map(|(d, _)| d.clone()).expect(label);
    let has = |repo: &str, label: &str| state.repositories.get(repo).is_some_and(|r| r.revisions.contains(&digest(label)));
    let why = format!("{scenario:?}: the uninterrupted run did not do what this test relies on");
    let multi = &state.repositories["multi"];
    assert!(!multi.tags.contains_key("idx-2") && multi.tags.contains_key("idx-5"), "{why}: multi tags {:?}", multi.tags.keys());
    assert!(!has("multi", "multi idx-2 index") && !has("multi", "multi idx-2 child amd64"), "{why}: idx-2 and its children go");
    assert!(!has("multi", "multi list-1 child arm64"), "{why}: the manifest list's children go");
    assert!(has("multi", "multi child arm64 of idx-1 and idx-5"), "{why}: a child of a kept index stays");
    assert!(has("app", "app untagged, just pushed"), "{why}: a young untagged manifest stays");
    let old_kept = has("app", "app untagged, 60 days old");
    assert_eq!(old_kept, scenario == Scenario::UntaggedKeep, "{why}: the old untagged manifest follows `untagged`");
    assert!(!state.repositories.contains_key("scratch"), "{why}: the emptied repository is removed");
    assert!(state.repositories.contains_key("legacy/keep"), "{why}: an unmatched repository stays");
}

/// Resolves a kill point against the uninterrupted run's log.
fn resolve(point: &KillPoint, reference: &Reference, labels: &Labels) -> Result<Trigger, String> {
    let mut counter = Counter::new(point.line);
    let occurrences: Vec<(usize, &LogLine)> = reference.lines.iter().enumerate().filter(|(_, l)| counter.occurs(l)).collect();
    let kind_at = |kind: Kind| {
        occurrences
            .iter()
            .enumerate()
            .filter(|(_, (_, l))| labels.manifests.get(l.field("digest")).is_some_and(|(k, _)| *k == kind))
            .map(|(i, _)| i + 1)
            .collect::<Vec<_>>()
    };
    let n = match point.nth {
        At(n) => n,
        Middle => occurrences.len().div_ceil(2),
        FromEnd(k) => occurrences.len().saturating_sub(k),
        First(kind) => kind_at(kind).first().copied().unwrap_or(0),
        Last(kind) => kind_at(kind).last().copied().unwrap_or(0),
    };
    if n == 0 || n > occurrences.len() {
        let m = point.line.message;
        return Err(format!("the uninterrupted run logged `{m}` {} times, none is {:?}", occurrences.len(), point.nth));
    }
    let within = match point.then {
        Now => None,
        Within { until, fraction, max_ms } => {
            let (index, from) = occurrences[n - 1];
            let Some(end) = reference.lines[index + 1..].iter().find(|l| l.is(until)) else {
                return Err(format!("the uninterrupted run logged no `{}` after `{}` #{n}", until.message, point.line.message));
            };
            Some((end.at.duration_since(from.at).mul_f64(fraction).min(StdDuration::from_millis(max_ms)), until))
        }
    };
    Ok(Trigger { line: point.line, nth: n, within, victim: point.victim })
}

struct Outcome {
    scenario: Scenario,
    point: usize,
    /// Ok(what was interrupted) or Err(why not reached).
    kill: Result<String, String>,
    leftover: Vec<String>,
    leftover_wait: StdDuration,
    /// What the killed run had changed.
    damage: String,
    /// Differences from the uninterrupted result.
    diffs: Vec<Difference>,
    /// Anything else wrong after the rerun (it failed, left processes, verify found problems).
    problems: Vec<String>,
    seconds: f64,
}

impl Outcome {
    fn name(&self) -> String {
        format!("{:?} / {}", self.scenario, KILL_POINTS[self.point].name)
    }

    fn failed(&self) -> bool {
        !self.diffs.is_empty() || !self.problems.is_empty() || !self.leftover.is_empty()
    }
}

async fn kill_point(bed: &Bed, scenario: Scenario, point: usize, trigger: Trigger, reference: &Reference, i: usize) -> Outcome {
    let started = Instant::now();
    let name = format!("{scenario:?}-{i:02}");
    let (mut reg, ctx) = bed.frozen_copy(&name, scenario).await;
    let killed = maintenance(&ctx, Some(&trigger), &bed.labels).await;
    let (leftover, leftover_wait) = leftovers(&ctx.tmp).await;
    let after_kill = end_state(reg.storage_root());
    let damage = damage(&bed.before, &after_kill);
    let mut problems = Vec::new();
    let mut leftover = leftover;
    // Kill the rerun too, at its first delete; a third run then finishes.
    let second = if KILL_POINTS[point].twice {
        let first_delete = Trigger { line: DELETED, nth: 1, within: None, victim: Victim::Sweep };
        let killed = maintenance(&ctx, Some(&first_delete), &bed.labels).await;
        leftover.extend(leftovers(&ctx.tmp).await.0.into_iter().map(|p| format!("{p} (after the second kill)")));
        killed.kill
    } else {
        None
    };
    let mut diffs = Vec::new();
    match rerun(&ctx, &bed.labels).await {
        Err(e) => problems.push(e),
        Ok(_) => {
            let (left, _) = leftovers(&ctx.tmp).await;
            problems.extend(left.into_iter().map(|p| format!("left running by the rerun: {p}")));
            diffs = diff(&reference.state, &end_state(reg.storage_root()), &bed.labels);
            problems.extend(thaw_and_verify(&mut reg).await.into_iter().map(|p| format!("verify: {p}")));
        }
    }
    reg.stop().await;
    let _ = std::fs::remove_dir_all(bed.dir.join("runs").join(&name));
    let mut kill = killed.kill.expect("a trigger was given");
    // A kill at the n-th delete finds n manifests unlinked, n + 1 when one was in flight
    // (the private instance finishes it); more means the kill landed late, at another point.
    let deleted = unlinked(&bed.before, &after_kill);
    if kill.is_ok() && trigger.within.is_none() && trigger.line.message == DELETED.message && deleted > trigger.nth + 1 {
        kill = Err(format!("the kill landed late: {deleted} manifests were unlinked at the kill after delete line #{}", trigger.nth));
    }
    if let (Some(second), Ok(what)) = (second, &mut kill) {
        match second {
            Ok(at) => *what = format!("{what}; the rerun killed at {at}"),
            Err(why) => *what = format!("{what}; the rerun not killed: {why}"),
        }
    }
    let outcome =
        Outcome { scenario, point, kill, leftover, leftover_wait, damage, diffs, problems, seconds: started.elapsed().as_secs_f64() };
    eprintln!(
        "{}: {} ({}) — {}",
        outcome.name(),
        match &outcome.kill {
            Ok(what) => format!("killed at {what}"),
            Err(why) => format!("NOT REACHED: {why}"),
        },
        outcome.damage.split_whitespace().collect::<Vec<_>>().join(" "),
        if outcome.failed() { "FAILED" } else { "converged" }
    );
    outcome
}

/// The readable result: a line per kill point, those not reached, then each distinct
/// difference once with the kill points that left it.
fn render(outcomes: &[Outcome], unresolved: &[String], seconds: f64) -> String {
    let hits = outcomes.iter().filter(|o| o.kill.is_ok()).count();
    let mut out = format!(
        "{} kill points in {seconds:.0}s, {hits} hit (the columns: time of the kill point, what the killed run had removed, the result after the rerun):\n",
        outcomes.len()
    );
    for o in outcomes {
        let result = if o.failed() { format!("FAILED: {}", summary(&o.diffs)) } else { "converged".into() };
        let slow = o.leftover_wait > StdDuration::from_secs(1);
        let _ = writeln!(
            out,
            "  {:<62} {:<8} {:>5.1}s  {}  {result}{}{}",
            o.name(),
            if o.kill.is_ok() { "hit" } else { "NOT HIT" },
            o.seconds,
            o.damage,
            if o.problems.is_empty() { String::new() } else { format!(" (+{} other problems)", o.problems.len()) },
            if slow { format!(" (its registry processes took {:.1}s to exit)", o.leftover_wait.as_secs_f64()) } else { String::new() },
        );
    }
    let not_hit: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.kill.as_ref().err().map(|why| format!("{}: {why}", o.name())))
        .chain(unresolved.iter().cloned())
        .collect();
    if !not_hit.is_empty() {
        let _ = writeln!(out, "\nkill points not reached (not counted as hit):\n  {}", not_hit.join("\n  "));
    }
    let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.failed()) {
        let mut lines: Vec<String> = o.leftover.iter().map(|p| format!("still running after the kill: {p}")).collect();
        lines.extend(o.problems.iter().cloned());
        lines.extend(o.diffs.iter().map(|d| d.line.clone()));
        let at = match &o.kill {
            Ok(what) => format!("killed at {what}"),
            Err(why) => format!("not reached: {why}"),
        };
        groups.entry(lines).or_default().push(format!("{} ({at})", o.name()));
    }
    for (lines, names) in &groups {
        let _ = writeln!(out, "\nafter the rerun of\n  {}\ndifferences from the uninterrupted run:", names.join("\n  "));
        for l in lines {
            let _ = writeln!(out, "    {l}");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_killed_anywhere_converges_on_rerun_to_the_uninterrupted_result() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    let filler = TestRegistry::start(TestRegistryOptions { storage_root: Some(pristine.clone()), ..Default::default() }).await;
    let labels = fill(&filler.client(), &Layout::new(&pristine)).await;
    filler.stop().await;
    let bed = Bed { dir: dir.path().to_path_buf(), before: end_state(&pristine), pristine, labels };
    for scenario in [Scenario::UntaggedDelete, Scenario::UntaggedKeep] {
        std::fs::write(bed.policy_file(scenario), scenario.policy()).unwrap();
    }
    let (del, keep) = tokio::join!(reference(&bed, Scenario::UntaggedDelete), reference(&bed, Scenario::UntaggedKeep));
    let references: BTreeMap<Scenario, Reference> = [(Scenario::UntaggedDelete, del), (Scenario::UntaggedKeep, keep)].into();
    for (s, r) in &references {
        let mut counter = Counter::new(DELETED);
        let deletes = r.lines.iter().filter(|l| counter.occurs(l)).count();
        let took = r.lines.last().zip(r.lines.first()).map(|(a, b)| a.at - b.at).unwrap_or_default();
        eprintln!("{s:?}: the uninterrupted run deleted {deletes} manifests and took {:.1}s", took.as_secs_f64());
    }

    let mut unresolved = Vec::new();
    let mut jobs = Vec::new();
    for (i, point) in KILL_POINTS.iter().enumerate() {
        for &scenario in point.scenarios {
            match resolve(point, &references[&scenario], &bed.labels) {
                Ok(trigger) => jobs.push((scenario, i, trigger)),
                Err(why) => unresolved.push(format!("{scenario:?} / {}: {why}", point.name)),
            }
        }
    }
    let mut outcomes: Vec<Outcome> = futures::stream::iter(jobs.into_iter().enumerate())
        .map(|(n, (scenario, i, trigger))| kill_point(&bed, scenario, i, trigger, &references[&scenario], n))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    outcomes.sort_by_key(|o| (o.scenario, o.point));
    let report = render(&outcomes, &unresolved, started.elapsed().as_secs_f64());
    let hits = outcomes.iter().filter(|o| o.kill.is_ok()).count();
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    assert!(
        failed == 0 && hits >= MIN_HITS,
        "{failed} of {} kill points did not converge to the uninterrupted result{}.\n\n{report}",
        outcomes.len(),
        if hits < MIN_HITS { format!(", and only {hits} were hit (at least {MIN_HITS} must be)") } else { String::new() },
    );
    eprintln!("{report}");
}

/// What the registry leaves when it is stopped between unlinking a manifest and removing its
/// tags: the revision link gone, the tag still there. The registry keeps listing such a tag
/// (answering 404 for it), so prune must remove tags whose manifest link is gone.
#[tokio::test]
async fn a_tag_whose_manifest_revision_link_is_gone_is_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let mut reg = TestRegistry::start(TestRegistryOptions { storage_root: Some(storage.clone()), ..Default::default() }).await;
    let client = reg.client();
    let layout = Layout::new(&storage);
    push_image(&client, "app", Some("kept"), Format::Docker, &[512], &[]).await.unwrap();
    let orphan = push_image(&client, "app", Some("orphan"), Format::Docker, &[512], &[]).await.unwrap();
    std::fs::remove_file(layout.revision_link("app", &orphan.digest)).unwrap();
    let mut listed = client.tags("app").await.unwrap();
    listed.sort();
    assert_eq!(listed, ["kept", "orphan"], "the registry lists a tag whose manifest is unlinked");

    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "apiVersion: regsweep.dev/v1alpha1\nkind: RegistryCleanupPolicy\nmetadata: {name: t}\nspec:\n  registry: {}\n  rules:\n    - repositories: [\"**\"]\n      keepLatest: 10\n      untagged: Keep\n").unwrap();
    reg.restart(true).await;
    let out = std::process::Command::new(BIN)
        .args(["maintenance", "-f"])
        .arg(&policy)
        .arg("--config")
        .arg(reg.config_path())
        .args(["--url", &reg.url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "maintenance failed: {}", String::from_utf8_lossy(&out.stderr));
    reg.restart(false).await;
    let client = reg.client();
    let tag_dir = layout.tags("app").join("orphan");
    let listed = client.tags("app").await.unwrap();
    assert!(
        !tag_dir.exists() && listed == ["kept"],
        "a tag whose manifest revision link is gone must be pruned: tags/list says {listed:?}, {} {}",
        tag_dir.display(),
        if tag_dir.exists() { "still exists" } else { "is gone" }
    );
    let verify = regsweep::verify::verify_registry(&client).await.unwrap();
    assert!(verify.is_ok(), "{:?}", verify.problems);
    reg.stop().await;
}
