//! The accept loop: TLS handshakes, HTTP/1.1 (with upgrades) and HTTP/2 on one port, a bound on
//! concurrent connections, the stall and cut knobs, and a graceful drain on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ConnInfo, State};
use crate::auth;
use crate::knobs::Stall;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Holds a connection without a word until the peer leaves or the server stops.
async fn hold(mut tcp: TcpStream, shutdown: CancellationToken) {
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            r = tcp.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Serves until `shutdown` is cancelled, then drains open connections for a few seconds.
pub async fn run(listener: TcpListener, tls: TlsAcceptor, state: Arc<State>, max_connections: usize) {
    let shutdown = state.shutdown.clone();
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(1000);
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    // Out of descriptors or a transient error: back off briefly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            if state.knobs.stall() == Stall::Accept {
                hold(tcp, state.shutdown.clone()).await;
                return;
            }
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| auth::cert_user(c));
            let kill = Arc::new(Notify::new());
            let conn = Arc::new(ConnInfo { remote, cert_user, kill: kill.clone() });
            let svc = service_fn(move |req| {
                let state = state.clone();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(api::serve(state, conn, req).await) }
            });
            let serving = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
            let serving = watcher.watch(serving);
            tokio::select! {
                _ = serving => {}
                _ = kill.notified() => {}
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}
