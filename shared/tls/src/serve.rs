//! The accept loop of kubegate's REST services: TLS (or plain HTTP where a deployment terminates
//! TLS in front), HTTP/1.1 and h2, a connection limit, a header-read timeout, connection info for
//! handlers, and graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What a handler may know about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The request arrived over TLS on this listener.
    pub tls: bool,
}

#[derive(Clone)]
pub struct ServeOptions {
    /// `None` serves plain HTTP (only behind a TLS-terminating proxy).
    pub tls: Option<Arc<ServerConfig>>,
    pub max_connections: usize,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub grace: Duration,
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    /// HTTP/1.1: the most bytes of request line and headers (beyond: 431).
    pub max_header_bytes: usize,
    /// HTTP/1.1: the most header fields (beyond: 431).
    pub max_headers: usize,
    /// h2: the most header-list bytes, concurrent streams, and reset streams tolerated before
    /// the connection is closed (rapid-reset protection).
    pub h2_max_header_list_size: u32,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_accept_reset_streams: usize,
    pub h2_max_local_error_reset_streams: usize,
}

impl ServeOptions {
    pub fn tls(config: Arc<ServerConfig>) -> ServeOptions {
        ServeOptions {
            tls: Some(config),
            max_connections: 4096,
            grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            h2_max_header_list_size: 64 * 1024,
            h2_max_concurrent_streams: 256,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 256,
        }
    }

    pub fn plain() -> ServeOptions {
        ServeOptions { tls: None, ..ServeOptions::tls(Arc::new(dummy_config())) }
    }
}

fn dummy_config() -> ServerConfig {
    crate::install_crypto_provider();
    ServerConfig::builder().with_no_client_auth().with_cert_resolver(Arc::new(NoCert))
}

#[derive(Debug)]
struct NoCert;

impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

/// Serves `router` on `listener` until `shutdown`, then drains for at most `opts.grace`.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    serve(
        listener,
        move |info| {
            let router = router.clone();
            tower::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(info);
                router.clone().oneshot(req)
            })
        },
        opts,
        shutdown,
    )
    .await
}

/// Serves connections accepted on `listener` with a service made per connection by `make`
/// until `shutdown`, then drains for at most `opts.grace`. Upgrades (HTTP/1.1) are supported.
pub async fn serve<F, S, B>(listener: TcpListener, make: F, opts: ServeOptions, shutdown: CancellationToken)
where
    F: Fn(ConnInfo) -> S,
    S: tower::Service<hyper::Request<Incoming>, Response = hyper::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192))
        .max_headers(opts.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.h2_max_concurrent_streams)
        .max_header_list_size(opts.h2_max_header_list_size)
        .max_pending_accept_reset_streams(opts.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(opts.h2_max_local_error_reset_streams)
        .keep_alive_interval(Duration::from_secs(30));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo { remote, tls: acceptor.is_some() };
        let service = TowerToHyperService::new(make(info));
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = opts.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls), service).into_owned();
                    let _ = watcher.watch(conn).await;
                }
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing remaining connections");
    }
}
