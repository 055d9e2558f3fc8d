//! A `registry serve` process: the sweep's private instance, and the registry of the demo and
//! the tests. Its environment is cleared so stray `REGISTRY_*` variables cannot change it, and
//! it dies with its parent, so a killed sweep never leaves a delete-enabled registry behind.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("no registry binary found (looked for `registry` and `docker-registry` on PATH); install it (`apt-get install docker-registry`) or pass --registry-bin")]
    NotFound,
    #[error("registry binary {0} does not exist or is not executable")]
    NotExecutable(PathBuf),
    #[error("cannot start {bin}: {cause}")]
    Spawn { bin: PathBuf, cause: String },
    #[error("the registry at {addr} did not become ready within {secs}s; its log ends with:\n{log}")]
    NotReady { addr: SocketAddr, secs: u64, log: String },
}

/// The registry binary: the explicit one, else `registry` or `docker-registry` on PATH.
pub fn find_registry_bin(explicit: Option<&Path>) -> Result<PathBuf, InstanceError> {
    if let Some(p) = explicit {
        return if is_executable(p) { Ok(p.to_path_buf()) } else { Err(InstanceError::NotExecutable(p.to_path_buf())) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["registry", "docker-registry"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    let debian = Path::new("/usr/bin/docker-registry");
    if is_executable(debian) { Ok(debian.to_path_buf()) } else { Err(InstanceError::NotFound) }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A free TCP port on 127.0.0.1 (the OS picks; the listener is closed at once).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind an ephemeral port")
}

/// A base command with a cleared environment plus PATH and the given variables, killed with
/// SIGTERM when this process dies.
pub fn controlled_command(bin: &Path, env: &[(String, String)]) -> tokio::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            if libc_prctl_pdeathsig() != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    tokio::process::Command::from(cmd)
}

fn libc_prctl_pdeathsig() -> i32 {
    const PR_SET_PDEATHSIG: i32 = 1;
    unsafe extern "C" {
        fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    }
    // SAFETY: PR_SET_PDEATHSIG with a valid signal number has no other effect.
    unsafe { prctl(PR_SET_PDEATHSIG, Signal::SIGTERM as u64, 0, 0, 0) }
}

pub struct RegistryProcess {
    child: Option<tokio::process::Child>,
    addr: SocketAddr,
}

impl RegistryProcess {
    /// Starts `<bin> serve <config>` and waits until `GET /v2/` answers (200 or 401).
    pub async fn start(bin: &Path, config: &Path, env: Vec<(String, String)>, addr: SocketAddr, log_file: Option<PathBuf>) -> Result<Self, InstanceError> {
        let (out, err) = match &log_file {
            Some(path) => {
                let f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| InstanceError::Spawn { bin: bin.into(), cause: format!("log file {}: {e}", path.display()) })?;
                let f2 = f.try_clone().map_err(|e| InstanceError::Spawn { bin: bin.into(), cause: e.to_string() })?;
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
            .map_err(|e| InstanceError::Spawn { bin: bin.into(), cause: e.to_string() })?;
        let mut process = RegistryProcess { child: Some(child), addr };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).no_proxy().build().expect("http client");
        let started = Instant::now();
        let limit = Duration::from_secs(15);
        loop {
            if let Ok(resp) = http.get(format!("{}/v2/", process.url())).send().await
                && (resp.status().is_success() || resp.status() == reqwest::StatusCode::UNAUTHORIZED)
            {
                tracing::debug!(addr = %addr, pid = process.pid(), "registry ready");
                return Ok(process);
            }
            let exited = process.child.as_mut().and_then(|c| c.try_wait().ok().flatten()).is_some();
            if exited || started.elapsed() > limit {
                process.kill_now();
                let log = log_file.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
                return Err(InstanceError::NotReady { addr, secs: limit.as_secs(), log: tail.join("\n") });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM, then SIGKILL after 5 s; waits until the process is gone.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}
