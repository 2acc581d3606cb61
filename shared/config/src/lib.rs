//! Configuration pieces every kubegate service shares (NATS, telemetry, TLS, admin listener,
//! trusted proxies), as `clap` argument groups that read flags or `KUBEGATE_*` variables. Each
//! service flattens them into its own config struct, parsed once in `main`; nothing deeper reads
//! the environment.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::{Args, Parser};

/// Parses flags and environment into `T`; on a bad configuration prints one line and exits 64
/// (EX_USAGE). `--help` and `--version` exit 0.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            std::process::exit(0)
        }
        Err(e) => {
            let msg = e.to_string();
            let first = msg.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid configuration");
            eprintln!("{}: {}", T::command().get_name(), first.trim_start_matches("error: "));
            std::process::exit(64)
        }
    }
}

/// Exits 64 with one line naming what is wrong (for checks clap cannot do).
pub fn exit_config_error(service: &str, message: impl fmt::Display) -> ! {
    eprintln!("{service}: invalid configuration: {message}");
    std::process::exit(64)
}

/// Parses durations like `500ms`, `30s`, `2m`, `90d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

#[derive(Args, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long = "nats-url", env = "KUBEGATE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// NATS user name (with --nats-password).
    #[arg(long = "nats-user", env = "KUBEGATE_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long = "nats-password", env = "KUBEGATE_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<Secret>,
    /// NATS credentials file (JWT and nkey seed).
    #[arg(long = "nats-creds", env = "KUBEGATE_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// CA bundle for the NATS server's certificate; enables TLS.
    #[arg(long = "nats-ca", env = "KUBEGATE_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate for NATS mutual TLS.
    #[arg(long = "nats-cert", env = "KUBEGATE_NATS_CERT", requires = "nats_key")]
    pub nats_cert: Option<PathBuf>,
    /// Client key for NATS mutual TLS.
    #[arg(long = "nats-key", env = "KUBEGATE_NATS_KEY", requires = "nats_cert")]
    pub nats_key: Option<PathBuf>,
    /// Subject prefix of reply inboxes (default `_INBOX_kubegate_<service>`, which the bus
    /// permissions in deploy/ expect).
    #[arg(long = "nats-inbox-prefix", env = "KUBEGATE_NATS_INBOX_PREFIX")]
    pub nats_inbox_prefix: Option<String>,
}

impl fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_config("").fmt(f)
    }
}

