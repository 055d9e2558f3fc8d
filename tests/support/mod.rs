//! Shared by the integration tests (each test file uses part of it).
#![allow(dead_code)]

use std::sync::Once;

/// The tests use the real registry and skopeo; install them from the system packages when
/// missing (CI runs as root), once per test binary.
pub fn ensure_registry_installed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if regsweep::maintenance::instance::find_registry_bin(None).is_ok() && which("skopeo") {
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-test-deps.sh");
        let status = std::process::Command::new("bash").arg(script).status().expect("run the install script");
        assert!(status.success(), "installing docker-registry and skopeo failed; run `bash scripts/install-test-deps.sh` as root");
    });
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}
