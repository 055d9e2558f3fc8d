//! A `registry serve` process: the sweep's private instance, and the registry of the demo and
//! the tests. Its environment is cleared so stray `REGISTRY_*` variables cannot change it (a
//! leftover `REGISTRY_STORAGE_DELETE_ENABLED` or read-only switch would silently change what
//! the instance does), and it dies with its parent, so a killed sweep never leaves a
//! delete-enabled registry running.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long `registry serve` may take to answer `GET /v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it may take to exit after SIGTERM before it is killed: longer than the private
/// instance's `http.draintimeout`, so a graceful drain is never cut short.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "no registry binary found (looked for `registry` and `docker-registry` on PATH and /usr/bin/docker-registry); install it (Debian/Ubuntu: `apt-get install docker-registry`) or pass its path with --registry-bin"
    )]
    NotFound,
    #[error("registry binary {0} does not exist or is not executable; fix --registry-bin")]
    NotExecutable(PathBuf),
    #[error("cannot start {bin}: {cause}")]
    Spawn { bin: PathBuf, cause: String },
    #[error("the registry at {addr} did not become ready within {secs}s; its log ends with:\n{log}")]
    NotReady { addr: SocketAddr, secs: u64, log: String },
}

/// The registry binary: the explicit one, else `registry` (the upstream image's name) or
/// `docker-registry` (Debian's) on PATH, else Debian's fixed path.
pub fn find_registry_bin(explicit: Option<&Path>) -> Result<PathBuf, InstanceError> {
    if let Some(p) = explicit {
        return if is_executable(p) { Ok(p.to_path_buf()) } else { Err(InstanceError::NotExecutable(p.to_path_buf())) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["registry", "docker-registry"] {
        if let Some(found) = std::env::split_paths(&path).map(|dir| dir.join(name)).find(|c| is_executable(c)) {
            return Ok(found);
        }
    }
    let debian = Path::new("/usr/bin/docker-registry");
    if is_executable(debian) { Ok(debian.to_path_buf()) } else { Err(InstanceError::NotFound) }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A free TCP port on 127.0.0.1 (the OS picks one; the listener is closed at once, so another
/// process could take it first — callers that care retry with a new one).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind an ephemeral port on 127.0.0.1")
}

/// A command with a cleared environment plus PATH and the given variables, which receives
/// SIGTERM when the thread that started it dies (Linux parent-death signal). Used for
/// `registry serve` and `registry garbage-collect` alike.
pub fn controlled_command(bin: &Path, env: &[(String, String)]) -> tokio::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    // Its own process group, so stopping it stops what it started too (a wrapper script
    // passed as --registry-bin), and a terminal's Ctrl-C reaches regsweep alone.
    cmd.process_group(0);
    // The parent-death signal is only armed once the child has set it: a parent killed
    // between fork and prctl would leave the child running (a delete-enabled registry with
    // no auth), so the child checks that its parent is still the one that forked it.
    let parent = nix::unistd::getpid();
    // Fault injection for the tests: widens the window between fork and prctl, where a
    // parent killed by SIGKILL used to leave its child running.
    let delay_us: u32 =
        std::env::var("REGSWEEP_TEST_SPAWN_DELAY_MS").ok().and_then(|v| v.parse::<u32>().ok()).map_or(0, |ms| ms.saturating_mul(1000));
    // SAFETY: the closure runs between fork and exec; usleep, prctl(PR_SET_PDEATHSIG) and
    // getppid are async-signal-safe syscalls, and the error path allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if delay_us > 0 {
                nix::libc::usleep(delay_us);
            }
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
    tokio::process::Command::from(cmd)
}

/// A running `registry serve`. Killed (SIGKILL) when dropped; [`RegistryProcess::stop`] is
/// the graceful way.
pub struct RegistryProcess {
    child: Option<tokio::process::Child>,
    addr: SocketAddr,
    /// `https` when the config serves TLS (found out while waiting for it to be ready).
    scheme: &'static str,
}

impl RegistryProcess {
    /// Starts `<bin> serve <config>` with only PATH and `env` in its environment, output to
    /// `log_file` (appended) or nowhere, and waits until `GET /v2/` answers 200 or 401.
    pub async fn start(
        bin: &Path,
        config: &Path,
        env: Vec<(String, String)>,
        addr: SocketAddr,
        log_file: Option<PathBuf>,
    ) -> Result<Self, InstanceError> {
        let spawn_error = |cause: String| InstanceError::Spawn { bin: bin.to_path_buf(), cause };
        let (out, err) = match &log_file {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| spawn_error(format!("log file {}: {e}", path.display())))?;
                let f2 = f.try_clone().map_err(|e| spawn_error(e.to_string()))?;
                (Stdio::from(f), Stdio::from(f2))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = controlled_command(bin, &env)
            .arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_error(e.to_string()))?;
        let mut process = RegistryProcess { child: Some(child), addr, scheme: "http" };
        super::interrupt::register_group(process.pid());
        // Names only: values may hold secrets (REGISTRY_HTTP_SECRET, credentials).
        let env_names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        tracing::debug!(bin = %bin.display(), config = %config.display(), %addr, pid = process.pid(), env = ?env_names, "registry starting");
        match process.wait_ready().await {
            Ok(()) => {
                tracing::info!(%addr, pid = process.pid(), "registry ready");
                Ok(process)
            }
            Err(why) => {
                process.kill_now();
                let log = log_file.map(|p| log_tail(&p, 20)).unwrap_or_else(|| "(no log file)".into());
                tracing::warn!(%addr, why, "registry did not become ready");
                Err(InstanceError::NotReady { addr, secs: READY_TIMEOUT.as_secs(), log: format!("{why}\n{log}") })
            }
        }
    }

    /// Polls `GET /v2/` until it answers, the process exits, or the time is up. A registry
    /// configured with TLS answers plain HTTP with 400 "Client sent an HTTP request to an
    /// HTTPS server"; then the probe (which sends no credentials) switches to HTTPS and trusts
    /// whatever certificate it is shown.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .no_proxy()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        loop {
            if let Ok(resp) = http.get(format!("{}/v2/", self.url())).send().await {
                let status = resp.status();
                if status.is_success() || status == reqwest::StatusCode::UNAUTHORIZED {
                    return Ok(());
                }
                if status == reqwest::StatusCode::BAD_REQUEST
                    && self.scheme == "http"
                    && resp.text().await.unwrap_or_default().contains("HTTPS")
                {
                    self.scheme = "https";
                    continue;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("the registry exited ({status})"));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err("no answer from GET /v2/".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:<port>` (`https://` when the config serves TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM to its process group, then SIGKILL after [`STOP_TIMEOUT`]; returns once the
    /// process is gone. The group is killed in the end either way, so nothing it started
    /// outlives it.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id().unwrap_or(0);
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(_) => tracing::info!(pid, addr = %self.addr, "registry stopped"),
            Err(_) => {
                tracing::warn!(pid, addr = %self.addr, secs = STOP_TIMEOUT.as_secs(), "registry ignored SIGTERM; killing it");
                let _ = child.kill().await;
            }
        }
        super::interrupt::signal_group(pid, Signal::SIGKILL);
        super::interrupt::unregister_group(pid);
    }

    /// SIGKILL to the whole group without waiting; never panics.
    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().unwrap_or(0);
            super::interrupt::signal_group(pid, Signal::SIGKILL);
            super::interrupt::unregister_group(pid);
            let _ = child.start_kill();
        }
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The last `lines` lines of a log file, for error messages.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_binary_must_exist() {
        let err = find_registry_bin(Some(Path::new("/nonexistent/registry"))).unwrap_err();
        assert!(err.to_string().contains("--registry-bin"), "{err}");
        assert!(InstanceError::NotFound.to_string().contains("apt-get install docker-registry"));
    }

    #[test]
    fn log_tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&p, 2), "b\nc");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }

    #[tokio::test]
    async fn a_registry_that_cannot_start_reports_its_log() {
        let Ok(bin) = find_registry_bin(None) else { return };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, "version: 0.1\nstorage: {not-a-driver: {}}\n").unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let err = RegistryProcess::start(&bin, &config, Vec::new(), addr, Some(dir.path().join("log"))).await.err().expect("must fail");
        assert!(matches!(err, InstanceError::NotReady { .. }), "{err}");
        assert!(err.to_string().contains("exited"), "{err}");
    }
}
