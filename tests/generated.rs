//! Generated ("property") tests: random registries and random valid policies from fixed
//! seeds, checked against invariants written from the README's policy semantics (not from
//! the planner's code).
//!
//! - `plan_cases`: 200 seeds, snapshot built in memory, `regsweep::plan::plan` checked.
//! - `damaged_storage_plan_cases`: the storage layout written to disk, one repository damaged
//!   (empty, truncated, binary, oversized, directory, FIFO or symlinked tag link, or
//!   `_manifests/tags` a file), `read_storage` + `plan` checked (issue 9 §1.1), each seed
//!   first undamaged as a control.
//! - `maintenance_cases`: 30 seeds pushed to the real registry, frozen, swept with
//!   `run_maintenance`, thawed, and checked from outside (every kept tag verifies, every
//!   deleted tag is gone, no unreferenced blob is left on disk).
//! - `damaged_storage_maintenance_cases`: the same with one damaged repository.
//! - `quarantine_maintenance_cases`: 10 seeds swept with `spec.quarantine`, then restored by
//!   run id: every tag is back with its digest, every deleted manifest pulls, all whole.
//!
//! Rerun one seed: `REGSWEEP_GEN_SEED=<n> cargo test --test generated <test name>`.
//! More cases: `REGSWEEP_GEN_CASES` (plan), `REGSWEEP_GEN_DAMAGED_CASES` (damaged plan),
//! `REGSWEEP_GEN_MAINT_CASES` (maintenance), `REGSWEEP_GEN_DAMAGED_MAINT_CASES`,
//! `REGSWEEP_GEN_QUARANTINE_CASES`.

mod support;

#[path = "generated/check.rs"]
mod check;
#[path = "generated/live.rs"]
mod live;
#[path = "generated/matching.rs"]
mod matching;
#[path = "generated/model.rs"]
mod model;
#[path = "generated/oracle.rs"]
mod oracle;
#[path = "generated/policygen.rs"]
mod policygen;
#[path = "generated/storage.rs"]
mod storage;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use regsweep::plan::{Plan, Protection};
use regsweep::policy::reference::ProtectedRef;
use regsweep::policy::{CompiledPolicy, RegistryCleanupPolicy};

use model::Model;
use oracle::Want;
use policygen::{GenPolicy, GenRef};

