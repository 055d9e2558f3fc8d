//! The registry's configuration as the sweep Job sees it: the YAML file plus the process's
//! `REGISTRY_*` environment overrides (the Job is a clone of the registry pod, so it carries
//! the same file and the same variables), and the configuration derived from it for the
//! private instance that performs the deletions.
//!
//! The file is kept as a `serde_yaml::Value` tree rather than typed structs: the registry
//! accepts many sections regsweep never needs to understand, and the private instance must
//! keep the storage section exactly as written (driver parameters included).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

/// Where the filesystem driver stores data when `rootdirectory` is not set (distribution's
/// `defaultRootDirectory`).
pub const DEFAULT_ROOT: &str = "/var/lib/registry";

/// Keys of the `storage` section that configure the registry, not a storage driver
/// (distribution's `Storage.Type()` skips the same ones; `tag` is 3.x).
const NOT_DRIVERS: [&str; 5] = ["maintenance", "cache", "delete", "redirect", "tag"];

/// Storage variables that must not reach the private instance: read-only mode and upload
/// purging (maintenance), the delete switch it must have on, and a shared (redis) cache that
/// would hand stale descriptors to, or take them from, the frozen public registry.
const PRIVATE_DROPPED_STORAGE_VARS: [&str; 3] = ["REGISTRY_STORAGE_MAINTENANCE", "REGISTRY_STORAGE_DELETE", "REGISTRY_STORAGE_CACHE"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the registry configuration {path}: {cause}")]
    Read { path: PathBuf, cause: String },
    #[error("the registry configuration {path} is not valid: {cause}")]
    Parse { path: PathBuf, cause: String },
    #[error("the environment variable {name} is not valid YAML: {cause}")]
    Env { name: String, cause: String },
    #[error(
        "the registry uses the `{driver}` storage driver; regsweep reads the storage's filesystem layout and supports only the `filesystem` driver (s3, gcs, azure, swift, oss, inmemory are not supported; `regsweep plan --url` previews through the API)"
    )]
    UnsupportedDriver { driver: String },
    #[error(
        "the registry configuration {path} (with its REGISTRY_STORAGE* variables) configures {found}; the registry needs exactly one storage driver"
    )]
    NoDriver { path: PathBuf, found: String },
    #[error("cannot write the private instance's configuration {path}: {cause}")]
    Write { path: PathBuf, cause: String },
}

/// The registry's configuration file and its `REGISTRY_*` variables.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    path: PathBuf,
    yaml: Value,
    /// `REGISTRY_*` variables only, sorted by name: the registry applies them in lexical order,
    /// so `REGISTRY_STORAGE` replaces the section before `REGISTRY_STORAGE_FILESYSTEM_*` edit it.
    env: Vec<(String, String)>,
    /// The `storage` section with `REGISTRY_STORAGE` (the whole section) applied.
    storage_base: Mapping,
    /// The section with the driver-level overrides applied too: what the registry uses.
    storage: Mapping,
}

/// The private instance's configuration file content and environment.
#[derive(Clone, Debug)]
pub struct PrivateConfig {
    pub yaml: String,
    /// The same for `garbage-collect`, at log level info: its per-blob "Deleting blob" lines
    /// are how the report counts what it deleted.
    pub gc_yaml: String,
    pub env: Vec<(String, String)>,
}

impl PrivateConfig {
    /// Writes `private-registry.yml` into `dir` and returns its path.
    pub fn write_to(&self, dir: &Path) -> Result<PathBuf, ConfigError> {
        Self::write(&dir.join("private-registry.yml"), &self.yaml)
    }

    /// Writes `garbage-collect.yml` into `dir` and returns its path.
    pub fn write_gc_to(&self, dir: &Path) -> Result<PathBuf, ConfigError> {
        Self::write(&dir.join("garbage-collect.yml"), &self.gc_yaml)
    }

    fn write(path: &Path, yaml: &str) -> Result<PathBuf, ConfigError> {
        std::fs::write(path, yaml).map_err(|e| ConfigError::Write { path: path.to_path_buf(), cause: e.to_string() })?;
        Ok(path.to_path_buf())
    }
}

fn key(s: &str) -> Value {
    Value::String(s.into())
}

