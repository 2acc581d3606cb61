//! Streaming subresources of pods: `exec`, `attach` and `portforward`, over WebSocket
//! (`v5.channel.k8s.io` and friends, and SPDY tunnelled in WebSocket for port-forward) and over
//! SPDY/3.1, as kubectl 1.27–1.33 and the Python client speak them.
//!
//! The API-server side (authentication, RBAC, the pod lookup, query parsing) is done before
//! [`Streams::handle`] is called; this module answers the upgrade and runs the session.
//!
//! * Commands run for real, in a per-container sandbox (see [`sandbox`]): a directory under the
//!   exec root holding a static busybox, entered with `chroot`.
//! * `attach` connects to the container's main process: an interactive `sh` on a pty, started
//!   on the first attach and kept while it runs (see [`process::MainProcess`]).
//! * Port-forward reaches one local TCP service per declared pod port (see [`backends`]).

pub mod backends;
pub mod channel;
pub mod negotiate;
pub mod portforward;
pub mod process;
pub mod sandbox;
pub mod session;
pub mod spdy;
pub mod status;
pub mod wstunnel;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use self::backends::Backends;
use self::negotiate::{Negotiated, NegotiationError};
use self::process::MainProcess;
use self::sandbox::Sandboxes;
use self::session::{Runner, StdioFlags};
use self::status::Outcome;

pub type SimBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The pod (and container) a streaming request is for, as resolved by the API side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    pub namespace: String,
    pub pod: String,
    /// The container asked for (or the default one).
    pub container: String,
    /// Every container of the pod.
    pub container_names: Vec<String>,
    /// The container ports the pod declares; only these are served for port-forward.
    pub ports: Vec<u16>,
}

/// The streaming subresource and its query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    Exec {
        command: Vec<String>,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    },
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    },
    /// `ports` comes from the query; only the WebSocket channel protocol uses it.
    PortForward {
        ports: Vec<u16>,
    },
}

/// One upgrade request as negotiated (or refused), for tests and request logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRecord {
    /// `exec`, `attach` or `portforward`.
    pub subresource: &'static str,
    /// `websocket` or `spdy` (what the client asked for; `none` when it asked for no upgrade).
    pub transport: &'static str,
    /// The subprotocol answered (empty when none, or when refused).
    pub protocol: String,
    /// The HTTP status answered: 101, or the refusal's code.
    pub status: u16,
}

/// Upgrade records kept (the oldest are dropped past this).
const UPGRADE_LOG_LIMIT: usize = 1000;

/// Owns the sandboxes, attach main processes and port backends, and every session it starts.
/// Dropping it ends all sessions (killing their processes) and stops the backends.
pub struct Streams {
    inner: Arc<Inner>,
    _stop: DropGuard,
}

struct Inner {
    sandboxes: Sandboxes,
    backends: Arc<Backends>,
    mains: tokio::sync::Mutex<HashMap<(String, String, String), Arc<MainProcess>>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    sessions: Arc<AtomicUsize>,
    upgrades: std::sync::Mutex<VecDeque<UpgradeRecord>>,
    exec_root: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
}

impl Streams {
    /// `exec_root` holds one sandbox directory per container; `None` uses a temporary directory
    /// removed when `Streams` is dropped.
    pub fn new(exec_root: Option<PathBuf>) -> Streams {
        let (exec_root, tempdir) = match exec_root {
            Some(root) => (root, None),
            None => match tempfile::Builder::new().prefix("kube-sim-exec-").tempdir() {
                Ok(dir) => (dir.path().to_path_buf(), Some(dir)),
                Err(_) => (std::env::temp_dir().join(format!("kube-sim-exec-{}", std::process::id())), None),
            },
        };
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let inner = Arc::new(Inner {
            sandboxes: Sandboxes::new(exec_root.clone()),
            backends: Arc::new(Backends::new(shutdown.clone(), tracker.clone())),
            mains: tokio::sync::Mutex::new(HashMap::new()),
            tracker,
            shutdown: shutdown.clone(),
            sessions: Arc::new(AtomicUsize::new(0)),
            upgrades: std::sync::Mutex::new(VecDeque::new()),
            exec_root,
            _tempdir: tempdir,
        });
        Streams { inner, _stop: shutdown.drop_guard() }
    }

    /// Where the container sandboxes live.
    pub fn exec_root(&self) -> &Path {
        &self.inner.exec_root
    }

    /// The directory standing for a container's root filesystem (created by its first exec).
    pub fn container_root(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.inner.sandboxes.root_path(namespace, pod, container)
    }

    /// Upgraded sessions still running (a session ends once its connection and processes are gone).
    pub fn active_sessions(&self) -> usize {
        self.inner.sessions.load(Ordering::Acquire)
    }

