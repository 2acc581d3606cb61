//! The one task that owns identity's state. Commands and reads queue up in a channel; the task
//! catches up with the log (other replicas' writes), decides each command against the state,
//! appends the resulting events of a whole batch in one transaction (group commit), applies them
//! and answers. Handlers never touch the state directly, so no lock is ever held across an await.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{Actor, Envelope, RawEnvelope};
use kubegate_eventstore::{EventStore, Expected, StoreError, StreamAppend};
use kubegate_token::{Claims, Scope, SigningKey};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::{MasterKey, Purpose};
use crate::domain::{Command, DomainError, IdentityState, Outcome, decide};

const MAX_BATCH: usize = 256;
const REPLAY_PAGE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("identity's event store is unavailable: {0}")]
    Unavailable(String),
    #[error("another replica changed the same data at the same time; try again")]
    Contended,
    #[error("the identity engine has stopped")]
    Stopped,
    #[error("cannot use the signing key: {0}")]
    Key(String),
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
    /// A token minted for the command (kubeconfig token or session token).
    pub token: Option<String>,
}

type ReadFn = Box<dyn FnOnce(&IdentityState) + Send>;

enum Request {
    Execute { command: Command, origin: Origin, reply: oneshot::Sender<Result<Executed, EngineError>> },
    Read(ReadFn),
}

/// A cloneable handle on the engine task.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Request>,
}

impl Engine {
    /// Rebuilds the state from the whole log, then starts the task.
    pub async fn start(store: EventStore, master: MasterKey) -> Result<Engine, EngineError> {
        let mut task =
            Task { store, master, state: IdentityState::default(), dirty: false, signers: HashMap::new() };
        task.rebuild().await?;
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(task.run(rx));
        Ok(Engine { tx })
    }

    pub async fn execute(&self, command: Command, origin: Origin) -> Result<Executed, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Execute { command, origin, reply }).await.map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Runs `f` on the current state (after catching up with the log) and returns its result.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&IdentityState) -> R + Send + 'static,
    ) -> Result<R, EngineError> {
        let (reply, rx) = oneshot::channel();
        let job: ReadFn = Box::new(move |s| {
            let _ = reply.send(f(s));
        });
        self.tx.send(Request::Read(job)).await.map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }
}

struct Pending {
    command: Command,
    origin: Origin,
    reply: oneshot::Sender<Result<Executed, EngineError>>,
}

struct Task {
    store: EventStore,
    master: MasterKey,
    state: IdentityState,
    /// The state may hold events that were never stored: rebuild before trusting it.
    dirty: bool,
    signers: HashMap<String, SigningKey>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.recv().await {
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
                        f(&self.state);
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
    }

    /// Brings the state up to date with the log.
    async fn sync(&mut self) -> Result<(), EngineError> {
        if self.dirty { self.rebuild().await } else { self.catch_up().await }
    }

    async fn rebuild(&mut self) -> Result<(), EngineError> {
        self.state = IdentityState::default();
        self.signers.clear();
        self.dirty = true;
        self.catch_up().await?;
        self.dirty = false;
        Ok(())
    }

    async fn catch_up(&mut self) -> Result<(), EngineError> {
        loop {
            let page = self
                .store
                .read_after(self.state.position, REPLAY_PAGE)
                .await
                .map_err(|e| EngineError::Unavailable(e.to_string()))?;
            let n = page.len();
            for raw in page {
                match raw.decode::<IdentityEvent>() {
                    Ok(env) => self.state.apply(&env),
                    Err(e) => {
                        // A fact this build cannot read: keep going but say so loudly.
                        tracing::error!(position = raw.position, error = %e, "cannot decode stored event");
                        self.state.position = raw.position;
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
                match decide(&self.state, p.command.clone(), now) {
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
                            let envs: Vec<Envelope<IdentityEvent>> = d
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
                                self.state.apply(env);
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
                    let _ = p.reply.send(Ok(Executed { outcome, stored: Vec::new(), token: None }));
                }
                return;
            }
            match self.store.append(&appends).await {
                Ok(stored) => {
                    if let Some(last) = stored.last() {
                        self.state.position = last.position;
                    }
                    self.dirty = false;
                    for (p, outcome, start, count) in decided {
                        let token = self.mint_for(&p.command, &outcome);
                        let stored_part =
                            stored.get(start..start + count).map(|s| s.to_vec()).unwrap_or_default();
                        let result = token.map(|token| Executed { outcome, stored: stored_part, token });
                        let _ = p.reply.send(result);
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

    /// Mints the token a command asked for, with the active signing key.
    fn mint_for(&mut self, command: &Command, outcome: &Outcome) -> Result<Option<String>, EngineError> {
        let (jti, user_id, scope) = match command {
            Command::IssueKubeconfigToken { token_id, user_id, .. } => {
                (token_id.clone(), *user_id, Scope::Kubeconfig)
            }
            Command::RecordSignIn { session_id, user_id, .. } => {
                (session_id.clone(), *user_id, Scope::Session)
            }
            _ => return Ok(None),
        };
        let Some((iat, exp)) = outcome.token_times else { return Ok(None) };
        let name = self.state.users.get(&user_id).map(|u| u.username.clone()).unwrap_or_default();
        let claims = Claims { sub: user_id.to_string(), name, jti, iat, exp, scope };
        let signer = self.active_signer()?;
        signer.mint(&claims).map(Some).map_err(|e| EngineError::Key(e.to_string()))
    }

    fn active_signer(&mut self) -> Result<&SigningKey, EngineError> {
        let record =
            self.state.active_key().ok_or_else(|| EngineError::Key("no active signing key".into()))?;
        let kid = record.kid.clone();
        if !self.signers.contains_key(&kid) {
            let seed = self
                .master
                .open(Purpose::SigningKey, &record.private_key)
                .map_err(|e| EngineError::Key(e.to_string()))?;
            let seed: [u8; 32] = seed
                .as_slice()
                .try_into()
                .map_err(|_| EngineError::Key("sealed seed has the wrong length".into()))?;
            let key =
                SigningKey::from_seed(kid.clone(), &seed).map_err(|e| EngineError::Key(e.to_string()))?;
            self.signers.insert(kid.clone(), key);
        }
        self.signers.get(&kid).ok_or_else(|| EngineError::Key("signing key vanished".into()))
    }
}

/// How long callers wait for the engine before giving up (the store may be away).
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(15);