fn mapping(entries: &[(&str, Value)]) -> Value {
    Value::Mapping(entries.iter().map(|(k, v)| (key(k), v.clone())).collect())
}

/// The `storage` value as distribution reads it: a mapping, or a bare driver name.
fn storage_mapping(v: &Value) -> Option<Mapping> {
    match v {
        Value::Mapping(m) => Some(m.clone()),
        Value::String(driver) => Some(Mapping::from_iter([(key(driver), Value::Mapping(Mapping::new()))])),
        Value::Null => Some(Mapping::new()),
        _ => None,
    }
}

/// The key of `map` that `upper` names, compared case-insensitively as distribution does.
fn find_key(map: &Mapping, upper: &str) -> Option<Value> {
    map.keys().find(|k| k.as_str().is_some_and(|s| s.eq_ignore_ascii_case(upper))).cloned()
}

fn parse_env(name: &str, value: &str) -> Result<Value, ConfigError> {
    serde_yaml::from_str(value).map_err(|e| ConfigError::Env { name: name.into(), cause: e.to_string() })
}

/// Whether a variable may reach the private instance: storage settings (driver parameters)
/// only. Auth, TLS, notifications, proxy, redis, log, http, health and the rest are dropped.
/// `REGISTRY_STORAGE` itself is folded into the file instead: it replaces the whole section,
/// which would wipe the delete and cache settings written there.
fn passes_to_private(name: &str) -> bool {
    name.starts_with("REGISTRY_STORAGE_") && !PRIVATE_DROPPED_STORAGE_VARS.iter().any(|p| name.starts_with(p))
}

