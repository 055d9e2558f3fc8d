//! The registry's configuration as the sweep sees it: the YAML file plus the `REGISTRY_*`
//! environment overrides, and the derived configuration of the private instance.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the registry configuration {path}: {cause}")]
    Read { path: PathBuf, cause: String },
    #[error("the registry configuration {path} is not valid YAML: {cause}")]
    Parse { path: PathBuf, cause: String },
    #[error("the registry uses the `{driver}` storage driver; regsweep reads the filesystem layout and supports only `filesystem` (use `plan --url` for an API-only preview)")]
    UnsupportedDriver { driver: String },
    #[error("the registry configuration {path} sets no storage.filesystem.rootdirectory (nor does REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY)")]
    NoRoot { path: PathBuf },
    #[error("cannot write the private instance's configuration: {0}")]
    Write(String),
}

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    path: PathBuf,
    yaml: Value,
    env: Vec<(String, String)>,
}

/// The private instance's configuration file content and environment.
#[derive(Clone, Debug)]
pub struct PrivateConfig {
    pub yaml: String,
    pub env: Vec<(String, String)>,
}

impl PrivateConfig {
    pub fn write_to(&self, dir: &Path) -> Result<PathBuf, ConfigError> {
        let path = dir.join("private-registry.yml");
        std::fs::write(&path, &self.yaml).map_err(|e| ConfigError::Write(e.to_string()))?;
        Ok(path)
    }
}

/// Environment variables of the public registry that must not reach the private instance:
/// read-only mode, delete switches, shared caches, and everything that is not storage.
fn passes_to_private(name: &str) -> bool {
    name.starts_with("REGISTRY_STORAGE")
        && !["REGISTRY_STORAGE_MAINTENANCE", "REGISTRY_STORAGE_DELETE", "REGISTRY_STORAGE_CACHE", "REGISTRY_STORAGE_REDIRECT"]
            .iter()
            .any(|p| name.starts_with(p))
}

fn map(v: &mut Value) -> &mut Mapping {
    if !v.is_mapping() {
        *v = Value::Mapping(Mapping::new());
    }
    v.as_mapping_mut().expect("mapping")
}

fn key(s: &str) -> Value {
    Value::String(s.into())
}