/// `30d`, `5h`, `12m`, `40s`, for dumps.
pub fn fmt_age(d: Duration) -> String {
    let s = d.num_seconds();
    if s.abs() >= 86400 * 2 {
        format!("{}d{}h", s / 86400, (s % 86400) / 3600)
    } else if s.abs() >= 3600 {
        format!("{}h{}m", s / 3600, (s % 3600) / 60)
    } else if s.abs() >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// The seeds a test runs: `REGSWEEP_GEN_SEED` alone, or `0..count` (`count` from `var`).
fn seeds(var: &str, default: u64) -> Vec<u64> {
    match env_u64("REGSWEEP_GEN_SEED") {
        Some(s) => vec![s],
        None => (0..env_u64(var).unwrap_or(default)).collect(),
    }
}

/// When the in-memory cases are planned.
fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

/// One generated case: registry, policy (valid: `compile` accepted it) and protections.
pub struct Case {
    pub seed: u64,
    pub model: Model,
    pub policy: GenPolicy,
    pub document: RegistryCleanupPolicy,
    pub compiled: CompiledPolicy,
    /// `--protect`-style references (in use).
    pub protect: Vec<GenRef>,
    /// Policies `compile` refused before this one, with why.
    pub rejected: Vec<String>,
    /// Refusals of a policy whose rule does match a repository (issue 9 §3).
    pub wrongly_rejected: Vec<String>,
}

impl Case {
    /// All references the plan must honour: the policy's own and the `--protect` ones.
    pub fn all_refs(&self) -> Vec<GenRef> {
        self.policy.references.iter().chain(&self.protect).cloned().collect()
    }

    pub fn protections(&self) -> Vec<Protection> {
        self.protect
            .iter()
            .map(|r| Protection::in_use(ProtectedRef::parse(&r.text).unwrap_or_else(|e| panic!("generated reference {:?}: {e}", r.text))))
            .collect()
    }

    pub fn dump(&self) -> String {
        let mut s = format!("--- policy (seed {}):\n{}", self.seed, self.policy.yaml());
        let protect: Vec<&str> = self.protect.iter().map(|r| r.text.as_str()).collect();
        s.push_str(&format!("--- --protect {protect:?}\n--- registry (ages at plan time):\n{}", self.model.dump()));
        s
    }
}

/// A rule of `policy` that does govern some repository name (first match), proving that a
/// "can never match" refusal is wrong.
fn can_match(policy: &GenPolicy, rule: usize, model: &Model) -> Option<String> {
    let names: BTreeSet<&str> = model::REPO_NAMES.iter().copied().chain(model.repos.keys().map(String::as_str)).collect();
    names.into_iter().find(|n| policy.rule_for(n) == Some(rule)).map(str::to_string)
}

/// A case for `seed`. With `prefer_deletions` (the small maintenance registries), the
/// policy that deletes the most of four valid ones is taken, so that sweeps have work to do.
pub fn generate_case(seed: u64, size: model::Size, now: DateTime<Utc>, prefer_deletions: bool) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let model = model::generate(&mut rng, seed, size, now);
    let mut rejected = Vec::new();
    let mut wrongly_rejected = Vec::new();
    let mut valid: Vec<(usize, GenPolicy, RegistryCleanupPolicy, CompiledPolicy)> = Vec::new();
    let wanted = if prefer_deletions { 4 } else { 1 };
    for _ in 0..60 {
        let mut policy = policygen::policy(&mut rng, &model);
        let n = rng.random_range(0..=2);
        policy.references = policygen::references(&mut rng, &model, &policy.hosts, "protected", n);
        let yaml = policy.yaml();
        let document = regsweep::policy::load::from_yaml(&yaml, "generated")
            .unwrap_or_else(|e| panic!("seed {seed}: the generated policy does not parse (a generator bug): {e}\n{yaml}"));
        match regsweep::policy::compile(&document.spec) {
            Ok(compiled) => {
                let e = oracle::expect(&model, &policy, &policy.references, now, &BTreeSet::new());
                let deletes = e.repos.values().map(|r| r.manifests.values().filter(|m| m.want == Want::Delete).count()).sum();
                valid.push((deletes, policy, document, compiled));
                if valid.len() == wanted {
                    break;
                }
            }
            Err(e) => {
                for p in &e.problems {
                    if p.message.contains("can never match") {
                        let rule = p.field.trim_start_matches("spec.rules[").split(']').next().and_then(|i| i.parse().ok());
                        if let Some(witness) = rule.and_then(|i| can_match(&policy, i, &model)) {
                            wrongly_rejected.push(format!("{}: {} — yet {witness:?} is governed by it\n{yaml}", p.field, p.message));
                        }
                    }
                }
                rejected.push(e.to_string());
            }
        }
    }
    // The most deleting; the first among equals.
    let best = valid.iter().enumerate().max_by_key(|(i, v)| (v.0, std::cmp::Reverse(*i))).map(|(i, _)| i);
    let Some(best) = best else {
        panic!(
            "seed {seed}: no valid policy in 60 attempts; the last refusals:\n{}",
            rejected.iter().rev().take(3).cloned().collect::<Vec<_>>().join("\n")
        );
    };
    let (_, policy, document, compiled) = valid.swap_remove(best);
    let n = *[0, 0, 1, 2, 3].choose(&mut rng).unwrap();
    let protect = policygen::references(&mut rng, &model, &policy.hosts, "in use", n);
    Case { seed, model, policy, document, compiled, protect, rejected, wrongly_rejected }
}

/// A case with something to damage (a tagged repository a rule governs): `seed`'s own, or,
/// when it has none, the next in a sequence derived from it (so the seed still reproduces it).
pub fn damageable_case(seed: u64, size: model::Size, now: DateTime<Utc>, prefer_deletions: bool) -> Case {
    for k in 0..20u64 {
        let mut case = generate_case(seed.wrapping_add(k.wrapping_mul(1_000_003)), size, now, prefer_deletions);
        if live::damage_target(&case).is_some() {
            case.seed = seed;
            return case;
        }
    }
    panic!("seed {seed}: 20 generated registries in a row have nothing to damage");
}

