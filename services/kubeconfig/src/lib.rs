//! kubegate's kubeconfig service: environments (API server URL, CA, the upstream credential
//! sealed to the proxy fleet's key), access policies, and the kubeconfig download. Event sourced
//! in its own PostgreSQL database; every event is published to `KUBEGATE_ENVIRONMENTS` through
//! the outbox. Users, teams, roles and signing keys come from identity's events, not from calls.

pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod kubeconfig_file;
pub mod projection;

use std::sync::Arc;

use kubegate_bus::{Bus, StreamDef};
use kubegate_eventstore::{EventStore, OutboxRelay};
use kubegate_seal::FleetPublicKey;
use kubegate_telemetry::Readiness;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::engine::{Engine, EngineError};
use crate::kubeconfig_file::{CaBundle, PublicEndpoint, ServerTrust};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] kubegate_eventstore::StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Bus(#[from] kubegate_bus::BusError),
    #[error(transparent)]
    Telemetry(#[from] kubegate_telemetry::TelemetryError),
}

impl Error {
    /// 64 (EX_USAGE) for configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Telemetry(_) => 64,
            _ => 1,
        }
    }
}

/// The public endpoint written into kubeconfigs, from the configured origin and CA file.
fn public_endpoint(config: &Config) -> Result<PublicEndpoint, Error> {
    let path = config.public_ca_file.display();
    let pem = std::fs::read(&config.public_ca_file)
        .map_err(|e| Error::Config(format!("KUBEGATE_PUBLIC_CA_FILE: cannot read {path}: {e}")))?;
    let ca = CaBundle::from_pem(&pem)
        .map_err(|e| Error::Config(format!("KUBEGATE_PUBLIC_CA_FILE {path}: {e}")))?;
    PublicEndpoint::new(&config.public_url, ServerTrust::CertificateAuthority(ca))
        .map_err(|e| Error::Config(format!("KUBEGATE_PUBLIC_URL: {e}")))
}

/// Runs the service until `shutdown`, then drains.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let telemetry = kubegate_telemetry::init(&config.telemetry.to_config("kubeconfig"))?;
    // The message never repeats the text: it could be a secret key pasted in the wrong place.
    let fleet = FleetPublicKey::parse(config.fleet_public_key.expose())
        .map_err(|e| Error::Config(format!("KUBEGATE_FLEET_PUBLIC_KEY: {e}")))?;
    let endpoint = public_endpoint(&config)?;
    let tls = config.tls.load(&[b"h2", b"http/1.1"]).map_err(Error::Config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen { addr: config.listen, source })?;
    let readiness = Readiness::new();
    readiness.set("event-store", false, "connecting");
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = config.telemetry.admin_listen {
        let admin = TcpListener::bind(addr).await.map_err(|source| Error::Listen { addr, source })?;
        let router = kubegate_telemetry::admin_router(readiness.clone(), telemetry.prometheus.clone());
        tasks.spawn(kubegate_telemetry::serve_admin(admin, router, shutdown.clone()));
    }

    let store = EventStore::connect(&config.database_url, 8, config.database_wait).await?;
    let bus = Bus::connect(&config.nats.to_config("kubegate-kubeconfig")).await?;
    {
        // NATS may be away at start: the outbox keeps events until the stream can take them.
        let bus = bus.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                match bus.ensure_stream(&StreamDef::environments()).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(error = %e, "environments stream not ensured yet"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
            }
        });
    }
    let engine = Engine::start(store.clone(), bus.clone(), readiness.clone()).await?;
    let relay_stop = CancellationToken::new();
    let relay = OutboxRelay::new(store.clone(), bus.clone()).spawn(relay_stop.clone());

    let state = http::AppState {
        engine,
        bus: bus.clone(),
        fleet,
        endpoint: Arc::new(endpoint),
        trusted: Arc::new(config.trusted.clone()),
        token_timeout: config.token_request_timeout,
    };
    readiness.set("event-store", true, "log replayed");
    let options = match tls {
        Some(tls) => kubegate_tls::ServeOptions::tls(tls),
        None => kubegate_tls::ServeOptions::plain(),
    };
    tracing::info!(listen = %config.listen, tls = options.tls.is_some(), "kubeconfig serving");
    kubegate_tls::serve_router(listener, http::router(state), options, shutdown.clone()).await;

    // Drain: in-flight requests are done; publish what the outbox still holds, then stop.
    relay_stop.cancel();
    relay.join().await;
    bus.flush().await;
    tasks.shutdown().await;
    Ok(())
}
