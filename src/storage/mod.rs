//! The registry's filesystem storage: its layout, snapshots of it (or of the API), pruning
//! GC's litter, and measuring its size.

pub mod api;
pub mod blobs;
pub mod entry;
pub mod layout;
pub mod prune;
pub mod read;
pub mod snapshot;
pub mod trash;
pub mod usage;

pub use layout::Layout;
pub use read::read_storage;
pub use snapshot::{Content, Manifest, Repository, Snapshot, Tag};

/// `work` on every item by up to `workers` threads, each taking the next item left; the
/// results come back in the items' order, so nothing depends on the scheduling. (The disk
/// serves many small metadata operations side by side far faster than one after another.)
pub(crate) fn side_by_side<I: Sync, T: Send>(workers: usize, items: &[I], work: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, work(item)));
                    }
                    out
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().expect("a storage worker panicked")).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}
