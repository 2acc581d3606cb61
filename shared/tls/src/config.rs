//! rustls configurations built from PEM text.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate found in {0}")]
    NoCertificate(String),
    #[error("{what} is not valid PEM: {message}")]
    Pem { what: String, message: String },
    #[error("no private key found in {0}")]
    NoKey(String),
    #[error("invalid TLS configuration: {0}")]
    Config(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate certificate: {0}")]
    Generate(String),
}

/// Installs ring as the process-wide rustls provider. Idempotent; call once at start.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every certificate in `pem` (`what` names it in errors).
pub fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { what: what.to_string(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what.to_string()));
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(what.to_string()),
        other => TlsError::Pem { what: what.to_string(), message: other.to_string() },
    })
}

/// A server configuration offering `alpn` (e.g. `[b"h2", b"http/1.1"]`).
pub fn server_config(cert_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let certs = parse_certs(cert_pem, "server certificate")?;
    let key = parse_key(key_pem, "server key")?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration trusting exactly the CAs in `roots_pem`, optionally presenting a
/// client certificate, offering `alpn`.
pub fn client_config(
    roots_pem: &str,
    client_cert: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    install_crypto_provider();
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(roots_pem, "CA certificate")? {
        roots.add(cert).map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let mut config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(parse_certs(cert, "client certificate")?, parse_key(key, "client key")?)
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
