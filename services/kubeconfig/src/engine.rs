//! The one task that owns the service's state: its own environments (from its event log) and
//! its view of identity (from the `KUBEGATE_IDENTITY` feed). Commands and reads queue up in a
//! channel; before each batch the task catches up with the log (other replicas' writes), decides
//! each command against the state, appends the batch's events in one transaction (group commit),
//! applies them and answers. Feed items are applied between batches. Handlers never touch the
//! state directly, so no lock is ever held across an await.

use std::time::{Duration, Instant};

use chrono::Utc;
use kubegate_bus::{Bus, Feed, FeedItem, StreamDef};
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope};
use kubegate_eventstore::{EventStore, Expected, StoreError, StreamAppend};
use kubegate_telemetry::Readiness;
use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{Command, DomainError, EnvironmentsState, Outcome, decide};
use crate::projection::{Action, Health, IdentityProjection};

const MAX_BATCH: usize = 256;
const REPLAY_PAGE: usize = 10_000;
/// Feed items applied in one go before requests get a turn.
const FEED_BURST: usize = 4096;
/// Readiness check name for the identity view.
pub const IDENTITY_CHECK: &str = "identity-projection";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the kubeconfig service's event store is unavailable: {0}")]
    Unavailable(String),
    #[error("another replica changed the same data at the same time; try again")]
    Contended,
    #[error("the kubeconfig engine has stopped")]
    Stopped,
}

/// Who asks, and the request that caused it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub actor: Actor,
    pub correlation_id: String,
}

/// What an executed command produced.
#[derive(Debug, Clone, Default)]
pub struct Executed {
    pub outcome: Outcome,
    pub stored: Vec<RawEnvelope>,
}

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

type ReadFn = Box<dyn FnOnce(&Model) + Send>;

enum Request {
    Execute { command: Command, origin: Origin, reply: oneshot::Sender<Result<Executed, EngineError>> },
    Read(ReadFn),
}

/// A cloneable handle on the engine task.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Request>,
    identity: watch::Receiver<u64>,
}

impl Engine {
    /// Rebuilds the state from the whole log, then starts the task, which follows identity's
    /// stream on `bus` and reports on `readiness`.
    pub async fn start(store: EventStore, bus: Bus, readiness: Readiness) -> Result<Engine, EngineError> {
        readiness.set(IDENTITY_CHECK, false, Health::Loading.describe());
        let feed = follow_identity(&bus);
        let (identity_tx, identity_rx) = watch::channel(0);
        let mut task = Task {
            identity_tx,
            store,
            bus,
            readiness,
            feed,
            model: Model {
                environments: EnvironmentsState::default(),
                identity: IdentityProjection::default(),
            },
            dirty: false,
            reported: None,
        };
        task.rebuild().await?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(task.run(rx));
        Ok(Engine { tx, identity: identity_rx })
    }

    /// Changes whenever identity's view applies events (its value: the last identity position).
    pub fn identity_changes(&self) -> watch::Receiver<u64> {
        self.identity.clone()
    }

    pub async fn execute(&self, command: Command, origin: Origin) -> Result<Executed, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Execute { command, origin, reply }).await.map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Runs `f` on the current state (after catching up with the log) and returns its result.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Model) -> R + Send + 'static,
    ) -> Result<R, EngineError> {
        let (reply, rx) = oneshot::channel();
        let job: ReadFn = Box::new(move |m| {
            let _ = reply.send(f(m));
        });
        self.tx.send(Request::Read(job)).await.map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }
}

fn follow_identity(bus: &Bus) -> Feed {
    Feed::follow(bus.clone(), &StreamDef::identity().name, &IdentityEvent::subject_filter(), 1)
}

struct Pending {
    command: Command,
    origin: Origin,
    reply: oneshot::Sender<Result<Executed, EngineError>>,
}

