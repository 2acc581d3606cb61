//! TLS for kubegate: rustls server and client configurations from PEM (ring is the one crypto
//! provider), the development CA that `make up` uses, and the TLS accept loop the HTTP services
//! share (with connection info, a connection limit and graceful drain).

pub mod config;
pub mod devca;
pub mod serve;
mod spin;

/// rustls types callers need without depending on rustls themselves.
pub mod rustls_config {
    pub use rustls::{ClientConfig, ServerConfig};
}

pub use config::{TlsError, client_config, install_crypto_provider, parse_certs, parse_key, server_config};
pub use devca::{DevCa, DevPki};
pub use serve::{ConnInfo, ServeOptions, ServingThreads, serve, serve_on_threads, serve_router};
