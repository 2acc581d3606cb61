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
pub mod summary;
pub mod web;

use std::sync::Arc;

use kubegate_bus::{Bus, StreamDef};
use kubegate_eventstore::{EventStore, OutboxRelay};
use kubegate_seal::FleetPublicKey;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::engine::Engine;
use crate::kubeconfig_file::{CaBundle, PublicEndpoint, ServerTrust};

/// Why the service could not start (or stopped).
pub type Error = kubegate_config::StartError;

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
    // The message never repeats the text: it could be a secret key pasted in the wrong place.
    let fleet = FleetPublicKey::parse(config.fleet_public_key.expose())
        .map_err(|e| Error::Config(format!("KUBEGATE_FLEET_PUBLIC_KEY: {e}")))?;
    let endpoint = public_endpoint(&config)?;
    let tls = config.tls.load(&[b"h2", b"http/1.1"]).map_err(Error::Config)?;
    // `GET /state` on the admin listener: the summary `kubegate replay verify` compares.
    let (admin, state_of) =
        kubegate_config::state_route("the log is being replayed", |engine: Engine| async move {
            engine
                .read(|m| summary::summary(&m.environments, &m.identity.state))
                .await
                .map_err(|e| e.to_string())
        });
    let kubegate_config::Basics { telemetry: _telemetry, readiness, listener, mut tasks } =
        kubegate_config::begin_with_admin("kubeconfig", &config.telemetry, config.listen, &shutdown, admin)
            .await?;
    readiness.set("event-store", false, "connecting");

    let store =
        EventStore::connect(&config.database_url, 8, config.database_wait).await.map_err(Error::failed)?;
    let bus =
        Bus::connect(&config.nats.to_config("kubegate-kubeconfig").with_service_inbox("kubeconfig")).await?;
    // NATS may be away at start: the outbox (or spool) keeps what cannot be published yet.
    let stream = StreamDef::environments();
    bus.ensure_stream_in_background(stream.clone(), shutdown.clone());
    let engine = Engine::start(store.clone(), bus.clone(), readiness.clone()).await.map_err(Error::failed)?;
    let _ = state_of.set(engine.clone());
    let relay_stop = CancellationToken::new();
    let relay = OutboxRelay::new(store.clone(), bus.clone(), &stream.name).spawn(relay_stop.clone());
    // Every download is an event of this stream, so it grows long: the instance whose relay
    // leads writes the snapshot replicas start from.
    let leads = relay.status.clone();
    tasks.spawn(kubegate_directory::writer::run::<kubegate_directory::environments::EnvironmentLog>(
        bus.clone(),
        (&config.snapshots).into(),
        move || leads.borrow().leader,
        shutdown.clone(),
    ));

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