/// Runs `f` on its own thread; after `limit`, calls `on_timeout` every 100 ms (to unblock a
/// FIFO reader) until `f` returns. Returns the value and whether it overran.
pub fn with_timeout<T: Send + 'static>(limit: StdDuration, f: impl FnOnce() -> T + Send + 'static, on_timeout: impl Fn()) -> (T, bool) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let started = Instant::now();
    let mut overran = false;
    loop {
        match rx.recv_timeout(StdDuration::from_millis(100)) {
            Ok(v) => {
                let _ = handle.join();
                return (v, overran);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() > limit => {
                overran = true;
                on_timeout();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let e = handle.join().err().map(|e| e.downcast_ref::<String>().cloned().unwrap_or_default()).unwrap_or_default();
                panic!("the worker thread panicked: {e}");
            }
        }
    }
}

/// Fails with one paragraph per failed seed.
fn report(kind: &str, test: &str, total: usize, failures: Vec<(u64, String)>) {
    if failures.is_empty() {
        return;
    }
    let mut msg = format!("{} of {total} {kind} failed (seeds {:?}):\n", failures.len(), failures.iter().map(|f| f.0).collect::<Vec<_>>());
    for (seed, why) in &failures {
        msg.push_str(&format!("\n=== seed {seed} — rerun: REGSWEEP_GEN_SEED={seed} cargo test --test generated {test}\n{why}\n"));
    }
    panic!("{msg}");
}

fn first_lines(v: &[String], n: usize) -> String {
    let mut s: String = v.iter().take(n).map(|l| format!("  - {l}\n")).collect();
    if v.len() > n {
        s.push_str(&format!("  … and {} more\n", v.len() - n));
    }
    s
}

/// Counts that show the generator exercises what it should.
#[derive(Default)]
struct Coverage {
    cases: usize,
    rejected: usize,
    wrongly_rejected: Vec<String>,
    tags: usize,
    tags_deleted: usize,
    manifests_deleted: usize,
    untagged_deleted: usize,
    index_children_kept: usize,
    signatures_deleted: usize,
    protected_kept: usize,
    /// Protected cosign tags whose subject is deleted (issue 9 §1.3).
    protected_orphan_signatures: usize,
}

impl std::fmt::Debug for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cases ({} policies refused, {} of them wrongly), {} tags: {} deleted; {} manifests deleted ({} untagged); {} untagged index children kept; {} signature tags deleted; {} tags kept by protection alone; {} protected signatures of deleted images",
            self.cases,
            self.rejected,
            self.wrongly_rejected.len(),
            self.tags,
            self.tags_deleted,
            self.manifests_deleted,
            self.untagged_deleted,
            self.index_children_kept,
            self.signatures_deleted,
            self.protected_kept,
            self.protected_orphan_signatures
        )
    }
}

impl Coverage {
    fn add(&mut self, case: &Case, plan: &Plan, expect: &oracle::Expectation) {
        self.cases += 1;
        self.protected_orphan_signatures +=
            expect.repos.values().map(|r| r.protected_tags.keys().filter(|t| matching::cosign_subject(t).is_some()).count()).sum::<usize>();
        self.rejected += case.rejected.len();
        self.wrongly_rejected.extend(case.wrongly_rejected.iter().cloned());
        self.tags += plan.summary.tags_kept + plan.summary.tags_deleted;
        self.tags_deleted += plan.summary.tags_deleted;
        self.manifests_deleted += plan.summary.manifests_deleted;
        // Counted from the checker's expectation, not from the plan's wording.
        for (name, e) in &expect.repos {
            let repo = &case.model.repos[name];
            let children: BTreeSet<&regsweep::digest::Digest> = repo.manifests.values().flat_map(|m| m.children()).collect();
            for (d, x) in &e.manifests {
                if x.want == Want::Delete && repo.tags_on(d).is_empty() {
                    self.untagged_deleted += 1;
                }
                if x.want == Want::Keep && children.contains(d) && repo.tags_on(d).is_empty() {
                    self.index_children_kept += 1;
                }
            }
            for (t, x) in &e.tags {
                if x.want == Want::Delete && matching::cosign_subject(t).is_some() {
                    self.signatures_deleted += 1;
                }
            }
            self.protected_kept += e.protected_tags.len();
        }
    }