impl RegistryConfig {
    /// Reads `path` and keeps the `REGISTRY_*` variables of `env` (usually `std::env::vars()`).
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let parse_error = |cause: String| ConfigError::Parse { path: path.into(), cause };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.into(), cause: e.to_string() })?;
        let yaml: Value = serde_yaml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        if !yaml.is_mapping() {
            return Err(parse_error("the top level is not a mapping of sections (version, storage, http, …)".into()));
        }
        let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("REGISTRY_")).collect();
        env.sort();
        let storage_value = yaml.get("storage").cloned().unwrap_or(Value::Null);
        let mut storage_base =
            storage_mapping(&storage_value).ok_or_else(|| parse_error("`storage` is neither a mapping nor a driver name".into()))?;
        if let Some((name, value)) = env.iter().find(|(k, _)| k == "REGISTRY_STORAGE") {
            storage_base = storage_mapping(&parse_env(name, value)?)
                .ok_or_else(|| ConfigError::Env { name: name.clone(), cause: "neither a mapping nor a driver name".into() })?;
        }
        let mut storage = storage_base.clone();
        for (name, value) in &env {
            let Some(rest) = name.strip_prefix("REGISTRY_STORAGE_") else { continue };
            apply_storage_override(&mut storage, rest, parse_env(name, value)?);
        }
        tracing::debug!(config = %path.display(), vars = env.len(), "registry configuration loaded");
        Ok(RegistryConfig { path: path.into(), yaml, env, storage_base, storage })
    }

    /// The storage driver's name (from the file or the environment), if exactly one is set.
    fn driver(&self) -> Result<(String, Option<&Value>), ConfigError> {
        let drivers: Vec<(&str, &Value)> =
            self.storage.iter().filter_map(|(k, v)| k.as_str().map(|k| (k, v))).filter(|(k, _)| !NOT_DRIVERS.contains(k)).collect();
        match drivers.as_slice() {
            [(name, params)] => Ok((name.to_string(), Some(*params))),
            [] => Err(ConfigError::NoDriver { path: self.path.clone(), found: "no storage driver".into() }),
            many => {
                let names: Vec<&str> = many.iter().map(|(k, _)| *k).collect();
                Err(ConfigError::NoDriver { path: self.path.clone(), found: format!("several storage drivers ({})", names.join(", ")) })
            }
        }
    }

    /// Whether the public registry caches blob descriptors in Redis (`storage.cache.
    /// blobdescriptor: redis`, or its variable). Unlike the in-memory cache, that cache
    /// survives the restart after garbage collection and keeps describing deleted blobs.
    pub fn uses_redis_cache(&self) -> bool {
        let cache = find_key(&self.storage, "CACHE").and_then(|k| self.storage.get(&k).cloned());
        let descriptor =
            cache.as_ref().and_then(|c| c.as_mapping()).and_then(|m| find_key(m, "BLOBDESCRIPTOR").and_then(|k| m.get(&k).cloned()));
        descriptor.as_ref().and_then(Value::as_str).is_some_and(|d| d.eq_ignore_ascii_case("redis"))
    }

    /// The storage root directory the registry uses: `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`,
    /// else `storage.filesystem.rootdirectory`, else the driver's default `/var/lib/registry`.
    /// Any driver other than `filesystem` is an error: regsweep reads the filesystem layout.
    pub fn storage_root(&self) -> Result<PathBuf, ConfigError> {
        let (driver, params) = self.driver()?;
        if driver != "filesystem" {
            return Err(ConfigError::UnsupportedDriver { driver });
        }
        let root = params.and_then(|p| p.get("rootdirectory")).and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_ROOT);
        Ok(PathBuf::from(root))
    }

    /// The configuration of the private instance the sweep deletes through, on `addr`
    /// (loopback): the same storage (driver and parameters as written), with deletes
    /// enabled, read-only mode and upload purging off (purging would race the sweep's own
    /// upload pruning), and an in-memory blob-descriptor cache (a shared redis cache must
    /// not learn about, or serve, blobs the public registry will see differently).
    ///
    /// Everything else is rebuilt rather than filtered: auth (the sweep sends no
    /// credentials), TLS, `http.host`/`prefix`/`debug`/`net` (the client expects plain
    /// `http://<addr>/v2/`), notifications (deletions are not events for webhooks), proxy
    /// (a pull-through cache refuses deletes), redis, health checks, middleware, reporting
    /// and any section a newer registry adds are left out; the log goes to `warn` without
    /// access logs, so thousands of DELETEs do not flood the instance's log.
    pub fn private_instance(&self, addr: SocketAddr) -> PrivateConfig {
        let mut storage = self.storage_base.clone();
        for k in ["maintenance", "cache", "delete", "redirect"] {
            storage.remove(key(k));
        }
        storage.insert(key("delete"), mapping(&[("enabled", Value::Bool(true))]));
        storage.insert(key("cache"), mapping(&[("blobdescriptor", key("inmemory"))]));
        storage.insert(
            key("maintenance"),
            mapping(&[
                ("uploadpurging", mapping(&[("enabled", Value::Bool(false))])),
                ("readonly", mapping(&[("enabled", Value::Bool(false))])),
            ]),
        );
        let version = self.yaml.get("version").filter(|v| v.is_string()).cloned().unwrap_or_else(|| key("0.1"));
        let yaml = mapping(&[
            ("version", version),
            ("log", mapping(&[("level", key("warn")), ("accesslog", mapping(&[("disabled", Value::Bool(true))]))])),
            ("storage", Value::Mapping(storage)),
            // On SIGTERM (also what a dying sweep sends) finish in-flight DELETEs first.
            ("http", mapping(&[("addr", key(&addr.to_string())), ("draintimeout", key("5s"))])),
        ]);
        let env: Vec<(String, String)> = self.env.iter().filter(|(k, _)| passes_to_private(k)).cloned().collect();
        let dropped: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).filter(|k| !passes_to_private(k)).collect();
        tracing::debug!(%addr, passed = ?env.iter().map(|(k, _)| k).collect::<Vec<_>>(), ?dropped, "private instance configuration derived");
        let mut gc = yaml.clone();
        gc["log"]["level"] = key("info");
        let text = |v: &Value| serde_yaml::to_string(v).expect("a YAML value serializes");
        PrivateConfig { yaml: text(&yaml), gc_yaml: text(&gc), env }
    }
}