struct Task {
    store: EventStore,
    bus: Bus,
    readiness: Readiness,
    feed: Feed,
    model: Model,
    /// The state may hold events that were never stored: rebuild before trusting it.
    dirty: bool,
    /// The identity health last reported to readiness.
    reported: Option<Health>,
    /// Tells waiting handlers that identity's view moved.
    identity_tx: watch::Sender<u64>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = self.feed.recv() => {
                    match item {
                        Some(item) => self.on_feed(item),
                        None => {
                            tracing::warn!("identity feed ended; following the stream again");
                            self.model.identity = IdentityProjection::default();
                            self.feed = follow_identity(&self.bus);
                        }
                    }
                    let mut burst = 1;
                    while burst < FEED_BURST {
                        match self.feed.rx.try_recv() {
                            Ok(item) => self.on_feed(item),
                            Err(_) => break,
                        }
                        burst += 1;
                    }
                    let position = self.model.identity.state.position;
                    self.identity_tx.send_if_modified(|p| std::mem::replace(p, position) != position);
                    self.report();
                }
                request = rx.recv() => {
                    let Some(first) = request else { return };
                    self.batch(first, &mut rx).await;
                }
                _ = tick.tick() => self.report(),
            }
        }
    }

    fn on_feed(&mut self, item: FeedItem) {
        if self.model.identity.handle(item, Instant::now()) == Action::Restart {
            self.feed = follow_identity(&self.bus);
        }
    }

    /// Tells readiness when identity's view changes health.
    fn report(&mut self) {
        let health = self.model.identity.health(Instant::now());
        if self.reported.as_ref() != Some(&health) {
            self.readiness.set(IDENTITY_CHECK, health.is_ready(), health.describe());
            if health.is_ready() {
                tracing::info!(users = self.model.identity.state.users.len(), "identity view caught up");
            } else if !matches!(health, Health::Loading) {
                tracing::warn!(state = %health.describe(), "identity view not trusted");
            }
            self.reported = Some(health);
        }
    }

    async fn batch(&mut self, first: Request, rx: &mut mpsc::Receiver<Request>) {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let synced = self.sync().await;
        let mut pending: Vec<Pending> = Vec::new();
        for request in batch {
            match request {
                Request::Read(f) => {
                    // Reads see every command queued before them.
                    self.flush(&mut pending).await;
                    f(&self.model);
                }
                Request::Execute { command, origin, reply } => {
                    if let Err(e) = &synced {
                        let _ = reply.send(Err(EngineError::Unavailable(e.to_string())));
                        continue;
                    }
                    pending.push(Pending { command, origin, reply });
                }
            }
        }
        self.flush(&mut pending).await;
    }

    /// Brings the state up to date with the log.
    async fn sync(&mut self) -> Result<(), EngineError> {
        if self.dirty { self.rebuild().await } else { self.catch_up().await }
    }

    async fn rebuild(&mut self) -> Result<(), EngineError> {
        self.model.environments = EnvironmentsState::default();
        self.dirty = true;
        self.catch_up().await?;
        self.dirty = false;
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), EngineError> {
        let state = &mut self.model.environments;
        loop {
            let page = self
                .store
                .read_after(state.position, REPLAY_PAGE)
                .await
                .map_err(|e| EngineError::Unavailable(e.to_string()))?;
            let n = page.len();
            for raw in page {
                match raw.decode::<EnvironmentEvent>() {
                    Ok(env) => state.apply(&env),
                    Err(e) => {
                        tracing::error!(position = raw.position, error = %e, "cannot decode stored event");
                        state.position = raw.position;
                    }
                }
            }
            if n < REPLAY_PAGE {
                return Ok(());
            }
        }
    }

    /// Decides every pending command, appends all their events in one transaction, answers.
    async fn flush(&mut self, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let mut work: Vec<Pending> = std::mem::take(pending);
        for attempt in 0..3 {
            let now = Utc::now();
            let mut appends: Vec<StreamAppend> = Vec::new();
            let mut decided: Vec<(Pending, Outcome, usize, usize)> = Vec::new();
            for p in work {
                let result = decide(&self.model.environments, &self.model.identity.state, p.command.clone());
                match result {
                    Err(e) => {
                        let _ = p.reply.send(Err(EngineError::Domain(e)));
                    }
                    Ok(outcome) => {
                        let start = appends.iter().map(|a| a.events.len()).sum::<usize>();
                        let mut count = 0;
                        for d in &outcome.decisions {
                            if d.events.is_empty() {
                                continue;
                            }
                            let envs: Vec<Envelope<EnvironmentEvent>> = d
                                .events
                                .iter()
                                .map(|e| {
                                    let mut env = Envelope::new(
                                        d.stream.clone(),
                                        p.origin.actor.clone(),
                                        p.origin.correlation_id.clone(),
                                        e.clone(),
                                    );
                                    env.occurred_at = now;
                                    env
                                })
                                .collect();
                            // Later commands of the batch decide on top of earlier ones.
                            for env in &envs {
                                self.model.environments.apply(env);
                            }
                            self.dirty = true;
                            count += envs.len();
                            let expected = d.expected.map(Expected::version).unwrap_or(Expected::Any);
                            match StreamAppend::typed(d.stream.clone(), expected, envs) {
                                Ok(a) => appends.push(a),
                                Err(e) => tracing::error!(error = %e, "cannot encode event"),
                            }
                        }
                        decided.push((p, outcome, start, count));
                    }
                }
            }
            if appends.is_empty() {
                for (p, outcome, _, _) in decided {
                    let _ = p.reply.send(Ok(Executed { outcome, stored: Vec::new() }));
                }
                return;
            }
            match self.store.append(&appends).await {
                Ok(stored) => {
                    if let Some(last) = stored.last() {
                        self.model.environments.position = last.position;
                    }
                    self.dirty = false;
                    for (p, outcome, start, count) in decided {
                        let stored_part =
                            stored.get(start..start + count).map(|s| s.to_vec()).unwrap_or_default();
                        let _ = p.reply.send(Ok(Executed { outcome, stored: stored_part }));
                    }
                    return;
                }
                Err(StoreError::Conflict { stream, .. }) if attempt < 2 => {
                    tracing::info!(%stream, "concurrent write by another replica; deciding again");
                    work = decided.into_iter().map(|(p, ..)| p).collect();
                    if let Err(e) = self.rebuild().await {
                        for p in work {
                            let _ = p.reply.send(Err(EngineError::Unavailable(e.to_string())));
                        }
                        return;
                    }
                }
                Err(e) => {
                    let contended = matches!(e, StoreError::Conflict { .. });
                    let message = e.to_string();
                    for (p, ..) in decided {
                        let _ = p.reply.send(Err(if contended {
                            EngineError::Contended
                        } else {
                            EngineError::Unavailable(message.clone())
                        }));
                    }
                    // The tentative events were not stored: rebuild before the next decision.
                    if let Err(e) = self.rebuild().await {
                        tracing::warn!(error = %e, "state will be rebuilt once the store is back");
                    }
                    return;
                }
            }
        }
    }
}
