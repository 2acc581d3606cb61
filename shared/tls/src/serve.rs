//! The accept loop of kubegate's REST services: TLS (or plain HTTP where a deployment terminates
//! TLS in front), HTTP/1.1 and h2, a connection limit, a header-read timeout, connection info for
//! handlers, and graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use futures::FutureExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
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
    /// [`serve_on_threads`]: how long a serving thread keeps polling its sockets without
    /// blocking after a request arrived or was answered on it, before it parks (see `spin`).
    /// Zero parks at once.
    pub spin: Duration,
}

/// The most header fields hyper's HTTP/1.1 server takes when no limit is set (its documented
/// default). A test checks that one field more than the limit is refused, at this default and
/// at another limit.
const HYPER_MAX_HEADERS: usize = 100;

impl ServeOptions {
    pub fn tls(config: Arc<ServerConfig>) -> ServeOptions {
        ServeOptions {
            tls: Some(config),
            max_connections: 4096,
            grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: HYPER_MAX_HEADERS,
            h2_max_header_list_size: 64 * 1024,
            h2_max_concurrent_streams: 256,
            h2_max_pending_accept_reset_streams: 20,
            h2_max_local_error_reset_streams: 256,
            spin: Duration::ZERO,
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What serves one connection's requests (made per connection).
pub trait ConnService:
    tower::Service<
        hyper::Request<Incoming>,
        Response = hyper::Response<Self::Body>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    type Body: ResponseBody;
}

impl<S, B: ResponseBody> ConnService for S
where
    S: tower::Service<
            hyper::Request<Incoming>,
            Response = hyper::Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
{
    type Body = B;
}

/// The body of a response served on a connection.
pub trait ResponseBody: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<B> ResponseBody for B where B: http_body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

/// Serves connections accepted on `listener` with a service made per connection by `make`
/// until `shutdown`, then drains for at most `opts.grace`. Upgrades (HTTP/1.1) are supported.
pub async fn serve<F, S>(listener: TcpListener, make: F, opts: ServeOptions, shutdown: CancellationToken)
where
    F: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: ConnService,
{
    let server = Arc::new(ConnServer::new(make, &opts));
    accept(listener, &opts, shutdown, |conn| {
        let server = server.clone();
        tokio::spawn(async move { server.serve(conn).await });
    })
    .await
}

/// Serves like [`serve`] on `threads` threads of their own, each a single-threaded runtime: a
/// connection, and every task serving it (its requests, their upstream connections, tunnels),
/// stays on the thread it was given to, so handing work from one task to the next wakes no
/// other thread. Connections are accepted here and each goes to the thread serving the fewest.
/// `threads` 0 serves on the calling runtime instead (work-stealing: one connection's requests
/// may run on every core).
pub fn serve_on_threads<F, S>(
    listener: TcpListener,
    threads: usize,
    make: F,
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> std::io::Result<ServingThreads>
where
    F: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: ConnService,
{
    let release = CancellationToken::new();
    if threads == 0 {
        let drained = tokio::spawn(serve(listener, make, opts, shutdown));
        return Ok(ServingThreads { drained: Some(drained), ended: Vec::new(), release });
    }
    SERVING_THREADS.store(threads, Ordering::Relaxed);
    let server = Arc::new(ConnServer::new(make, &opts));
    let spin = opts.spin;
    let mut lanes = Vec::with_capacity(threads);
    let mut ended = Vec::with_capacity(threads);
    for i in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
        let (done, done_rx) = oneshot::channel();
        let (server, release) = (server.clone(), release.clone());
        std::thread::Builder::new().name(format!("serve-{i}")).spawn(move || {
            SERVING_THREAD.set(i);
            runtime.block_on(async move {
                if !spin.is_zero() {
                    tokio::spawn(crate::spin::spinner(spin));
                }
                while let Some(conn) = rx.recv().await {
                    let server = server.clone();
                    tokio::spawn(async move { server.serve(conn).await });
                }
                // Accepting is over; what the connections started (tunnels) runs until released.
                release.cancelled().await;
            });
            drop(runtime);
            let _ = done.send(());
        })?;
        lanes.push(Lane { tx, load: Arc::new(AtomicUsize::new(0)) });
        ended.push(done_rx);
    }
    let drained = tokio::spawn(async move {
        accept(listener, &opts, shutdown, |mut conn| {
            // A thread that is gone (it cannot be, short of a bug) is passed over.
            let lane =
                lanes.iter().filter(|l| !l.tx.is_closed()).min_by_key(|l| l.load.load(Ordering::Relaxed));
            let Some(lane) = lane else {
                tracing::error!(remote = %conn.remote, "no serving thread is left; connection closed");
                return;
            };
            // Taken off this runtime's reactor; the serving thread registers it with its own.
            conn.stream = match conn.stream.unregister() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(remote = %conn.remote, error = %e, "cannot hand over a connection");
                    return;
                }
            };
            lane.load.fetch_add(1, Ordering::Relaxed);
            conn.load = Some(LoadGuard(lane.load.clone()));
            if lane.tx.send(conn).is_err() {
                tracing::error!("a serving thread is gone; connection closed");
            }
        })
        .await;
    });
    Ok(ServingThreads { drained: Some(drained), ended, release })
}

/// The serving started by [`serve_on_threads`].
pub struct ServingThreads {
    drained: Option<tokio::task::JoinHandle<()>>,
    ended: Vec<oneshot::Receiver<()>>,
    release: CancellationToken,
}

