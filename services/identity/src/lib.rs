//! kubegate's identity service: users (argon2id passwords), teams, the global role, settings
//! (kubeconfig expiry), signing keys and tokens. Event sourced in its own PostgreSQL database;
//! every event is published to `KUBEGATE_IDENTITY` through the outbox.

pub mod config;
pub mod crypto;
pub mod domain;
pub mod engine;
pub mod http;
pub mod rpc;
pub mod summary;

use std::sync::Arc;

use kubegate_bus::{Bus, StreamDef};
use kubegate_events::Actor;
use kubegate_eventstore::{EventStore, OutboxRelay};
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::crypto::{MasterKey, Purpose};
use crate::domain::{Command, DomainError};
use crate::engine::{Engine, EngineError, ModelError, Origin};

/// Why the service could not start (or stopped).
pub type Error = kubegate_config::StartError;

/// A fresh signing key, its seed sealed with the master key, as a command.
pub fn new_signing_key_command(master: &MasterKey) -> Result<Command, String> {
    let kid = format!("k-{}", uuid::Uuid::now_v7().simple());
    let key = kubegate_token::SigningKey::generate(kid.clone()).map_err(|e| e.to_string())?;
    let sealed = master.seal(Purpose::SigningKey, key.seed().as_ref()).map_err(|e| e.to_string())?;
    Ok(Command::AddSigningKey { kid, public_key: key.public_key(), private_key: sealed })
}

/// First start: the `admin` user and a signing key. Safe when replicas start together.
async fn bootstrap(engine: &Engine, master: &MasterKey, admin_password: Option<&str>) -> Result<(), Error> {
    let (no_users, no_key) = engine
        .read(|s| (s.users.is_empty(), s.active_key(chrono::Utc::now()).is_none()))
        .await
        .map_err(Error::failed)?;
    let origin = || Origin { actor: Actor::system("identity"), correlation_id: "first-start".to_string() };
    if no_users {
        let password = admin_password.ok_or_else(|| {
            Error::Config("KUBEGATE_ADMIN_PASSWORD is required on first start: no users exist yet".into())
        })?;
        domain::decide::validate_password(password)
            .map_err(|e| Error::Config(format!("KUBEGATE_ADMIN_PASSWORD: {e}")))?;
        let sealed = crypto::seal_password(master, password).map_err(|e| Error::Config(e.to_string()))?;
        let command = Command::CreateUser {
            username: "admin".to_string(),
            role: kubegate_events::identity::GlobalRole::Admin,
            password: sealed,
        };
        match engine.execute(command, origin()).await {
            Ok(_) => tracing::info!("created the admin user"),
            Err(EngineError::Domain(ModelError::Domain(DomainError::Conflict(_)))) => {}
            Err(e) => return Err(Error::failed(e)),
        }
    }
    if no_key {
        let command = new_signing_key_command(master).map_err(Error::Config)?;
        engine.execute(command, origin()).await.map_err(Error::failed)?;
        tracing::info!("created the first signing key");
    }
    Ok(())
}

/// Runs identity until `shutdown`, then drains.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let master = MasterKey::parse(config.master_key.expose())
        .map_err(|e| Error::Config(format!("KUBEGATE_MASTER_KEY: {e}")))?;
    let tls = config.tls.load(&[b"h2", b"http/1.1"]).map_err(Error::Config)?;
    // `GET /state` on the admin listener: the summary `kubegate replay verify` compares.
    let (admin, state_of) =
        kubegate_config::state_route("the log is being replayed", |engine: Engine| async move {
            engine.read(|m| summary::summary(&m.state)).await.map_err(|e| e.to_string())
        });
    let kubegate_config::Basics { telemetry: _telemetry, readiness, listener, mut tasks } =
        kubegate_config::begin_with_admin("identity", &config.telemetry, config.listen, &shutdown, admin)
            .await?;
    readiness.set("event-store", false, "connecting");

    let store =
        EventStore::connect(&config.database_url, 8, config.database_wait).await.map_err(Error::failed)?;
    let engine = engine::start(store.clone(), master.clone()).await.map_err(Error::failed)?;
    bootstrap(&engine, &master, config.admin_password.as_ref().map(|s| s.expose())).await?;
    let _ = state_of.set(engine.clone());

    let bus =
        Bus::connect(&config.nats.to_config("kubegate-identity").with_service_inbox("identity")).await?;
    // NATS may be away at start: the outbox (or spool) keeps what cannot be published yet.
    let stream = StreamDef::identity();
    bus.ensure_stream_in_background(stream.clone(), shutdown.clone());
    let relay_stop = CancellationToken::new();
    let relay = OutboxRelay::new(store.clone(), bus.clone(), &stream.name).spawn(relay_stop.clone());
    tasks.spawn(rpc::serve(bus.clone(), engine.clone(), shutdown.clone()));
    let leads = relay.status.clone();
    tasks.spawn(kubegate_directory::writer::run::<kubegate_directory::Directory>(
        bus.clone(),
        (&config.snapshots).into(),
        move || leads.borrow().leader,
        shutdown.clone(),
    ));

    let decoy = crypto::seal_password(&master, &uuid::Uuid::new_v4().to_string())
        .map_err(|e| Error::Config(e.to_string()))?;
    let state = http::AppState {
        engine,
        master,
        session_ttl: config.session_ttl,
        throttle: Arc::new(http::throttle::Throttle::new(http::throttle::ThrottleLimits {
            per_user: config.signin_max_failures_per_user,
            per_address: config.signin_max_failures_per_address,
            window: config.signin_throttle_window,
        })),
        trusted: Arc::new(config.trusted.clone()),
        decoy: Arc::new(decoy),
    };
    readiness.set("event-store", true, "log replayed");
    let options = match tls {
        Some(tls) => kubegate_tls::ServeOptions::tls(tls),
        None => kubegate_tls::ServeOptions::plain(),
    };
    tracing::info!(listen = %config.listen, "identity serving");
    kubegate_tls::serve_router(listener, http::router(state), options, shutdown.clone()).await;

    // Drain: in-flight requests are done; publish what the outbox still holds, then stop.
    relay_stop.cancel();
    relay.join().await;
    bus.flush().await;
    tasks.shutdown().await;
    Ok(())
}