    fn assert_sane(&self, what: &str) {
        eprintln!("{what}: {self:?}");
        let attempts = self.cases + self.rejected;
        assert!(
            self.rejected * 2 < attempts,
            "{what}: compile refused {} of {attempts} generated policies: the generator makes mostly invalid policies",
            self.rejected
        );
        if self.cases >= 50 {
            assert!(
                self.tags_deleted > 0 && self.untagged_deleted > 0 && self.index_children_kept > 0,
                "{what}: the generator exercises too little: {self:?}"
            );
            assert!(self.signatures_deleted > 0 && self.protected_kept > 0, "{what}: the generator exercises too little: {self:?}");
        }
        if !self.wrongly_rejected.is_empty() {
            eprintln!(
                "{what}: NOTE compile refused {} policies whose rule does match a repository (issue 9 §3, the never-match check); the first:\n{}",
                self.wrongly_rejected.len(),
                self.wrongly_rejected[0]
            );
        }
    }
}

fn plan_case(seed: u64, coverage: &mut Coverage) -> Result<(), String> {
    let case = generate_case(seed, model::PLAN_SIZE, fixed_now(), false);
    let snapshot = storage::snapshot(&case.model);
    let plan = regsweep::plan::plan(&case.compiled, &snapshot, &case.protections(), case.model.now);
    let expect = oracle::expect(&case.model, &case.policy, &case.all_refs(), case.model.now, &BTreeSet::new());
    coverage.add(&case, &plan, &expect);
    let violations = check::check_plan(&plan, &case.model, &expect);
    if violations.is_empty() { Ok(()) } else { Err(format!("{}{}", first_lines(&violations, 12), case.dump())) }
}

#[test]
fn plan_cases() {
    let seeds = seeds("REGSWEEP_GEN_CASES", 200);
    let mut coverage = Coverage::default();
    let failures: Vec<(u64, String)> = seeds.iter().filter_map(|&s| plan_case(s, &mut coverage).err().map(|e| (s, e))).collect();
    coverage.assert_sane("plan cases");
    report("plan cases", "plan_cases", seeds.len(), failures);
}