impl RegistryConfig {
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.into(), cause: e.to_string() })?;
        let yaml: Value = serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), cause: e.to_string() })?;
        if !yaml.is_mapping() {
            return Err(ConfigError::Parse { path: path.into(), cause: "the top level is not a mapping".into() });
        }
        let env = env.into_iter().filter(|(k, _)| k.starts_with("REGISTRY_")).collect();
        Ok(RegistryConfig { path: path.into(), yaml, env })
    }

    fn env(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The storage root directory; only the filesystem driver is supported.
    pub fn storage_root(&self) -> Result<PathBuf, ConfigError> {
        if let Some(root) = self.env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY") {
            return Ok(PathBuf::from(root));
        }
        if let Some(driver) = self.env("REGISTRY_STORAGE").filter(|d| *d != "filesystem") {
            return Err(ConfigError::UnsupportedDriver { driver: driver.into() });
        }
        let storage = self.yaml.get("storage").and_then(Value::as_mapping);
        let drivers = ["s3", "gcs", "azure", "swift", "oss", "inmemory"];
        if let Some(driver) = storage.and_then(|s| drivers.iter().find(|d| s.contains_key(key(d)))) {
            return Err(ConfigError::UnsupportedDriver { driver: driver.to_string() });
        }
        self.yaml
            .get("storage")
            .and_then(|s| s.get("filesystem"))
            .and_then(|f| f.get("rootdirectory"))
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .ok_or_else(|| ConfigError::NoRoot { path: self.path.clone() })
    }

    /// The private instance: same storage, delete enabled, on loopback, with auth, TLS,
    /// notifications, proxy, redis, health checks, debug server and read-only stripped.
    pub fn private_instance(&self, addr: SocketAddr) -> PrivateConfig {
        let mut yaml = self.yaml.clone();
        let root = map(&mut yaml);
        for k in ["auth", "notifications", "proxy", "redis", "health", "middleware", "reporting", "validation"] {
            root.remove(key(k));
        }
        root.insert(key("version"), key("0.1"));
        let mut log = Mapping::new();
        log.insert(key("level"), key("warn"));
        root.insert(key("log"), Value::Mapping(log));
        let mut http = Mapping::new();
        http.insert(key("addr"), key(&addr.to_string()));
        // On SIGTERM (also sent when the sweep dies) finish in-flight DELETEs before exiting.
        http.insert(key("draintimeout"), key("10s"));
        root.insert(key("http"), Value::Mapping(http));
        let storage = map(root.entry(key("storage")).or_insert(Value::Null));
        for k in ["maintenance", "cache", "redirect", "delete"] {
            storage.remove(key(k));
        }
        let mut delete = Mapping::new();
        delete.insert(key("enabled"), Value::Bool(true));
        storage.insert(key("delete"), Value::Mapping(delete));
        let mut cache = Mapping::new();
        cache.insert(key("blobdescriptor"), key("inmemory"));
        storage.insert(key("cache"), Value::Mapping(cache));
        let mut maintenance = Mapping::new();
        let mut purging = Mapping::new();
        purging.insert(key("enabled"), Value::Bool(false));
        maintenance.insert(key("uploadpurging"), Value::Mapping(purging));
        storage.insert(key("maintenance"), Value::Mapping(maintenance));
        let env = self.env.iter().filter(|(k, _)| passes_to_private(k)).cloned().collect();
        PrivateConfig { yaml: serde_yaml::to_string(&yaml).expect("YAML serializes"), env }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: redis\n  filesystem:\n    rootdirectory: /var/lib/docker-registry\n  delete:\n    enabled: false\n  maintenance:\n    readonly:\n      enabled: true\nhttp:\n  addr: :5000\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n  headers:\n    X-Content-Type-Options: [nosniff]\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: /etc/docker/registry\nnotifications:\n  endpoints:\n    - name: hook\n      url: http://example/hook\nhealth:\n  storagedriver:\n    enabled: true\n";

    fn load(text: &str, env: &[(&str, &str)]) -> RegistryConfig {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(&p, text).unwrap();
        RegistryConfig::load(&p, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn private_instance_strips_what_would_block_or_leak() {
        let c = load(DEBIAN, &[("REGISTRY_STORAGE_MAINTENANCE_READONLY", r#"{"enabled":true}"#), ("REGISTRY_AUTH", "htpasswd"), ("REGISTRY_HTTP_SECRET", "s"), ("REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS", "50"), ("REGISTRY_STORAGE_DELETE_ENABLED", "false")]);
        assert_eq!(c.storage_root().unwrap(), PathBuf::from("/var/lib/docker-registry"));
        let p = c.private_instance("127.0.0.1:5999".parse().unwrap());
        let v: Value = serde_yaml::from_str(&p.yaml).unwrap();
        assert_eq!(v["http"]["addr"], "127.0.0.1:5999");
        assert!(v["http"].get("tls").is_none() && v.get("auth").is_none() && v.get("notifications").is_none() && v.get("health").is_none());
        assert_eq!(v["storage"]["delete"]["enabled"], true);
        assert!(v["storage"]["maintenance"].get("readonly").is_none());
        assert_eq!(v["storage"]["cache"]["blobdescriptor"], "inmemory");
        assert_eq!(v["storage"]["filesystem"]["rootdirectory"], "/var/lib/docker-registry");
        assert_eq!(p.env, vec![("REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS".to_string(), "50".to_string())]);
    }

    #[test]
    fn storage_root_from_env_and_unsupported_drivers() {
        let c = load("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n", &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data")]);
        assert_eq!(c.storage_root().unwrap(), PathBuf::from("/data"));
        let s3 = load("version: 0.1\nstorage:\n  s3:\n    bucket: b\n", &[]);
        assert!(s3.storage_root().unwrap_err().to_string().contains("`s3`"));
        assert!(matches!(load("version: 0.1\n", &[]).storage_root(), Err(ConfigError::NoRoot { .. })));
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "storage: [").unwrap();
        assert!(RegistryConfig::load(&bad, Vec::new()).unwrap_err().to_string().contains("bad.yml"));
    }
}