    /// Every upgrade request answered so far, oldest first.
    pub fn upgrades(&self) -> Vec<UpgradeRecord> {
        self.inner
            .upgrades
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The local address standing for a pod port (starting its backend), if the pod declares it.
    pub async fn port_backend(&self, target: &PodTarget, port: u16) -> Option<SocketAddr> {
        self.inner.backends.addr(target, port).await.ok().flatten()
    }

    /// Ends every session and backend and waits for them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Answers an exec/attach/portforward upgrade request: `101 Switching Protocols` with the
    /// negotiated subprotocol (the session then runs on its own task), or a `Status` error.
    pub fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        target: PodTarget,
        what: StreamRequest,
    ) -> hyper::Response<SimBody> {
        let port_forward = matches!(what, StreamRequest::PortForward { .. });
        let subresource = match what {
            StreamRequest::Exec { .. } => "exec",
            StreamRequest::Attach { .. } => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        };
        let transport = requested_transport(req.headers());
        let negotiated = match negotiate::negotiate(req.headers(), port_forward) {
            Ok(n) => n,
            Err(e) => {
                let resp = negotiation_failure(&e, port_forward);
                self.record(subresource, transport, String::new(), resp.status().as_u16());
                return resp;
            }
        };
        if let Some(resp) = invalid_request(&target, &what, &negotiated) {
            self.record(subresource, transport, String::new(), resp.status().as_u16());
            return resp;
        }
        let response = switching_protocols(&req, &negotiated);
        self.record(subresource, transport, negotiated.protocol().to_string(), 101);
        let inner = self.inner.clone();
        let shutdown = inner.shutdown.child_token();
        let guard = SessionCount::enter(&self.inner.sessions);
        self.inner.tracker.spawn(async move {
            let _guard = guard;
            let upgraded = tokio::select! {
                u = hyper::upgrade::on(req) => u,
                _ = shutdown.cancelled() => return,
            };
            let Ok(upgraded) = upgraded else { return };
            run_session(inner, TokioIo::new(upgraded), negotiated, target, what, shutdown).await;
        });
        response
    }

    fn record(&self, subresource: &'static str, transport: &'static str, protocol: String, status: u16) {
        let mut log = self.inner.upgrades.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.len() >= UPGRADE_LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(UpgradeRecord { subresource, transport, protocol, status });
    }
}

/// Counts a running session until dropped.
struct SessionCount(Arc<AtomicUsize>);

impl SessionCount {
    fn enter(counter: &Arc<AtomicUsize>) -> SessionCount {
        counter.fetch_add(1, Ordering::AcqRel);
        SessionCount(counter.clone())
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn requested_transport(headers: &http::HeaderMap) -> &'static str {
    let upgrade = negotiate::header_list(headers, "upgrade");
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        "websocket"
    } else if upgrade.iter().any(|u| u.to_ascii_uppercase().starts_with("SPDY/")) {
        "spdy"
    } else {
        "none"
    }
}

async fn run_session(
    inner: Arc<Inner>,
    io: TokioIo<hyper::upgrade::Upgraded>,
    negotiated: Negotiated,
    target: PodTarget,
    what: StreamRequest,
    shutdown: CancellationToken,
) {
    match negotiated {
        Negotiated::WsRemoteCommand { version, framing, .. } => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            let (runner, flags) = runner_for(&inner, &target, what).await;
            session::ws_session(ws, version, framing, flags, runner, shutdown).await;
        }
        Negotiated::SpdyRemoteCommand { version, .. } => {
            let (runner, flags) = runner_for(&inner, &target, what).await;
            session::spdy_session(io, version, flags, runner, shutdown).await;
        }
        Negotiated::SpdyPortForward { .. } => {
            portforward::spdy_session(io, target, inner.backends.clone(), shutdown).await;
        }
        Negotiated::WsTunnelledSpdy { .. } => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            let tunnel = wstunnel::WsByteStream::new(ws);
            portforward::spdy_session(tunnel, target, inner.backends.clone(), shutdown).await;
        }
        Negotiated::WsPortForward { framing, .. } => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            let ports = match what {
                StreamRequest::PortForward { ports } => ports,
                _ => Vec::new(),
            };
            portforward::ws_channel_session(ws, framing, ports, target, inner.backends.clone(), shutdown)
                .await;
        }
    }
}