#[test]
fn the_checker_agrees_with_the_readme_examples() {
    // A hand-made case whose answer the README spells out, so the checker itself is checked:
    // keepLatest 1 over three candidates, `stable` sharing the old one's digest, an index with
    // an untagged child, a signature of the deleted image, an old untagged manifest.
    let now = fixed_now();
    let repo_name = "team-a/app".to_string();
    let mut model = Model { seed: 0, now, repos: Default::default(), blobs: Default::default() };
    let repo = model.repos.entry(repo_name.clone()).or_insert_with(|| model::RepoM { name: repo_name.clone(), ..Default::default() });
    let config = regsweep::digest::Digest::of(b"config");
    let mk = |n: u8, kind: model::Kind, subject: Option<regsweep::digest::Digest>, age_days: i64| {
        let body = format!("manifest-{n}").into_bytes();
        model::Mf {
            digest: regsweep::digest::Digest::of(&body),
            media_type: regsweep::media::OCI_MANIFEST.into(),
            body,
            kind,
            subject,
            pushed: now - Duration::days(age_days),
            role: model::Role::Image,
        }
    };
    let image = |n: u8| model::Kind::Image { config: config.clone(), layers: vec![regsweep::digest::Digest::of(&[n])] };
    let new = mk(1, image(1), None, 1);
    let old = mk(2, image(2), None, 10);
    let child = mk(3, image(3), None, 10);
    let mut index = mk(4, model::Kind::Index { children: vec![child.digest.clone()] }, None, 10);
    index.media_type = regsweep::media::OCI_INDEX.into();
    let sig = mk(5, image(5), None, 10);
    let stray = mk(6, image(6), None, 10);
    let referrer = mk(7, image(7), Some(new.digest.clone()), 10);
    for m in [&new, &old, &child, &index, &sig, &stray, &referrer] {
        repo.manifests.insert(m.digest.clone(), m.clone());
    }
    let tag = |repo: &mut model::RepoM, name: &str, d: &regsweep::digest::Digest, age_days: i64| {
        repo.tags.insert(name.into(), model::TagM { name: name.into(), digest: d.clone(), pushed: now - Duration::days(age_days) });
    };
    tag(repo, "new", &new.digest, 1);
    tag(repo, "old", &old.digest, 10);
    tag(repo, "stable", &old.digest, 10);
    tag(repo, "multi", &index.digest, 5);
    let sig_tag = format!("sha256-{}.sig", old.digest.hex());
    tag(repo, &sig_tag, &sig.digest, 10);
    let policy = GenPolicy {
        hosts: vec![],
        rules: vec![policygen::GenRule {
            repositories: vec!["**".into()],
            keep_latest: Some(1),
            keep_tags: vec!["stable".into()],
            untagged_delete: Some(true),
            ..Default::default()
        }],
        references: vec![],
    };
    let e = oracle::expect(&model, &policy, &[], now, &BTreeSet::new());
    let r = &e.repos[&repo_name];
    let want = |t: &str| r.tags[t].want;
    assert_eq!(want("new"), Want::Keep, "the newest candidate");
    assert_eq!(want("multi"), Want::Delete, "second newest of keepLatest 1");
    assert_eq!(want("old"), Want::Keep, "shares its digest with stable");
    assert!(r.sharing.contains("old"));
    assert_eq!(want(&sig_tag), Want::Keep, "signature of a kept image");
    assert_eq!(r.manifests[&child.digest].want, Want::Delete, "child of a deleted index");
    assert_eq!(r.manifests[&stray.digest].want, Want::Delete, "old untagged, untagged: Delete");
    assert_eq!(r.manifests[&referrer.digest].want, Want::Keep, "referrer of a kept image");
    // A protected cosign tag wins even when its subject goes.
    let mut p2 = policy.clone();
    p2.rules[0].keep_tags.clear();
    let sig_ref = GenRef {
        text: format!("{repo_name}:{sig_tag}"),
        label: "in use",
        host: None,
        repo: repo_name.clone(),
        tag: Some(sig_tag.clone()),
        digest: None,
    };
    let e = oracle::expect(&model, &p2, &[sig_ref], now, &BTreeSet::new());
    assert_eq!(e.repos[&repo_name].tags["old"].want, Want::Delete);
    assert_eq!(e.repos[&repo_name].tags[&sig_tag].want, Want::Keep);
}

/// A temporary directory on tmpfs when there is one (writing a few hundred small files is
/// many times faster there than on the disk), else the usual one.
fn fast_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("regsweep-generated-").tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap()
}

