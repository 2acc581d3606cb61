//! The kubeconfig service's model on the shared engine: its own environments (from its event
//! log) and its view of identity (from the `KUBEGATE_IDENTITY` feed, applied between batches as
//! the engine's side input, with readiness reported as it changes).

use std::time::Instant;

use chrono::{DateTime, Utc};
use kubegate_bus::{Bus, Feed, FeedItem};
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{DomainEvent, Envelope};
use kubegate_eventstore::EventStore;
use kubegate_eventstore::engine::{self, Model as EngineModel, Side};
use kubegate_telemetry::Readiness;
use tokio::sync::watch;

use crate::domain::{Command, Decision, DomainError, EnvironmentsState, Outcome, decide};
use crate::projection::{Action, Health, IdentityProjection};

pub use kubegate_eventstore::engine::Origin;

/// Readiness check name for the identity view.
pub const IDENTITY_CHECK: &str = "identity-projection";

pub type EngineError = engine::EngineError<DomainError>;
pub type Executed = engine::Executed<Outcome>;

/// Everything a read may look at.
pub struct Model {
    pub environments: EnvironmentsState,
    pub identity: IdentityProjection,
}

impl Model {
    /// Whether identity's view may be trusted now.
    pub fn identity_health(&self) -> Health {
        self.identity.health(Instant::now())
    }
}

impl EngineModel for Model {
    type Event = EnvironmentEvent;
    type Command = Command;
    type Outcome = Outcome;
    type Error = DomainError;

    fn position(&self) -> u64 {
        self.environments.position
    }

    fn set_position(&mut self, position: u64) {
        self.environments.position = position;
    }

    /// Only what the log gives is replayed; identity's view keeps following its stream.
    fn reset(&mut self) {
        self.environments = EnvironmentsState::default();
    }

    fn apply(&mut self, event: &Envelope<EnvironmentEvent>) {
        self.environments.apply(event);
    }

    fn decide(&self, command: &Command, _now: DateTime<Utc>) -> Result<Outcome, DomainError> {
        decide(&self.environments, &self.identity.state, command.clone())
    }

    fn decisions(outcome: &Outcome) -> &[Decision] {
        &outcome.decisions
    }
}

/// A cloneable handle on the engine, and a way to wait for identity's view to move.
#[derive(Clone)]
pub struct Engine {
    inner: engine::Engine<Model>,
    identity: watch::Receiver<u64>,
}

impl Engine {
    /// Replays the log, then starts the engine, which follows identity's stream on `bus` and
    /// reports on `readiness`.
    pub async fn start(store: EventStore, bus: Bus, readiness: Readiness) -> Result<Engine, EngineError> {
        readiness.set(IDENTITY_CHECK, false, Health::Loading.describe());
        let (identity_tx, identity) = watch::channel(0);
        let side = IdentityFeed { feed: follow_identity(&bus), bus, readiness, reported: None, identity_tx };
        let model =
            Model { environments: EnvironmentsState::default(), identity: IdentityProjection::default() };
        let inner = engine::Engine::start(store, model, side).await?;
        Ok(Engine { inner, identity })
    }

    /// Changes whenever identity's view applies events (its value: the last identity position).
    pub fn identity_changes(&self) -> watch::Receiver<u64> {
        self.identity.clone()
    }

    pub async fn execute(&self, command: Command, origin: Origin) -> Result<Executed, EngineError> {
        self.inner.execute(command, origin).await
    }

    /// Runs `f` on the model (after catching up with the log) and returns its result.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Model) -> R + Send + 'static,
    ) -> Result<R, EngineError> {
        self.inner.read(f).await
    }
}

fn follow_identity(bus: &Bus) -> Feed {
    Feed::follow(bus.clone(), IdentityEvent::STREAM, &IdentityEvent::subject_filter(), 1)
}

/// Identity's stream, applied to the model's view of identity.
struct IdentityFeed {
    feed: Feed,
    bus: Bus,
    readiness: Readiness,
    /// The identity health last reported to readiness.
    reported: Option<Health>,
    /// Tells waiting handlers that identity's view moved.
    identity_tx: watch::Sender<u64>,
}

impl Side<Model> for IdentityFeed {
    type Item = FeedItem;

    async fn recv(&mut self) -> FeedItem {
        loop {
            if let Some(item) = self.feed.recv().await {
                return item;
            }
            tracing::warn!("identity feed ended; following the stream again");
            self.feed = follow_identity(&self.bus);
        }
    }

    fn try_recv(&mut self) -> Option<FeedItem> {
        self.feed.rx.try_recv().ok()
    }

    fn apply(&mut self, model: &mut Model, item: FeedItem) {
        if model.identity.handle(item, Instant::now()) == Action::Restart {
            self.feed = follow_identity(&self.bus);
        }
    }

    /// Tells waiting handlers and readiness when identity's view changes.
    fn tick(&mut self, model: &mut Model) {
        let position = model.identity.state.position;
        self.identity_tx.send_if_modified(|p| std::mem::replace(p, position) != position);
        let health = model.identity.health(Instant::now());
        if self.reported.as_ref() != Some(&health) {
            self.readiness.set(IDENTITY_CHECK, health.is_ready(), health.describe());
            if health.is_ready() {
                tracing::info!(users = model.identity.state.users.len(), "identity view caught up");
            } else if !matches!(health, Health::Loading) {
                tracing::warn!(state = %health.describe(), "identity view not trusted");
            }
            self.reported = Some(health);
        }
    }
}
