//! The sweep's own memory: its peak (reported), and giving back what a phase freed so the
//! next phase does not grow on top of it.

/// Peak resident set size of this process, from /proc (0 where unavailable).
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:").map_or(0, |kb| kb * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// Returns the memory `phase` freed to the system. glibc keeps freed memory in the arena of
/// the thread that freed it; the snapshot's readers leave ~30 MB there at 200,000 tags, on
/// top of which the deletes and the collector's output would otherwise grow the peak.
pub fn give_back_freed(phase: &str) {
    let before = status_kib("VmRSS:");
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims glibc's own arenas, under their locks.
    unsafe {
        nix::libc::malloc_trim(0);
    }
    let after = status_kib("VmRSS:");
    tracing::debug!(phase, rss_before_kib = before, rss_after_kib = after, "freed memory given back");
}
