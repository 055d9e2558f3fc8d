//! SIGTERM and SIGINT during a sweep. The first signal asks the sweep to stop cleanly: no new
//! delete starts, in-flight ones finish, the private instance and garbage-collect are stopped,
//! temporary files are removed, and the run exits non-zero saying where it stopped. A second
//! signal aborts at once, still killing every child process group first.
//!
//! Installing the handlers also matters for a container's PID 1, which the kernel never
//! signals with a default action: without a handler, SIGTERM is ignored until SIGKILL.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::Notify;

/// Process groups of running children (the private instance, garbage-collect) and temporary
/// directories, for the abort path, which has no time for destructors.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

pub fn register_group(pgid: u32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).insert(pgid as i32);
}

pub fn unregister_group(pgid: u32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).remove(&(pgid as i32));
}

pub fn register_temp_dir(path: PathBuf) {
    TEMP_DIRS.lock().unwrap_or_else(|e| e.into_inner()).push(path);
}

/// Sends `signal` to a child's whole process group (a wrapper script and what it started).
pub fn signal_group(pgid: u32, signal: Signal) {
    if pgid != 0 {
        let _ = killpg(Pid::from_raw(pgid as i32), signal);
    }
}

/// Whether a stop was asked for, and by which signal. Cheap to clone.
#[derive(Clone, Default)]
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicI32>,
    notify: Arc<Notify>,
}

impl Interrupt {
    /// An interrupt nothing fires (library callers that handle signals themselves).
    pub fn none() -> Self {
        Interrupt::default()
    }

    /// Installs SIGTERM and SIGINT handlers; needs a Tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let this = Interrupt::default();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let handle = this.clone();
        tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    _ = term.recv() => Signal::SIGTERM,
                    _ = int.recv() => Signal::SIGINT,
                };
                if handle.stop.swap(true, Ordering::SeqCst) {
                    abort(sig);
                }
                handle.signal.store(sig as i32, Ordering::SeqCst);
                tracing::warn!(signal = sig.as_str(), "stopping: no new deletes; in-flight work finishes (a second signal aborts at once)");
                handle.notify.notify_waiters();
            }
        });
        Ok(this)
    }

    pub fn is_set(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The flag itself, for synchronous loops (prune).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn signal(&self) -> Option<Signal> {
        Signal::try_from(self.signal.load(Ordering::SeqCst)).ok()
    }

    /// Resolves once a stop is asked for.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// The second signal: kill every child group, remove temporary files, exit now.
fn abort(sig: Signal) -> ! {
    for pgid in GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
    }
    for dir in TEMP_DIRS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = std::fs::remove_dir_all(dir);
    }
    eprintln!("error: aborted by a second {}; the next run finishes what this one started", sig.as_str());
    std::process::exit(128 + sig as i32)
}