/// Applies `REGISTRY_STORAGE_<rest>` the way distribution's parser does for the two levels
/// it honours in the storage section: `<DRIVER>` replaces a driver's parameters,
/// `<DRIVER>_<KEY>` sets one parameter. An existing driver key is found case-insensitively;
/// new keys are created lower-case (an existing key in another case stays, as it does in the
/// registry). Deeper paths land in maps the registry itself ignores, so they are skipped.
fn apply_storage_override(storage: &mut Mapping, rest: &str, value: Value) {
    match rest.split_once('_') {
        None => {
            storage.insert(key(&rest.to_ascii_lowercase()), value);
        }
        Some((driver, param)) if !param.contains('_') => {
            let k = find_key(storage, driver)
                .filter(|k| storage.get(k).is_some_and(|v| !v.is_null()))
                .unwrap_or_else(|| key(&driver.to_ascii_lowercase()));
            let params = storage.entry(k).or_insert(Value::Null);
            if !params.is_mapping() {
                *params = Value::Mapping(Mapping::new());
            }
            params.as_mapping_mut().expect("a mapping").insert(key(&param.to_ascii_lowercase()), value);
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's `/etc/docker/registry/config.yml` (docker-registry 2.8.2), plus TLS,
    /// notifications, redis and read-only as a production registry might have them.
    const DEBIAN: &str = "version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: redis
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: false
  maintenance:
    readonly:
      enabled: true
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
http:
  addr: :5000
  secret: topsecret
  prefix: /registry
  tls:
    certificate: /c.pem
    key: /k.pem
  debug:
    addr: :5001
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
redis:
  addr: redis:6379
notifications:
  endpoints:
    - name: hook
      url: http://example/hook
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

    /// The upstream `registry:2` image's `/etc/docker/registry/config.yml`.
    const UPSTREAM_IMAGE: &str = "version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

    fn try_load(text: &str, env: &[(&str, &str)]) -> Result<RegistryConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.yml");
        std::fs::write(&p, text).unwrap();
        RegistryConfig::load(&p, env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn load(text: &str, env: &[(&str, &str)]) -> RegistryConfig {
        try_load(text, env).unwrap()
    }

    fn private(c: &RegistryConfig) -> (Value, Vec<(String, String)>) {
        let p = c.private_instance("127.0.0.1:5999".parse().unwrap());
        (serde_yaml::from_str(&p.yaml).unwrap(), p.env)
    }

    #[test]
    fn upstream_image_default() {
        let c = load(UPSTREAM_IMAGE, &[("PATH", "/bin"), ("REGISTRY_HTTP_ADDR", ":6000")]);
        assert_eq!(c.storage_root().unwrap(), PathBuf::from("/var/lib/registry"));
        let (v, env) = private(&c);
        assert_eq!(v["http"]["addr"], "127.0.0.1:5999");
        assert!(v["http"].get("headers").is_none() && v.get("health").is_none());
        assert_eq!(v["storage"]["filesystem"]["rootdirectory"], "/var/lib/registry");
        assert_eq!(v["storage"]["delete"]["enabled"], true);
        assert_eq!(v["log"]["level"], "warn");
        assert_eq!(v["version"], "0.1");
        assert!(env.is_empty(), "{env:?}");
    }

    #[test]
    fn private_instance_strips_what_would_block_or_leak() {
        let c = load(
            DEBIAN,
            &[
                ("REGISTRY_STORAGE_MAINTENANCE_READONLY", r#"{"enabled":true}"#),
                ("REGISTRY_AUTH", "htpasswd"),
                ("REGISTRY_HTTP_SECRET", "s"),
                ("REGISTRY_HTTP_TLS_CERTIFICATE", "/c.pem"),
                ("REGISTRY_NOTIFICATIONS_ENDPOINTS", "[]"),
                ("REGISTRY_REDIS_ADDR", "redis:6379"),
                ("REGISTRY_LOG_LEVEL", "debug"),
                ("REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS", "50"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
                ("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "redis"),
                ("HOME", "/root"),
            ],
        );
        assert_eq!(c.storage_root().unwrap(), PathBuf::from("/var/lib/docker-registry"));
        let (v, env) = private(&c);
        assert_eq!(v["http"], mapping(&[("addr", key("127.0.0.1:5999")), ("draintimeout", key("5s"))]));
        for section in ["auth", "notifications", "health", "redis", "proxy"] {
            assert!(v.get(section).is_none(), "{section} must be stripped");
        }
        assert_eq!(v["storage"]["delete"]["enabled"], true);
        assert_eq!(v["storage"]["maintenance"]["readonly"]["enabled"], false);
        assert_eq!(v["storage"]["maintenance"]["uploadpurging"]["enabled"], false);
        assert_eq!(v["storage"]["cache"], mapping(&[("blobdescriptor", key("inmemory"))]));
        assert_eq!(v["storage"]["filesystem"]["rootdirectory"], "/var/lib/docker-registry");
        assert_eq!(v["log"]["level"], "warn");
        assert_eq!(env, vec![("REGISTRY_STORAGE_FILESYSTEM_MAXTHREADS".to_string(), "50".to_string())]);
    }

    #[test]
    fn a_redis_blob_descriptor_cache_is_recognised_in_the_file_and_the_environment() {
        assert!(load(DEBIAN, &[]).uses_redis_cache());
        assert!(!load(UPSTREAM_IMAGE, &[]).uses_redis_cache());
        assert!(load(UPSTREAM_IMAGE, &[("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "redis")]).uses_redis_cache());
        assert!(!load(DEBIAN, &[("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")]).uses_redis_cache());
    }

    #[test]
    fn storage_root_follows_the_environment() {
        let file = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n";
        let c = load(file, &[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data")]);
        assert_eq!(c.storage_root().unwrap(), PathBuf::from("/data"));
        // The whole-driver form replaces the driver's parameters.
        let c = load(file, &[("REGISTRY_STORAGE_FILESYSTEM", "{rootdirectory: /srv}")]);
        assert_eq!(c.storage_root().unwrap(), PathBuf::from("/srv"));
        // The driver's default when no root is given.
        assert_eq!(load("version: 0.1\nstorage:\n  filesystem:\n", &[]).storage_root().unwrap(), PathBuf::from(DEFAULT_ROOT));
        assert_eq!(load("version: 0.1\nstorage: filesystem\n", &[]).storage_root().unwrap(), PathBuf::from(DEFAULT_ROOT));
    }

    #[test]
    fn registry_storage_replaces_the_section_and_is_folded_into_the_private_file() {
        let c = load(UPSTREAM_IMAGE, &[("REGISTRY_STORAGE", "filesystem"), ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data")]);
        assert_eq!(c.storage_root().unwrap(), PathBuf::from("/data"));
        let (v, env) = private(&c);
        assert_eq!(v["storage"]["filesystem"], Value::Mapping(Mapping::new()));
        assert_eq!(v["storage"]["delete"]["enabled"], true);
        assert_eq!(env, vec![("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".to_string(), "/data".to_string())]);
    }

    #[test]
    fn other_drivers_are_refused_by_name() {
        let s3 = load("version: 0.1\nstorage:\n  s3:\n    bucket: b\n  cache:\n    blobdescriptor: inmemory\n", &[]);
        let err = s3.storage_root().unwrap_err().to_string();
        assert!(err.contains("`s3`") && err.contains("only the `filesystem` driver"), "{err}");
        let gcs = load(UPSTREAM_IMAGE, &[("REGISTRY_STORAGE", "gcs")]);
        assert!(matches!(gcs.storage_root(), Err(ConfigError::UnsupportedDriver { driver }) if driver == "gcs"));
        let both = load(UPSTREAM_IMAGE, &[("REGISTRY_STORAGE_AZURE_ACCOUNTNAME", "a")]);
        assert!(both.storage_root().unwrap_err().to_string().contains("several storage drivers (filesystem, azure)"));
        let none = load("version: 0.1\nhttp:\n  addr: :5000\n", &[]);
        assert!(none.storage_root().unwrap_err().to_string().contains("no storage driver"));
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let err = try_load("version: 0.1\nstorage: [\n", &[]).unwrap_err().to_string();
        assert!(err.contains("config.yml") && err.contains("line"), "{err}");
        let err = try_load("- a list\n", &[]).unwrap_err().to_string();
        assert!(err.contains("config.yml") && err.contains("top level"), "{err}");
        let err = try_load("version: 0.1\nstorage: 3\n", &[]).unwrap_err().to_string();
        assert!(err.contains("`storage`"), "{err}");
        let err = try_load(UPSTREAM_IMAGE, &[("REGISTRY_STORAGE", "{a: [")]).unwrap_err().to_string();
        assert!(err.contains("REGISTRY_STORAGE "), "{err}");
        let err = RegistryConfig::load(Path::new("/nonexistent/config.yml"), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/config.yml"), "{err}");
    }
}
