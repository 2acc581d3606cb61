//! How to reach NATS: servers, credentials and TLS. Parsed once by each service's config.

use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Default)]
pub struct NatsConfig {
    /// One or more server URLs, comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// Connection name shown by the server (`kubegate-identity`, …).
    pub name: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A `.creds` file (JWT + nkey seed), for operator-mode deployments.
    pub creds_file: Option<PathBuf>,
    /// CA bundle that the server's certificate must chain to; enables TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> NatsConfig {
        NatsConfig { url: url.into(), name: name.into(), ..Default::default() }
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("creds_file", &self.creds_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .finish()
    }
}