impl ServingThreads {
    /// Waits until accepting has stopped and the connections have drained (or the grace
    /// period is over). Tasks they started, such as tunnels, still run.
    pub async fn drained(&mut self) {
        if let Some(d) = self.drained.take() {
            let _ = d.await;
        }
    }

    /// Ends the threads and whatever still runs on them; returns once they are gone.
    pub async fn end(mut self) {
        self.drained().await;
        self.release.cancel();
        for e in self.ended.drain(..) {
            let _ = e.await;
        }
    }
}

static SERVING_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SERVING_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many serving threads [`serve_on_threads`] started in this process (0 before, or when
/// it serves on the calling runtime).
pub fn serving_threads() -> usize {
    SERVING_THREADS.load(Ordering::Relaxed)
}

/// The serving thread this code runs on (0, 1, …); 0 anywhere else.
pub fn serving_thread() -> usize {
    SERVING_THREAD.get()
}

/// One serving thread as the acceptor sees it.
struct Lane {
    tx: mpsc::UnboundedSender<Accepted>,
    /// Connections it serves now.
    load: Arc<AtomicUsize>,
}

/// Counts a connection off its thread's load when it ends.
struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted connection on its way to being served.
struct Accepted {
    stream: Stream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    watcher: Watcher,
    load: Option<LoadGuard>,
}

/// An accepted socket: registered with the runtime that accepted it, or with none yet (on its
/// way to a serving thread).
enum Stream {
    Registered(tokio::net::TcpStream),
    Unregistered(std::net::TcpStream),
}

impl Stream {
    fn unregister(self) -> std::io::Result<Stream> {
        match self {
            Stream::Registered(s) => s.into_std().map(Stream::Unregistered),
            unregistered => Ok(unregistered),
        }
    }

    /// The socket registered with the calling runtime.
    fn registered(self) -> std::io::Result<tokio::net::TcpStream> {
        match self {
            Stream::Registered(s) => Ok(s),
            Stream::Unregistered(s) => tokio::net::TcpStream::from_std(s),
        }
    }
}

/// Accepts until `shutdown` (at most `opts.max_connections` open at once), hands each
/// connection to `dispatch`, then waits at most `opts.grace` for them to finish.
async fn accept(
    listener: TcpListener,
    opts: &ServeOptions,
    shutdown: CancellationToken,
    mut dispatch: impl FnMut(Accepted),
) {
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = GracefulShutdown::new();
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
        let stream = Stream::Registered(stream);
        dispatch(Accepted { stream, remote, permit, watcher: graceful.watcher(), load: None });
    }
    drop(listener);
    if tokio::time::timeout(opts.grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

/// Serves accepted connections: the TLS handshake, then HTTP/1.1 or h2 with a service made
/// for the connection.
struct ConnServer<F> {
    make: F,
    builder: auto::Builder<TokioExecutor>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
}

impl<F, S> ConnServer<F>
where
    F: Fn(ConnInfo) -> S,
    S: ConnService,
{
    fn new(make: F, opts: &ServeOptions) -> ConnServer<F> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let mut http1 = builder.http1();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(opts.header_read_timeout)
            .max_buf_size(opts.max_header_bytes.max(8192))
            .keep_alive(true);
        // hyper's own limit is the default one, and setting a limit (even that one) makes it
        // fill a vector of that many slots for every request it parses.
        if opts.max_headers != HYPER_MAX_HEADERS {
            http1.max_headers(opts.max_headers);
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(opts.h2_max_concurrent_streams)
            .max_header_list_size(opts.h2_max_header_list_size)
            .max_pending_accept_reset_streams(opts.h2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams(opts.h2_max_local_error_reset_streams)
            .keep_alive_interval(Duration::from_secs(30));
        ConnServer {
            make,
            builder,
            acceptor: opts.tls.clone().map(tokio_rustls::TlsAcceptor::from),
            handshake_timeout: opts.handshake_timeout,
        }
    }

    /// Serves one connection until it ends; runs on the runtime that is to serve it.
    async fn serve(&self, conn: Accepted) {
        let Accepted { stream, remote, permit: _permit, watcher, load: _load } = conn;
        let stream = match stream.registered() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%remote, error = %e, "cannot serve an accepted connection");
                return;
            }
        };
        let info = ConnInfo { remote, tls: self.acceptor.is_some() };
        // Work begins when a request arrives and when its answer is ready (see `spin`). A
        // combinator, not an `async` block: a block would hold the answer's future twice, once
        // as its capture and once as what it awaits.
        let service = (self.make)(info).map_future(|answer| {
            crate::spin::touch();
            answer.inspect(|_| crate::spin::touch())
        });
        match &self.acceptor {
            Some(acceptor) => {
                let tls = match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    // hyper runs every h2 stream as a task of its own and moves the stream's
                    // future into it, and within it, at each step of the task's life. Boxed, what
                    // moves is a pointer; over HTTP/1.1 the future stays in place in the
                    // connection, so it is not boxed there.
                    self.drive(tls, service.map_future(FutureExt::boxed), watcher).await
                } else {
                    self.drive(tls, service, watcher).await
                }
            }
            None => self.drive(stream, service, watcher).await,
        }
    }

    /// Serves HTTP on `io` with `service` until the connection ends. Once shutdown begins,
    /// hyper answers the requests in flight and closes the connection (`accept` waits for that
    /// at most the grace period).
    async fn drive<I, T>(&self, io: I, service: T, watcher: Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: ConnService,
    {
        let conn =
            self.builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
        let _ = watcher.watch(conn.into_owned()).await;
    }
}
