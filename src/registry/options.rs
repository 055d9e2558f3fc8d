//! How to reach a registry: credentials, TLS trust, timeouts and how hard to push it.

use std::path::PathBuf;
use std::time::Duration;

/// Connection settings for a [`super::RegistryClient`].
#[derive(Clone)]
pub struct ClientOptions {
    /// Username for HTTP basic auth, and for the token service of a bearer-auth registry.
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of extra CA certificates to trust (a private CA), on top of the system roots.
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate. For lab registries with self-signed certificates only.
    pub insecure_skip_tls_verify: bool,
    /// Per request, including reading the body.
    pub timeout: Duration,
    /// Requests in flight at once for bulk work. The measured ceiling of a registry on two
    /// cores is reached at 4–16 clients, so more only adds load.
    pub concurrency: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            username: None,
            password: None,
            ca_cert: None,
            insecure_skip_tls_verify: false,
            timeout: Duration::from_secs(30),
            concurrency: 16,
        }
    }
}

/// Debug output (and so every log line that prints the options) never shows the password.
impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let o = ClientOptions { username: Some("ci".into()), password: Some("hunter2".into()), ..Default::default() };
        let text = format!("{o:?}");
        assert!(text.contains("ci") && text.contains("redacted") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn defaults_are_sensible() {
        let o = ClientOptions::default();
        assert_eq!((o.concurrency, o.timeout), (16, Duration::from_secs(30)));
        assert!(!o.insecure_skip_tls_verify);
    }
}