async fn runner_for(inner: &Inner, target: &PodTarget, what: StreamRequest) -> (Runner, StdioFlags) {
    let sandbox = inner.sandboxes.get(&target.namespace, &target.pod, &target.container).await;
    match what {
        StreamRequest::Exec { command, stdin, stdout, stderr, tty } => {
            let flags = StdioFlags { stdin, stdout, stderr, tty };
            match sandbox {
                Ok(sandbox) => (Runner::Exec { sandbox, command }, flags),
                Err(e) => (Runner::Fail(Outcome::Internal(e.to_string())), flags),
            }
        }
        StreamRequest::Attach { stdin, stdout, stderr, tty } => {
            let flags = StdioFlags { stdin, stdout, stderr, tty };
            let sandbox = match sandbox {
                Ok(s) => s,
                Err(e) => return (Runner::Fail(Outcome::Internal(e.to_string())), flags),
            };
            let key = (target.namespace.clone(), target.pod.clone(), target.container.clone());
            let mut mains = inner.mains.lock().await;
            if let Some(main) = mains.get(&key).filter(|m| m.is_running()) {
                return (Runner::Attach { main: main.clone() }, flags);
            }
            // The main process lives as long as `Streams`, not as long as this session.
            match MainProcess::start(&sandbox, inner.shutdown.clone(), &inner.tracker) {
                Ok(main) => {
                    mains.insert(key, main.clone());
                    (Runner::Attach { main }, flags)
                }
                Err(e) => {
                    (Runner::Fail(Outcome::Internal(format!("error attaching to container: {e}"))), flags)
                }
            }
        }
        StreamRequest::PortForward { .. } => (
            Runner::Fail(Outcome::Internal("port-forward is not a remote command".into())),
            StdioFlags { stdin: false, stdout: false, stderr: false, tty: false },
        ),
    }
}

fn full(body: Vec<u8>) -> SimBody {
    Full::new(Bytes::from(body)).boxed()
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<SimBody> {
    let mut resp = Response::new(full(status::failure_body(code.as_u16(), reason, message)));
    *resp.status_mut() = code;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn negotiation_failure(e: &NegotiationError, port_forward: bool) -> Response<SimBody> {
    match e {
        NegotiationError::NotUpgrade | NegotiationError::BadWebSocket => {
            status_response(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string())
        }
        NegotiationError::WsProtocol { .. } => {
            status_response(StatusCode::FORBIDDEN, "Forbidden", &e.to_string())
        }
        NegotiationError::SpdyProtocol { .. } => {
            let mut resp = status_response(StatusCode::FORBIDDEN, "Forbidden", &e.to_string());
            for p in negotiate::spdy_supported(port_forward) {
                resp.headers_mut().append("X-Accepted-Stream-Protocol-Versions", HeaderValue::from_static(p));
            }
            resp
        }
    }
}

/// The request checks the kubelet makes before upgrading.
fn invalid_request(
    target: &PodTarget,
    what: &StreamRequest,
    negotiated: &Negotiated,
) -> Option<Response<SimBody>> {
    let bad = |msg: &str| Some(status_response(StatusCode::BAD_REQUEST, "BadRequest", msg));
    let container_ok =
        target.container_names.is_empty() || target.container_names.contains(&target.container);
    match what {
        StreamRequest::Exec { command, stdin, stdout, stderr, .. } => {
            if command.is_empty() {
                return bad("you must specify at least one command for the container");
            }
            if !stdin && !stdout && !stderr {
                return bad("you must specify at least 1 of stdin, stdout, stderr");
            }
        }
        StreamRequest::Attach { stdin, stdout, stderr, .. } => {
            if !stdin && !stdout && !stderr {
                return bad("you must specify at least 1 of stdin, stdout, stderr");
            }
        }
        StreamRequest::PortForward { ports } => {
            if matches!(negotiated, Negotiated::WsPortForward { .. }) && ports.is_empty() {
                return bad("query parameter \"port\" is required");
            }
            return None;
        }
    }
    if !container_ok {
        return bad(&format!("container {} is not valid for pod {}", target.container, target.pod));
    }
    None
}

fn switching_protocols(
    req: &hyper::Request<hyper::body::Incoming>,
    negotiated: &Negotiated,
) -> Response<SimBody> {
    let mut resp = Response::new(Empty::new().boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    // Both values come from request headers (the protocol) or base64 (the accept key).
    let mut set = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(name, v);
        }
    };
    match negotiated {
        Negotiated::WsRemoteCommand { protocol, .. }
        | Negotiated::WsPortForward { protocol, .. }
        | Negotiated::WsTunnelledSpdy { protocol } => {
            let key = req.headers().get("sec-websocket-key").map(|k| k.as_bytes()).unwrap_or_default();
            set("upgrade", "websocket");
            set("sec-websocket-accept", &derive_accept_key(key));
            if !protocol.is_empty() {
                set("sec-websocket-protocol", protocol);
            }
        }
        Negotiated::SpdyRemoteCommand { protocol, .. } | Negotiated::SpdyPortForward { protocol } => {
            set("upgrade", "SPDY/3.1");
            if !protocol.is_empty() {
                set("x-stream-protocol-version", protocol);
            }
        }
    }
    resp
}
