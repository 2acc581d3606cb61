//! The command side of an event-sourced service: one task owns the model. Commands and reads
//! queue up in a channel; before each batch the task catches up with the log (other replicas'
//! writes), decides each command against the model, appends the whole batch's events in one
//! transaction (group commit), applies them and answers. Handlers never touch the model, so no
//! lock is ever held across an await. A service may also feed the model from elsewhere (a
//! "side" input, e.g. another service's stream), applied between batches.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope};
use tokio::sync::{mpsc, oneshot};

use crate::store::{EventStore, Expected, StoreError, StreamAppend};

const MAX_BATCH: usize = 256;
const REPLAY_PAGE: usize = 10_000;
/// Side items applied in one go before requests get a turn.
const SIDE_BURST: usize = 4096;

/// One stream's share of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<E> {
    pub stream: String,
    /// The stream's version the decision was based on (0 = new stream); `None` = no check.
    pub expected: Option<u64>,
    pub events: Vec<E>,
}

/// A service's write model: evolved by its events, deciding its commands without I/O.
pub trait Model: Send + 'static {
    type Event: DomainEvent;
    type Command: Clone + Send + 'static;
    type Outcome: Send + 'static;
    type Error: std::error::Error + Send + 'static;

    /// The last log position applied.
    fn position(&self) -> u64;
    fn set_position(&mut self, position: u64);
    /// Forgets everything derived from the log (the engine replays it next).
    fn reset(&mut self);
    fn apply(&mut self, event: &Envelope<Self::Event>);
    fn decide(&self, command: &Self::Command, now: DateTime<Utc>) -> Result<Self::Outcome, Self::Error>;
    /// The events a decision produced, by stream.
    fn decisions(outcome: &Self::Outcome) -> &[Decision<Self::Event>];
    /// Work that needs the events stored first (e.g. minting a token for an issue recorded).
    fn committed(
        &mut self,
        _command: &Self::Command,
        _outcome: &mut Self::Outcome,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Another input of the model, applied between batches (e.g. a projection of another stream).
pub trait Side<M>: Send + 'static {
    type Item: Send + 'static;
    /// The next item; waits as long as needed.
    fn recv(&mut self) -> impl Future<Output = Self::Item> + Send;
    /// An item already waiting, if any.
    fn try_recv(&mut self) -> Option<Self::Item>;
    fn apply(&mut self, model: &mut M, item: Self::Item);
    /// Called every second and after each burst of items (e.g. to report readiness).
    fn tick(&mut self, _model: &mut M) {}
}

/// No side input.
pub struct NoSide;

impl<M: Send + 'static> Side<M> for NoSide {
    type Item = ();
    fn recv(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
    fn try_recv(&mut self) -> Option<()> {
        None
    }
    fn apply(&mut self, _: &mut M, _: ()) {}
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError<E> {
    #[error("{0}")]
    Domain(E),
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("another replica changed the same data at the same time; try again")]
    Contended,
    #[error("the service's engine has stopped")]
    Stopped,
}

/// Who asks, and the request that caused it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub actor: Actor,
    pub correlation_id: String,
}

/// What an executed command produced.
#[derive(Debug, Clone)]
pub struct Executed<O> {
    pub outcome: O,
    pub stored: Vec<RawEnvelope>,
}

type ReadFn<M> = Box<dyn FnOnce(&M) + Send>;

type Reply<M> = oneshot::Sender<Result<Executed<<M as Model>::Outcome>, EngineError<<M as Model>::Error>>>;

enum Request<M: Model> {
    Execute { command: M::Command, origin: Origin, reply: Reply<M> },
    Read(ReadFn<M>),
}

/// A cloneable handle on the engine task.
pub struct Engine<M: Model> {
    tx: mpsc::Sender<Request<M>>,
}

impl<M: Model> Clone for Engine<M> {
    fn clone(&self) -> Self {
        Engine { tx: self.tx.clone() }
    }
}

impl<M: Model> Engine<M> {
    /// Replays the whole log into `model`, then starts the task.
    pub async fn start<S: Side<M>>(
        store: EventStore,
        model: M,
        side: S,
    ) -> Result<Engine<M>, EngineError<M::Error>> {
        let mut task = Task { store, model, side, dirty: false };
        task.rebuild().await?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(task.run(rx));
        Ok(Engine { tx })
    }

    pub async fn execute(
        &self,
        command: M::Command,
        origin: Origin,
    ) -> Result<Executed<M::Outcome>, EngineError<M::Error>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Execute { command, origin, reply }).await.map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Runs `f` on the model (after catching up with the log and every command queued before)
    /// and returns its result.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&M) -> R + Send + 'static,
    ) -> Result<R, EngineError<M::Error>> {
        let (reply, rx) = oneshot::channel();
        let job: ReadFn<M> = Box::new(move |m| {
            let _ = reply.send(f(m));
        });
        self.tx.send(Request::Read(job)).await.map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }
}

struct Pending<M: Model> {
    command: M::Command,
    origin: Origin,
    reply: Reply<M>,
}

struct Decided<M: Model> {
    pending: Pending<M>,
    outcome: M::Outcome,
    /// Where this command's events start in the batch, and how many there are.
    start: usize,
    count: usize,
}

struct Task<M: Model, S> {
    store: EventStore,
    model: M,
    side: S,
    /// The model may hold events that were never stored: rebuild before trusting it.
    dirty: bool,
}

