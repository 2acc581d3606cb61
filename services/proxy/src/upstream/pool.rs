//! The pool of HTTP/1.1 keep-alive connections that carries ordinary requests, built on hyper's
//! connection API: one list of idle connections per serving thread (a connection's task runs on
//! the thread that opened it, so a request and its upstream connection share a thread), taken
//! last-in first-out, given back when the answer has been read to its end.
//!
//! It replaces the general client on this path because the general client spends, per request,
//! more than the rest of the upstream leg: a `Host` header formatted anew, a pool keyed by
//! scheme and authority behind a SipHash map, the request's URI rewritten from absolute to
//! origin form, connection details copied into every response.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use super::UpstreamBody;
use super::read_ahead::ReadAhead;

/// An idle connection is closed after this long unused (as nginx's and the general client's).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per serving thread.
const MAX_IDLE: usize = 256;
/// Time allowed for the TCP connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request did not get an answer.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (TCP or TLS).
    Connect(String),
    /// The connection failed while the request was sent or its answer awaited.
    Request(hyper::Error),
}

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(detail) => write!(f, "cannot connect: {detail}"),
            SendError::Request(e) => write!(f, "{}", super::error_chain(e)),
        }
    }
}

struct Idle {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

impl Idle {
    /// Still open, and not idle longer than `timeout`.
    fn usable(&self, timeout: Duration) -> bool {
        self.since.elapsed() < timeout && !self.sender.is_closed()
    }
}

pub struct Pool {
    /// Where to connect: the host without IPv6 brackets, and the port.
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    /// The `Host` header of every request, computed once.
    host_header: HeaderValue,
    tls: tokio_rustls::TlsConnector,
    /// One list per serving thread, the most recently used last.
    idle: Box<[Mutex<Vec<Idle>>]>,
    idle_timeout: Duration,
}

/// A connection taken from the pool; [`Lease::release`] gives it back once its answer has been
/// read to the end. Dropped otherwise, it closes.
pub struct Lease {
    pool: Arc<Pool>,
    slot: usize,
    sender: SendRequest<UpstreamBody>,
}

impl Lease {
    /// Gives the connection back for the next request (unless it has closed or the thread's
    /// list is full).
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.pool.idle[self.slot]);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender: self.sender, since: Instant::now() });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere while it was held; the list is still a list.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// A pool for `uri` (`https://host[:port]`), `lists` idle lists (one per serving thread).
    /// Connections idle for longer than [`IDLE_TIMEOUT`] are closed, also when no request comes
    /// (a task looks every half of it, while the pool lives).
    pub fn new(uri: &Uri, tls: ClientConfig, lists: usize) -> Result<Arc<Pool>, String> {
        Pool::with_idle_timeout(uri, tls, lists, IDLE_TIMEOUT)
    }

    fn with_idle_timeout(
        uri: &Uri,
        mut tls: ClientConfig,
        lists: usize,
        idle_timeout: Duration,
    ) -> Result<Arc<Pool>, String> {
        let host = uri.host().ok_or("no host")?;
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = uri.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(bare.to_string()).map_err(|e| e.to_string())?;
        let host_header = match uri.port_u16() {
            Some(p) if p != 443 => HeaderValue::from_str(&format!("{host}:{p}")),
            _ => HeaderValue::from_str(host),
        }
        .map_err(|e| e.to_string())?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let pool = Arc::new(Pool {
            host: bare.to_string(),
            port,
            server_name,
            host_header,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            idle: (0..lists.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap(Arc::downgrade(&pool)));
        }
        Ok(pool)
    }

    /// Drops the idle connections that are too old or already closed.
    fn close_stale(&self, slot: usize) {
        lock(&self.idle[slot]).retain(|i| i.usable(self.idle_timeout));
    }

    /// Sends `req` (origin-form URI) on an idle connection of this thread, or a new one. A
    /// request that an idle connection turned away unsent (it had just closed) is sent again on
    /// a new connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        req.headers_mut().insert(HOST, self.host_header.clone());
        let slot = kubegate_tls::serve::serving_thread() % self.idle.len();
        if let Some(mut sender) = self.take_idle(slot).await {
            match sender.try_send_request(req).await {
                Ok(response) => return Ok((response, Lease { pool: self.clone(), slot, sender })),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Request(e.into_error())),
                },
            }
        }
        // Boxed: opening a connection is rare, and its state (TCP, TLS, handshake) would
        // otherwise make every request's future larger, which is copied as it moves.
        let mut sender = Box::pin(self.connect()).await?;
        let response = sender.send_request(req).await.map_err(SendError::Request)?;
        Ok((response, Lease { pool: self.clone(), slot, sender }))
    }

    /// The most recently used idle connection of this thread that is still open and not too
    /// old; one still finishing its last answer is waited for.
    async fn take_idle(&self, slot: usize) -> Option<SendRequest<UpstreamBody>> {
        loop {
            let idle = lock(&self.idle[slot]).pop()?;
            if !idle.usable(self.idle_timeout) {
                // Older ones are older still: close them all.
                self.close_stale(slot);
                continue;
            }
            let mut sender = idle.sender;
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, SendError> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| SendError::Connect(format!("no TCP connection within {}s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| SendError::Connect(format!("tcp connect error: {e}")))?;
        tcp.set_nodelay(true).map_err(|e| SendError::Connect(e.to_string()))?;
        let io = TokioIo::new(ReadAhead::new(TokioIo::new(tcp)));
        let tls = self
            .tls
            .connect(self.server_name.clone(), io)
            .await
            .map_err(|e| SendError::Connect(format!("TLS handshake failed: {e}")))?;
        let (sender, connection) = http1::Builder::new()
            .handshake::<_, UpstreamBody>(TokioIo::new(tls))
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Every half idle timeout, closes the connections idle for longer, until the pool is dropped.
async fn reap(pool: std::sync::Weak<Pool>) {
    let every = match pool.upgrade() {
        Some(p) => p.idle_timeout / 2,
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        for slot in 0..pool.idle.len() {
            pool.close_stale(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, Response, Uri};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;

    use super::{Pool, SendError, UpstreamBody, lock};

    /// A TLS HTTP/1.1 server on a free port: counts connections, remembers each request's
    /// `Host` and target, answers `n` for the n-th request, closing the connection after it
    /// when the request carried `x-close`.
    struct Server {
        uri: Uri,
        ca: String,
        connections: Arc<AtomicUsize>,
        closed: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<(String, String)>>>,
    }

    async fn server() -> Server {
        kubegate_tls::install_crypto_provider();
        let ca = kubegate_tls::DevCa::generate("pool test CA").unwrap();
        let (cert, key) = ca.issue_server(&["127.0.0.1"]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(
            kubegate_tls::server_config(&cert, &key, &[b"http/1.1"]).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s, gone) = (connections.clone(), seen.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let (acceptor, seen, gone) = (acceptor.clone(), s.clone(), gone.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let host = req.headers().get("host").map(|h| h.to_str().unwrap().to_string());
                            let n = {
                                let mut seen = seen.lock().unwrap();
                                seen.push((host.unwrap_or_default(), req.uri().to_string()));
                                seen.len()
                            };
                            let mut response = Response::new(Full::new(Bytes::from(n.to_string())));
                            if req.headers().contains_key("x-close") {
                                response.headers_mut().insert("connection", "close".parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                    gone.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Server {
            uri: format!("https://127.0.0.1:{port}").parse().unwrap(),
            ca: ca.cert_pem().to_string(),
            connections,
            closed,
            seen,
        }
    }

    fn pool(server: &Server) -> Arc<Pool> {
        let tls = kubegate_tls::client_config(&server.ca, None, &[]).unwrap();
        Pool::new(&server.uri, tls, 1).unwrap()
    }

    fn get(path: &str, close: bool) -> Request<UpstreamBody> {
        let mut req = Request::get(path);
        if close {
            req = req.header("x-close", "1");
        }
        req.body(Full::new(Bytes::new()).map_err(|never| match never {}).boxed()).unwrap()
    }

    async fn text(response: Response<Incoming>) -> String {
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_given_back_carries_the_next_request_with_host_and_origin_form() {
        let server = server().await;
        let pool = pool(&server);
        for (i, path) in ["/api/v1/pods?limit=1", "/version"].into_iter().enumerate() {
            let (response, lease) = pool.send(get(path, false)).await.unwrap();
            assert_eq!(text(response).await, (i + 1).to_string());
            lease.release();
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
        let port = server.uri.port_u16().unwrap();
        assert_eq!(
            *server.seen.lock().unwrap(),
            vec![
                (format!("127.0.0.1:{port}"), "/api/v1/pods?limit=1".to_string()),
                (format!("127.0.0.1:{port}"), "/version".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn a_connection_not_given_back_is_not_reused() {
        let server = server().await;
        let pool = pool(&server);
        // The answer is dropped unread and the lease with it.
        let (response, lease) = pool.send(get("/a", false)).await.unwrap();
        drop((response, lease));
        let (response, lease) = pool.send(get("/b", false)).await.unwrap();
        assert_eq!(text(response).await, "2");
        lease.release();
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_skipped() {
        let server = server().await;
        let pool = pool(&server);
        let (response, lease) = pool.send(get("/a", true)).await.unwrap();
        assert_eq!(text(response).await, "1");
        // Given back, but the server has closed it (`Connection: close`).
        lease.release();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (response, lease) = pool.send(get("/b", false)).await.unwrap();
        assert_eq!(text(response).await, "2");
        lease.release();
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
        assert_eq!(server.seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout_without_another_request() {
        let server = server().await;
        let tls = kubegate_tls::client_config(&server.ca, None, &[]).unwrap();
        let pool = Pool::with_idle_timeout(&server.uri, tls, 1, Duration::from_millis(200)).unwrap();
        let (response, lease) = pool.send(get("/a", false)).await.unwrap();
        assert_eq!(text(response).await, "1");
        lease.release();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(server.closed.load(Ordering::SeqCst), 0, "closed while still fresh");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.closed.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "the idle connection was never closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(lock(&pool.idle[0]).is_empty());
    }

    #[tokio::test]
    async fn no_server_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let server = server().await;
        let tls = kubegate_tls::client_config(&server.ca, None, &[]).unwrap();
        let uri: Uri = format!("https://127.0.0.1:{port}").parse().unwrap();
        let pool = Pool::new(&uri, tls, 1).unwrap();
        let e = pool.send(get("/", false)).await.err().unwrap();
        assert!(matches!(e, SendError::Connect(_)), "{e}");
        assert!(e.to_string().contains("tcp connect error"), "{e}");
    }

    #[tokio::test]
    async fn a_server_with_another_name_fails_the_handshake() {
        let server = server().await;
        // The certificate names 127.0.0.1; asking for localhost must not be accepted.
        let uri: Uri = format!("https://localhost:{}", server.uri.port_u16().unwrap()).parse().unwrap();
        let tls = kubegate_tls::client_config(&server.ca, None, &[]).unwrap();
        let pool = Pool::new(&uri, tls, 1).unwrap();
        let e = pool.send(get("/", false)).await.err().unwrap();
        assert!(e.to_string().contains("TLS handshake failed"), "{e}");
        assert_eq!(server.seen.lock().unwrap().len(), 0);
    }
}
