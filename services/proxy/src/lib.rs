//! kubegate's proxy: the public origin. It serves `/api/endpoints/{id}/kubernetes/*` itself —
//! tokens checked and requests authorized from a cache built from the JetStream event streams,
//! forwarded with kubegate's credential and the user's impersonation headers, audited — and
//! passes every other route to identity or kubeconfig.

pub mod audit;
pub mod authz;
pub mod body;
pub mod cache;
pub mod config;
pub mod filter;
pub mod headers;
mod kubernetes;
pub mod passthrough;
pub mod request_info;
pub mod status;
pub mod upgrade;
pub mod upstream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use kubegate_bus::{Bus, StreamDef};
use kubegate_tls::ConnInfo;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::audit::Auditor;
use crate::body::ProxyBody;
use crate::cache::{Cache, Trust};
use crate::passthrough::Services;

/// Why the service could not start (or stopped).
pub type Error = kubegate_config::StartError;

/// Limits that apply to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub request_timeout: Duration,
    pub max_watches_per_user: usize,
    pub max_staleness: Option<Duration>,
}

/// One replica's shared state.
pub struct Proxy {
    pub cache: Arc<Cache>,
    pub auditor: Auditor,
    pub bus: Bus,
    pub services: Services,
    pub limits: Limits,
    /// Cancelled after the drain: closes tunnels and streams still open.
    pub shutdown: CancellationToken,
}

const KUBERNETES_MARK: &str = "/kubernetes";

/// The client end of a connection, its address written out once for the records of all the
/// requests it carries.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    pub text: Arc<str>,
}

impl From<ConnInfo> for Peer {
    fn from(info: ConnInfo) -> Peer {
        Peer { addr: info.remote, text: info.remote.to_string().into() }
    }
}

impl Proxy {
    /// Routes one request of the public origin.
    pub fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'static {
        use tracing::Instrument;
        let span = kubegate_telemetry::propagation::request_span(
            "proxy",
            req.method().as_str(),
            req.uri().path(),
            req.headers(),
        );
        // Not an `async fn`: its future would keep `req` and `peer` beside the route's future
        // that they move into.
        self.route(req, peer).instrument(span.unwrap_or_else(tracing::Span::none))
    }

    /// Not an `async fn`: the Kubernetes path's future, the hot one, would otherwise hold the
    /// request and its parts beside `kubernetes::handle`'s, which holds them too.
    fn route(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<ProxyBody>> {
        use futures::future::Either;
        let mut id = uuid::Uuid::encode_buffer();
        let request_id = String::from(&*uuid::Uuid::now_v7().simple().encode_lower(&mut id));
        let path = req.uri().path();
        if let Some(rest) = path.strip_prefix("/api/endpoints/")
            && let Some(slash) = rest.find('/')
            && rest[slash..].starts_with(KUBERNETES_MARK)
            && (rest.len() == slash + KUBERNETES_MARK.len()
                || rest.as_bytes()[slash + KUBERNETES_MARK.len()] == b'/')
        {
            let env = rest[..slash].to_string();
            let k8s_path = rest[slash + KUBERNETES_MARK.len()..].to_string();
            return Either::Left(kubernetes::handle(self, req, peer, env, k8s_path, request_id));
        }
        Either::Right(async move {
            if let Some(conflict) = headers::authority_conflict(req.uri(), req.headers()) {
                return status::rest_error(StatusCode::BAD_REQUEST, &conflict);
            }
            match passthrough::route(req.uri().path()) {
                Some(target) => self.services.forward(target, req, peer.addr, &request_id).await,
                None => status::rest_error(StatusCode::NOT_FOUND, "no such route"),
            }
        })
    }
}

fn read_file(path: &std::path::Path, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{what} {}: {e}", path.display())))
}