impl NatsArgs {
    pub fn to_config(&self, name: &str) -> kubegate_bus::NatsConfig {
        kubegate_bus::NatsConfig {
            url: self.nats_url.clone(),
            name: name.to_string(),
            user: self.nats_user.clone(),
            password: self.nats_password.as_ref().map(|s| s.expose().to_string()),
            creds_file: self.nats_creds.clone(),
            tls_ca: self.nats_ca.clone(),
            tls_cert: self.nats_cert.clone(),
            tls_key: self.nats_key.clone(),
            inbox_prefix: self.nats_inbox_prefix.clone(),
            rpc_reply_prefix: None,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct TelemetryArgs {
    /// Log format: human or json.
    #[arg(long = "log-format", env = "KUBEGATE_LOG_FORMAT", default_value = "human")]
    pub log_format: kubegate_telemetry::LogFormat,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long = "log", env = "KUBEGATE_LOG", default_value = "info")]
    pub log: String,
    /// OTLP/gRPC endpoint for traces; unset disables export.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Admin listener (plain HTTP: /healthz, /readyz, /metrics).
    #[arg(long = "admin-listen", env = "KUBEGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
}

impl TelemetryArgs {
    pub fn to_config(&self, service: &str) -> kubegate_telemetry::TelemetryConfig {
        kubegate_telemetry::TelemetryConfig {
            service: service.to_string(),
            log_format: self.log_format,
            log_filter: self.log.clone(),
            otlp_endpoint: self.otlp_endpoint.clone().filter(|s| !s.is_empty()),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServerTlsArgs {
    /// Server certificate chain (PEM).
    #[arg(long = "tls-cert", env = "KUBEGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long = "tls-key", env = "KUBEGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP; only behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    #[arg(long = "insecure-plain-http", env = "KUBEGATE_INSECURE_PLAIN_HTTP", default_value_t = false)]
    pub plain_http: bool,
}

impl ServerTlsArgs {
    /// The rustls server config, `None` for plain HTTP. Errors name the file at fault.
    pub fn load(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Option<Arc<kubegate_tls::rustls_config::ServerConfig>>, String> {
        if self.plain_http {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Err("--tls-cert and --tls-key are required (or --insecure-plain-http)".to_string());
        };
        let cert_pem =
            std::fs::read_to_string(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
        let key_pem =
            std::fs::read_to_string(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
        kubegate_tls::server_config(&cert_pem, &key_pem, alpn).map(Some).map_err(|e| e.to_string())
    }
}

/// How often the owner of a long stream writes the snapshot replicas start from (identity: what
/// they know of users, keys and revocations; kubeconfig: the environments and their policies).
#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// Write a snapshot to KUBEGATE_SNAPSHOTS after this many events of the service's stream, so
    /// a joining replica replays only the events after it; 0 writes none.
    #[arg(long = "snapshot-every", env = "KUBEGATE_SNAPSHOT_EVERY", default_value_t = 10_000)]
    pub every: u64,
    /// Write a snapshot this long after the last one when events arrived since.
    #[arg(long = "snapshot-max-age", env = "KUBEGATE_SNAPSHOT_MAX_AGE", default_value = "1h", value_parser = parse_duration)]
    pub max_age: Duration,
}

/// Addresses allowed to speak for a client (`X-Forwarded-For`, `X-Forwarded-Proto`).
#[derive(Args, Debug, Clone)]
pub struct TrustedProxyArgs {
    /// CIDRs of proxies whose X-Forwarded-* headers are believed.
    #[arg(
        long = "trusted-proxies",
        env = "KUBEGATE_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl TrustedProxyArgs {
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&addr))
    }
}

/// A secret taken from a flag or variable. `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// An error a service's `run` can end with, and the process exit status it means.
pub trait ExitStatus: fmt::Display {
    /// 64 (EX_USAGE) for configuration errors, 1 otherwise.
    fn exit_status(&self) -> i32;
}

/// The whole `main` of a service: parse its configuration (a bad one exits 64 before anything
/// starts), run it on a multi-threaded runtime until SIGTERM or Ctrl-C, exit with its status.
pub fn service_main<C, F, Fut, E>(name: &str, run: F) -> !
where
    C: Parser,
    F: FnOnce(C, tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: ExitStatus,
{
    let config: C = parse_or_exit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            std::process::exit(70);
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = kubegate_telemetry::signals::shutdown_on_signals();
        match run(config, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{name}: {e}");
                e.exit_status()
            }
        }
    });
    std::process::exit(code);
}

/// Why a service could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Telemetry(#[from] kubegate_telemetry::TelemetryError),
    #[error(transparent)]
    Bus(#[from] kubegate_bus::BusError),
    /// Anything else that stops a start: the event store, the engine, the audit spool.
    #[error("{0}")]
    Failed(String),
}

impl StartError {
    pub fn failed(e: impl fmt::Display) -> StartError {
        StartError::Failed(e.to_string())
    }
}

impl ExitStatus for StartError {
    fn exit_status(&self) -> i32 {
        match self {
            StartError::Config(_) | StartError::Telemetry(_) => 64,
            _ => 1,
        }
    }
}

/// What every service sets up first: logs, metrics and traces; its listener; readiness and the
/// admin listener serving it.
pub struct Basics {
    pub telemetry: kubegate_telemetry::TelemetryGuard,
    pub readiness: kubegate_telemetry::Readiness,
    pub listener: tokio::net::TcpListener,
    /// Background tasks (the admin listener); stop them with `shutdown().await` at the end.
    pub tasks: tokio::task::JoinSet<()>,
}

pub async fn begin(
    service: &str,
    telemetry: &TelemetryArgs,
    listen: SocketAddr,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Basics, StartError> {
    begin_with_admin(service, telemetry, listen, shutdown, axum::Router::new()).await
}

/// The admin listener's `GET /state`, the summary of a service's read model that `kubegate replay
/// verify` compares with the logs: a router for [`begin_with_admin`], and the cell the service
/// fills once its model is replayed. Until then it answers 503 with `pending`; when `summary`
/// fails, 503 with its error.
pub fn state_route<T, S, F, Fut>(pending: &'static str, summary: F) -> (axum::Router, Arc<OnceLock<T>>)
where
    T: Clone + Send + Sync + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<S, String>> + Send + 'static,
    S: serde::Serialize,
{
    use axum::response::IntoResponse;
    let cell: Arc<OnceLock<T>> = Arc::default();
    let model = cell.clone();
    let answer = move || {
        let (model, summary) = (model.clone(), summary.clone());
        async move {
            let unavailable =
                |why: String| (axum::http::StatusCode::SERVICE_UNAVAILABLE, why).into_response();
            let Some(model) = model.get().cloned() else { return unavailable(pending.into()) };
            match summary(model).await {
                Ok(summary) => axum::Json(summary).into_response(),
                Err(why) => unavailable(why),
            }
        }
    };
    (axum::Router::new().route("/state", axum::routing::get(answer)), cell)
}

/// [`begin`], with `extra` routes on the admin listener (e.g. `/state`, what `kubegate replay
/// verify` compares with the logs).
pub async fn begin_with_admin(
    service: &str,
    telemetry: &TelemetryArgs,
    listen: SocketAddr,
    shutdown: &tokio_util::sync::CancellationToken,
    extra: axum::Router,
) -> Result<Basics, StartError> {
    let guard = kubegate_telemetry::init(&telemetry.to_config(service))?;
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })
    };
    let listener = bind(listen).await?;
    let readiness = kubegate_telemetry::Readiness::new();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = telemetry.admin_listen {
        let admin = bind(addr).await?;
        let router =
            kubegate_telemetry::admin_router(readiness.clone(), guard.prometheus.clone()).merge(extra);
        tasks.spawn(kubegate_telemetry::serve_admin(admin, router, shutdown.clone()));
    }
    Ok(Basics { telemetry: guard, readiness, listener, tasks })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get_state(router: &axum::Router) -> (StatusCode, String) {
        let request = Request::get("/state").body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn state_route_waits_for_the_model_then_answers_its_summary_or_why_not() {
        let failing = Arc::new(AtomicBool::new(false));
        let fail = failing.clone();
        let (router, cell) = state_route("still replaying", move |model: Arc<Vec<u64>>| {
            let fail = fail.load(Ordering::SeqCst);
            async move { if fail { Err("the model is gone".to_string()) } else { Ok(model.iter().sum::<u64>()) } }
        });
        assert_eq!(get_state(&router).await, (StatusCode::SERVICE_UNAVAILABLE, "still replaying".into()));
        assert!(cell.set(Arc::new(vec![1, 2, 39])).is_ok());
        assert_eq!(get_state(&router).await, (StatusCode::OK, "42".into()));
        failing.store(true, Ordering::SeqCst);
        assert_eq!(get_state(&router).await, (StatusCode::SERVICE_UNAVAILABLE, "the model is gone".into()));
    }
}