impl<M: Model, S: Side<M>> Task<M, S> {
    async fn run(mut self, mut rx: mpsc::Receiver<Request<M>>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = self.side.recv() => {
                    self.side.apply(&mut self.model, item);
                    for _ in 1..SIDE_BURST {
                        match self.side.try_recv() {
                            Some(item) => self.side.apply(&mut self.model, item),
                            None => break,
                        }
                    }
                    self.side.tick(&mut self.model);
                }
                request = rx.recv() => {
                    let Some(first) = request else { return };
                    self.batch(first, &mut rx).await;
                }
                _ = tick.tick() => self.side.tick(&mut self.model),
            }
        }
    }

    async fn batch(&mut self, first: Request<M>, rx: &mut mpsc::Receiver<Request<M>>) {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let synced = self.sync().await;
        // Reads are answered first, from the state every earlier batch left. A command in this
        // batch has not been answered yet, so a read that arrived alongside it may be ordered
        // before it; answering the reads first lets all the batch's commands share one append
        // (a read between two commands would otherwise split the group commit in two).
        let mut pending: Vec<Pending<M>> = Vec::new();
        for request in batch {
            match request {
                Request::Read(f) => f(&self.model),
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

    /// Brings the model up to date with the log.
    async fn sync(&mut self) -> Result<(), String> {
        if self.dirty { self.rebuild().await.map_err(|e| e.to_string()) } else { self.catch_up().await }
    }

    async fn rebuild(&mut self) -> Result<(), EngineError<M::Error>> {
        self.model.reset();
        self.model.set_position(0);
        self.dirty = true;
        self.catch_up().await.map_err(EngineError::Unavailable)?;
        self.dirty = false;
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), String> {
        loop {
            let page =
                self.store.read_after(self.model.position(), REPLAY_PAGE).await.map_err(|e| e.to_string())?;
            let n = page.len();
            for raw in page {
                match raw.decode::<M::Event>() {
                    Ok(env) => self.model.apply(&env),
                    Err(e) => {
                        // A fact this build cannot read: keep going but say so loudly.
                        tracing::error!(position = raw.position, error = %e, "cannot decode stored event");
                    }
                }
                self.model.set_position(raw.position);
            }
            if n < REPLAY_PAGE {
                return Ok(());
            }
        }
    }

    /// Decides every pending command, appends all their events in one transaction, answers.
    async fn flush(&mut self, pending: &mut Vec<Pending<M>>) {
        if pending.is_empty() {
            return;
        }
        let mut work: Vec<Pending<M>> = std::mem::take(pending);
        for attempt in 0..3 {
            let now = Utc::now();
            let (appends, decided) = self.decide_all(work, now);
            if appends.is_empty() {
                for mut d in decided {
                    let result = self.model.committed(&d.pending.command, &mut d.outcome);
                    let _ = d.pending.reply.send(
                        result
                            .map(|()| Executed { outcome: d.outcome, stored: Vec::new() })
                            .map_err(EngineError::Domain),
                    );
                }
                return;
            }
            match self.store.append(&appends).await {
                Ok(stored) => {
                    if let Some(last) = stored.last() {
                        self.model.set_position(last.position);
                    }
                    self.dirty = false;
                    for mut d in decided {
                        let part =
                            stored.get(d.start..d.start + d.count).map(|s| s.to_vec()).unwrap_or_default();
                        let result = self.model.committed(&d.pending.command, &mut d.outcome);
                        let _ = d.pending.reply.send(
                            result
                                .map(|()| Executed { outcome: d.outcome, stored: part })
                                .map_err(EngineError::Domain),
                        );
                    }
                    return;
                }
                Err(StoreError::Conflict { stream, .. }) if attempt < 2 => {
                    tracing::info!(%stream, "concurrent write by another replica; deciding again");
                    work = decided.into_iter().map(|d| d.pending).collect();
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
                    for d in decided {
                        let _ = d.pending.reply.send(Err(if contended {
                            EngineError::Contended
                        } else {
                            EngineError::Unavailable(message.clone())
                        }));
                    }
                    // The tentative events were not stored: rebuild before the next decision.
                    if let Err(e) = self.rebuild().await {
                        tracing::warn!(error = %e, "the model will be rebuilt once the store is back");
                    }
                    return;
                }
            }
        }
    }

    /// Decides each command on top of the previous ones' events (applied tentatively).
    fn decide_all(
        &mut self,
        work: Vec<Pending<M>>,
        now: DateTime<Utc>,
    ) -> (Vec<StreamAppend>, Vec<Decided<M>>) {
        let mut appends: Vec<StreamAppend> = Vec::new();
        let mut decided: Vec<Decided<M>> = Vec::new();
        let mut total = 0;
        for p in work {
            let outcome = match self.model.decide(&p.command, now) {
                Ok(o) => o,
                Err(e) => {
                    let _ = p.reply.send(Err(EngineError::Domain(e)));
                    continue;
                }
            };
            let start = total;
            for d in M::decisions(&outcome) {
                if d.events.is_empty() {
                    continue;
                }
                let envs: Vec<Envelope<M::Event>> = d
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
                for env in &envs {
                    self.model.apply(env);
                }
                self.dirty = true;
                total += envs.len();
                let expected = d.expected.map(Expected::version).unwrap_or(Expected::Any);
                match StreamAppend::typed(d.stream.clone(), expected, envs) {
                    Ok(a) => appends.push(a),
                    Err(e) => tracing::error!(error = %e, "cannot encode event"),
                }
            }
            decided.push(Decided { pending: p, outcome, start, count: total - start });
        }
        (appends, decided)
    }
}