/// Plans the model's storage written to disk, with `damage` done to it first; a FIFO reader
/// is unblocked after a few seconds (and the overrun is a failure).
fn plan_from_disk(case: &Case, damage: Option<storage::Damage>) -> Result<(), String> {
    let dir = fast_tempdir();
    let root = dir.path().join("storage");
    let layout = storage::write_layout(&case.model, &root);
    let mut damaged_repos = BTreeSet::new();
    let mut damaged = None;
    if let Some(kind) = damage {
        let (repo, tag, digest) = live::damage_target(case).ok_or("no tagged repository governed by a rule to damage")?;
        damaged = Some(storage::damage(&layout, &repo, &tag, &digest, kind, dir.path()));
        damaged_repos.insert(repo);
    }
    let reader = layout.clone();
    let fifo = damaged.as_ref().map(|d| (d.kind, d.path.clone()));
    let (snapshot, hung) = with_timeout(
        StdDuration::from_secs(3),
        move || regsweep::storage::read_storage(&reader),
        || {
            if let Some(d) = &damaged {
                d.unblock_fifo();
            }
        },
    );
    let snapshot = snapshot.map_err(|e| format!("read_storage failed: {e}"))?;
    let plan = regsweep::plan::plan(&case.compiled, &snapshot, &case.protections(), case.model.now);
    let expect = oracle::expect(&case.model, &case.policy, &case.all_refs(), case.model.now, &damaged_repos);
    let mut violations = Vec::new();
    if hung {
        violations.push(format!("read_storage hung on {:?} (it opens a FIFO as a link); unblocked after 3s", fifo));
    }
    if let Some(repo) = damaged_repos.first() {
        let needle = format!("/repositories/{repo}/_manifests");
        if !snapshot.problems.iter().any(|p| p.path.contains(&needle)) && !plan.warnings.iter().any(|w| w.contains(&needle)) {
            violations.push(format!(
                "the damage in {repo} ({:?}) is not reported (snapshot problems: {:?})",
                damage.unwrap(),
                snapshot.problems
            ));
        }
    } else {
        // Only the manifests the generator made unreadable on purpose may be reported.
        let unknown: BTreeSet<String> = case
            .model
            .repos
            .values()
            .flat_map(|r| r.manifests.values())
            .filter(|m| m.kind == model::Kind::Unknown)
            .map(|m| m.digest.hex().to_string())
            .collect();
        let unexpected: Vec<_> = snapshot.problems.iter().filter(|p| !unknown.iter().any(|h| p.path.contains(&format!("/{h}/")))).collect();
        if !unexpected.is_empty() {
            violations.push(format!("the undamaged storage has problems: {unexpected:?}"));
        }
    }
    violations.extend(check::check_plan(&plan, &case.model, &expect));
    if violations.is_empty() { Ok(()) } else { Err(first_lines(&violations, 10)) }
}

#[test]
fn damaged_storage_plan_cases() {
    let seeds = seeds("REGSWEEP_GEN_DAMAGED_CASES", 24);
    let mut failures = Vec::new();
    for &seed in &seeds {
        let case = damageable_case(seed, model::PLAN_SIZE, fixed_now(), false);
        let kind = storage::DAMAGES[seed as usize % storage::DAMAGES.len()];
        // The same storage undamaged must plan as the checker says, so that a damaged case
        // fails because of the damage; both are run and reported.
        let control = plan_from_disk(&case, None).err().map(|e| format!("CONTROL (the same storage undamaged) failed too:\n{e}"));
        let target = live::damage_target(&case).map(|t| format!("{}:{}", t.0, t.1)).unwrap_or_default();
        let damaged = plan_from_disk(&case, Some(kind)).err().map(|e| format!("damage {kind:?} at {target}:\n{e}"));
        if control.is_some() || damaged.is_some() {
            let parts: Vec<String> = damaged.into_iter().chain(control).collect();
            failures.push((seed, format!("{}{}", parts.join(""), case.dump())));
        }
    }
    report("damaged-storage plan cases", "damaged_storage_plan_cases", seeds.len(), failures);
}

#[test]
fn maintenance_cases() {
    support::ensure_registry_installed();
    let seeds = seeds("REGSWEEP_GEN_MAINT_CASES", 30);
    let failures = live::run_all(&seeds, live::Mode::Plain);
    report("maintenance cases", "maintenance_cases", seeds.len(), failures);
}

#[test]
fn quarantine_maintenance_cases() {
    support::ensure_registry_installed();
    let seeds = seeds("REGSWEEP_GEN_QUARANTINE_CASES", 10);
    let failures = live::run_all(&seeds, live::Mode::Quarantine);
    report("quarantine maintenance cases", "quarantine_maintenance_cases", seeds.len(), failures);
}

#[test]
fn damaged_storage_maintenance_cases() {
    support::ensure_registry_installed();
    let seeds = seeds("REGSWEEP_GEN_DAMAGED_MAINT_CASES", 8);
    let failures = live::run_all(&seeds, live::Mode::Damaged);
    report("damaged-storage maintenance cases", "damaged_storage_maintenance_cases", seeds.len(), failures);
}
