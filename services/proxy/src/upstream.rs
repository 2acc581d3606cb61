//! Connections to an environment's API server: TLS verified against the environment's CA (or
//! not at all, only when the operator asked for it), kubegate's credential (bearer token or
//! client certificate), pooled connections: a pool of HTTP/1.1 keep-alive connections for
//! ordinary requests (measured faster than multiplexing them all on one h2 connection, and what
//! nginx does), HTTP/1.1 connections of their own for upgrades, and h2 connections for long-lived
//! streams (watches, followed logs), at most 100 streams each, so thousands of watches need
//! neither thousands of connections nor more streams than the API server allows on one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kubegate_seal::UpstreamCredential;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::body::BoxError;

mod pool;
mod read_ahead;

pub use pool::{Lease, Pool, SendError};
use read_ahead::ReadAheadConnector;

pub type UpstreamBody = BoxBody<Bytes, BoxError>;
pub type HttpClient = Client<HttpsConnector<ReadAheadConnector<HttpConnector>>, UpstreamBody>;

/// How to reach one environment.
pub struct Upstream {
    /// `https://host:port` plus any path prefix, without a trailing slash.
    base: String,
    /// The path prefix alone (empty, or `/…` without a trailing slash).
    prefix: String,
    /// `Authorization` value when the credential is a bearer token (marked sensitive).
    pub authorization: Option<HeaderValue>,
    /// Ordinary requests: HTTP/1.1 keep-alive connections, idle ones kept per serving thread,
    /// so a request and its upstream connection share a thread.
    pool: Arc<Pool>,
    /// Upgrades (exec, attach, port-forward): HTTP/1.1 only.
    pub upgrade_client: HttpClient,
    /// Watches and followed logs.
    streams: StreamClients,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the environment URL {0:?} is not a valid https URL")]
    Url(String),
    #[error("the environment's CA certificate is not usable: {0}")]
    Ca(String),
    #[error("the environment's client certificate is not usable: {0}")]
    ClientCert(String),
}

impl Upstream {
    pub fn new(
        url: &str,
        ca_pem: Option<&str>,
        insecure_skip_tls_verify: bool,
        credential: &UpstreamCredential,
    ) -> Result<Upstream, UpstreamError> {
        kubegate_tls::install_crypto_provider();
        let uri: Uri = url.parse().map_err(|_| UpstreamError::Url(url.to_string()))?;
        if uri.scheme_str() != Some("https") || uri.authority().is_none() {
            return Err(UpstreamError::Url(url.to_string()));
        }
        let base = url.trim_end_matches('/').to_string();
        let prefix = uri.path().trim_end_matches('/').to_string();
        let (authorization, client_cert) = match credential {
            UpstreamCredential::Token { token, .. } => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| UpstreamError::ClientCert("token is not a valid header value".into()))?;
                v.set_sensitive(true);
                (Some(v), None)
            }
            UpstreamCredential::ClientCertificate { cert_pem, key_pem, .. } => {
                (None, Some((cert_pem.as_str(), key_pem.expose_secret())))
            }
        };
        let tls = |alpn: &[&[u8]]| -> Result<ClientConfig, UpstreamError> {
            let mut config = if insecure_skip_tls_verify {
                let builder = ClientConfig::builder()
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerification::new()));
                match client_cert {
                    Some((c, k)) => builder
                        .with_client_auth_cert(
                            kubegate_tls::parse_certs(c, "client certificate")
                                .map_err(|e| UpstreamError::ClientCert(e.to_string()))?,
                            kubegate_tls::parse_key(k, "client key")
                                .map_err(|e| UpstreamError::ClientCert(e.to_string()))?,
                        )
                        .map_err(|e| UpstreamError::ClientCert(e.to_string()))?,
                    None => builder.with_no_client_auth(),
                }
            } else {
                let ca = ca_pem.ok_or_else(|| UpstreamError::Ca("no CA certificate registered".into()))?;
                kubegate_tls::client_config(ca, client_cert, &[])
                    .map_err(|e| UpstreamError::Ca(e.to_string()))?
            };
            // hyper-rustls sets ALPN itself from the HTTP versions enabled below.
            config.alpn_protocols.clear();
            let _ = alpn;
            Ok(config)
        };
        let both = tls(&[b"h2", b"http/1.1"])?;
        let h1 = tls(&[b"http/1.1"])?;
        let pool = Pool::new(&uri, h1.clone(), kubegate_tls::serve::serving_threads())
            .map_err(|_| UpstreamError::Url(url.to_string()))?;
        let upgrade_client = build(h1, false, 0);
        let streams = StreamClients { tls: both, clients: Mutex::new(Vec::new()) };
        Ok(Upstream { base, prefix, authorization, pool, upgrade_client, streams })
    }

    /// The pool of connections for ordinary requests.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// A client for one long-lived stream, and the lease that holds its place until dropped.
    pub fn stream_client(&self) -> (HttpClient, StreamLease) {
        self.streams.lease()
    }

    /// The upstream URI for an already classified path and the original query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        join_uri(&self.base, path, query)
    }

    /// The same in origin form (`/prefix/path?query`), as the pool sends it.
    pub fn origin_uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        join_uri(&self.prefix, path, query)
    }
}

fn join_uri(base: &str, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let mut s = String::with_capacity(base.len() + path.len() + query.map(|q| q.len() + 1).unwrap_or(0));
    s.push_str(base);
    s.push_str(path);
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    Ok(Uri::try_from(s)?)
}

/// An error and its sources, joined by `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Long-lived streams per upstream connection. An API server limits the concurrent streams of
/// one h2 connection (kube-apiserver: 1000 by default, Go's own default 250) and a stream over
/// the limit waits, unanswered, until another ends; watches end only after minutes. Each client
/// here has its own connection pool, so each holds its own connection.
const STREAMS_PER_CONNECTION: usize = 100;

struct StreamClients {
    tls: ClientConfig,
    clients: Mutex<Vec<Arc<StreamClient>>>,
}

struct StreamClient {
    client: HttpClient,
    open: AtomicUsize,
}

/// A place on one of the stream connections, given back when dropped.
pub struct StreamLease(Arc<StreamClient>);

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StreamClients {
    fn lease(&self) -> (HttpClient, StreamLease) {
        // A poisoned lock only means another request panicked while choosing; the list is
        // still a valid list of clients.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let chosen = match clients.iter().find(|c| c.open.load(Ordering::Acquire) < STREAMS_PER_CONNECTION) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(StreamClient {
                    client: build_client(self.tls.clone(), true),
                    open: AtomicUsize::new(0),
                });
                clients.push(c.clone());
                c
            }
        };
        chosen.open.fetch_add(1, Ordering::AcqRel);
        drop(clients);
        (chosen.client.clone(), StreamLease(chosen))
    }
}

pub(crate) fn build_client(tls: ClientConfig, h2: bool) -> HttpClient {
    build(tls, h2, 256)
}

/// `max_idle` 0 is the upgrade client's: a connection is never reused, so one that answered an
/// upgrade with anything but 101 is closed with the client's (CVE-2018-1002105: both
/// connections end), and a tunnel never shares its connection.
fn build(tls: ClientConfig, h2: bool, max_idle: usize) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let http = ReadAheadConnector(http);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only();
    let connector = if h2 {
        builder.enable_http1().enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(max_idle)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(10));
    client.build(connector)
}

/// Accepts any server certificate. Used only for an environment whose operator explicitly
/// registered it with `insecureSkipTlsVerify`; signatures are still checked so the handshake
/// is at least with the holder of the presented key.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl NoVerification {
    fn new() -> NoVerification {
        NoVerification(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