/// Runs a proxy replica until `shutdown`, then drains.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let fleet = kubegate_seal::FleetSecretKey::parse(config.fleet_key.expose())
        .map_err(|e| Error::Config(format!("KUBEGATE_FLEET_KEY: {e}")))?;
    if config.tls.plain_http {
        return Err(Error::Config("the proxy serves HTTPS only; remove --insecure-plain-http".into()));
    }
    let tls = config
        .tls
        .load(&[b"h2", b"http/1.1"])
        .map_err(Error::Config)?
        .ok_or_else(|| Error::Config("--tls-cert and --tls-key are required".into()))?;
    let services_ca =
        match &config.services_ca_file {
            Some(path) => read_file(path, "KUBEGATE_SERVICES_CA_FILE")?,
            None => return Err(Error::Config(
                "KUBEGATE_SERVICES_CA_FILE is required (the CA of identity's and kubeconfig's certificates)"
                    .into(),
            )),
        };
    let services_tls = kubegate_tls::client_config(&services_ca, None, &[])
        .map_err(|e| Error::Config(format!("KUBEGATE_SERVICES_CA_FILE: {e}")))?;
    for (name, url) in
        [("KUBEGATE_IDENTITY_URL", &config.identity_url), ("KUBEGATE_KUBECONFIG_URL", &config.kubeconfig_url)]
    {
        if !url.starts_with("https://") || url.parse::<http::Uri>().is_err() {
            return Err(Error::Config(format!("{name} must be an https URL, not {url:?}")));
        }
    }
    let replica = config.replica_id.clone().unwrap_or_else(default_replica_id);
    // `GET /state` on the admin listener: the cache's summary, what `kubegate replay verify`
    // compares with the logs.
    let (admin, state_of) =
        kubegate_config::state_route("starting", |cache: Arc<Cache>| async move { Ok(cache.summary()) });
    let kubegate_config::Basics { telemetry: _telemetry, readiness, listener, mut tasks } =
        kubegate_config::begin_with_admin("proxy", &config.telemetry, config.listen, &shutdown, admin)
            .await?;
    readiness.set("cache", false, "replaying the event streams");

    let bus = Bus::connect(
        &config.nats.to_config(&format!("kubegate-proxy-{replica}")).with_service_inbox("proxy"),
    )
    .await?;
    let cache = Arc::new(Cache::new(fleet));
    let _ = state_of.set(cache.clone());
    let follow_stop = CancellationToken::new();
    tokio::spawn(cache::follow::run(cache.clone(), bus.clone(), config.cache_snapshots, follow_stop.clone()));
    // NATS may be away at start: the outbox (or spool) keeps what cannot be published yet.
    bus.ensure_stream_in_background(
        StreamDef::audit(config.audit_max_age, config.audit_max_bytes),
        shutdown.clone(),
    );
    let audit_stop = CancellationToken::new();
    let (auditor, audit_task) = audit::spawn(
        bus.clone(),
        &replica,
        config.audit_spool_dir.clone(),
        config.audit_spool_max_bytes,
        audit_stop.clone(),
    )
    .map_err(|e| Error::failed(format!("cannot open the audit spool: {e}")))?;

    let proxy = Arc::new(Proxy {
        cache: cache.clone(),
        auditor: auditor.clone(),
        bus: bus.clone(),
        services: Services {
            identity: config.identity_url.clone(),
            kubeconfig: config.kubeconfig_url.clone(),
            client: upstream::build_client(services_tls, true),
            max_body_bytes: config.max_body_bytes as usize,
        },
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            max_watches_per_user: config.max_watches_per_user,
            max_staleness: config.max_staleness,
        },
        shutdown: CancellationToken::new(),
    });

    // Readiness follows the cache, the bus (in strict mode) and the audit spool.
    {
        let readiness = readiness.clone();
        let proxy = proxy.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => {
                        readiness.set("draining", false, "shutting down");
                        return;
                    }
                    _ = tick.tick() => {}
                }
                let trust = proxy.cache.trust();
                readiness.set(
                    "cache",
                    trust == Trust::Current,
                    format!("{trust:?}; {} environments", proxy.cache.environment_count()),
                );
                let away = match proxy.bus.state() {
                    kubegate_bus::ConnectionState::Disconnected { since } => since.elapsed().as_secs_f64(),
                    kubegate_bus::ConnectionState::Connected => 0.0,
                };
                // How old what the cache knows may be: the time since the bus went away.
                metrics::gauge!("kubegate_proxy_cache_staleness_seconds").set(away);
                let stale = match (proxy.limits.max_staleness, proxy.bus.state()) {
                    (Some(max), kubegate_bus::ConnectionState::Disconnected { since }) => {
                        since.elapsed() > max
                    }
                    _ => false,
                };
                readiness.set("bus", !stale, if stale { "event bus away longer than allowed" } else { "ok" });
                let spool_full = proxy.auditor.status.spool_full.load(std::sync::atomic::Ordering::Relaxed);
                readiness.set(
                    "audit",
                    !spool_full,
                    if spool_full { "audit spool over its limit" } else { "ok" },
                );
            }
        });
    }

    let mut options = kubegate_tls::ServeOptions::tls(tls);
    options.max_connections = config.max_connections;
    options.grace = config.shutdown_grace;
    options.spin = config.serve_spin;
    let handler = proxy.clone();
    let threads = match config.serve_threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };
    tracing::info!(listen = %config.listen, replica = %replica, threads, "proxy serving");
    let mut serving = kubegate_tls::serve_on_threads(
        listener,
        threads,
        move |info: ConnInfo| {
            let proxy = handler.clone();
            let peer = Peer::from(info);
            // Combinators, not `async` blocks, which would hold the request's future twice.
            tower::service_fn(move |req: Request<Incoming>| {
                futures::FutureExt::map(proxy.clone().handle(req, peer.clone()), Ok::<_, Infallible>)
            })
        },
        options,
        shutdown.clone(),
    )
    .map_err(|source| Error::Listen { addr: config.listen, source })?;
    serving.drained().await;

    // Drained (or the grace period is over): close what is still open (tunnels end and record
    // it on their threads), then flush the audit.
    proxy.shutdown.cancel();
    proxy.cache.sessions.cut_all();
    follow_stop.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    serving.end().await;
    audit_stop.cancel();
    audit_task.join().await;
    bus.flush().await;
    tasks.shutdown().await;
    Ok(())
}

fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    if host.is_empty() { format!("replica-{suffix}") } else { format!("{host}-{suffix}") }
}
