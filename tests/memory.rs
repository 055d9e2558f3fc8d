//! What the sweep holds in memory at once, measured by a counting allocator around the real
//! code on real files: at 200,000 tags every list kept "for a moment" was megabytes of the
//! peak that goal 4 of issue 13 bounds (100 MiB). Each check bounds the heap a step grows by
//! while it runs, far below what keeping one entry per item would take.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::collections::BTreeMap;
use std::fs;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use regsweep::digest::Digest;
use regsweep::storage::Layout;
use regsweep::storage::prune::{Changed, PruneOptions, PruneScope, prune};
use regsweep::storage::trash::{Trash, empty_all, trash_root};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the old and the new block at once, as a moving realloc holds them.
            let live = LIVE.fetch_add(new_size, Ordering::SeqCst) + new_size;
            PEAK.fetch_max(live, Ordering::SeqCst);
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// One measurement at a time: the counters are the whole process's.
static MEASURING: Mutex<()> = Mutex::new(());

/// Runs `step`; returns what it gave back and how far the heap grew above where it started.
fn heap_growth<T>(step: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.load(Ordering::SeqCst);
    PEAK.store(start, Ordering::SeqCst);
    let out = step();
    (out, PEAK.load(Ordering::SeqCst).saturating_sub(start))
}

#[test]
fn emptying_a_trash_of_many_entries_does_not_list_them_first() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // A sweep's untag moves every deleted tag's directory into one run directory of the trash:
    // 40,000 entries at 220,000 tags, listed whole (~8 MB) by each pass of the emptier.
    let n = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("root"));
    fs::create_dir_all(layout.root()).unwrap();
    let trash = Trash::open(&layout, "run-1").unwrap();
    let staged = layout.root().join("staged");
    for i in 0..n {
        let tag = staged.join(format!("build-{i:06}"));
        fs::create_dir_all(tag.join("current")).unwrap();
        fs::write(tag.join("current/link"), "sha256:x").unwrap();
        assert!(trash.take(&tag).unwrap());
    }
    let (emptied, grew) = heap_growth(|| empty_all(&layout, None, &AtomicBool::new(false)));
    assert_eq!(emptied.removed, 3 * n as u64 + 1, "link, current and the tag's directory each, then the run's directory: {emptied:?}");
    assert_eq!(emptied.left, 0);
    assert!(fs::read_dir(trash_root(&layout)).unwrap().next().is_none(), "the trash is empty");
    // One entry per item would be ≥ 100 bytes each (its path and name): 2 MB here.
    assert!(grew < 256 * 1024, "emptying {n} entries grew the heap by {grew} bytes");
}

#[test]
fn a_real_prune_of_many_repositories_holds_no_list_per_repository() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // A depth level of 2,000 repositories was pruned side by side, every part keeping up to
    // 1,000 removed paths until all were merged (of which the report keeps 1,000 in all).
    let (repos, per_repo) = (600, 20);
    let deleted: Vec<Digest> = (0..per_repo).map(|i| Digest::of(format!("deleted-{i}").as_bytes())).collect();
    let names: Vec<String> = (0..repos).map(|i| format!("team/app-{i:04}")).collect();
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    for name in &names {
        for d in &deleted {
            fs::create_dir_all(layout.revisions(name).join(d.hex())).unwrap();
        }
    }
    let repositories: BTreeMap<String, Changed> =
        names.iter().map(|n| (n.clone(), Changed { revisions: deleted.clone(), ..Default::default() })).collect();
    let opts = PruneOptions { scope: PruneScope::Targeted { repositories, blobs: Vec::new(), litter_budget: 0 }, ..Default::default() };
    let (report, grew) = heap_growth(|| prune(&layout, &opts));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.empty_revisions, repos * per_repo);
    assert_eq!(report.removed.len() + report.removed_not_listed, repos * per_repo);
    for name in &names {
        assert!(fs::read_dir(layout.revisions(name)).unwrap().next().is_none(), "{name}");
    }
    // The report's own list is 1,000 paths (~150 KB with their allocations); every removed
    // path held until the merge was 12,000 (~2 MB).
    let listed: usize = report.removed.iter().map(|p| p.capacity() + 24).sum();
    assert!(grew < listed + 768 * 1024, "pruning {} revisions grew the heap by {grew} bytes (the report lists {listed})", repos * per_repo);
}
