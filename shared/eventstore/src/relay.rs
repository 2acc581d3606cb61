//! The outbox relay: publishes committed events to JetStream in log order, with `Nats-Msg-Id` =
//! event id. The log is its own outbox: the relay reads it after the last position the bus
//! acknowledged, which it learns from the stream's last message when it takes the lead. One
//! relay per database is active at a time (a session advisory lock); the others stand by. Woken
//! by LISTEN/NOTIFY, with a periodic sweep as a safety net.
//!
//! Before relaying, the active relay holds the stream against the log: the log is the truth, so
//! a stream that lost events (NATS lost its store, the stream was removed) gets them published
//! again, and a stream that holds events the log does not have (the database was restored from
//! an older backup, or replaced while the bus was kept) gets nothing more: publishing on top
//! would give one position two different events, and readers that already hold that position
//! would skip the new one without a word. The relay says so and waits for an operator.

use std::time::Duration;

use futures::StreamExt;
use kubegate_bus::Bus;
use kubegate_events::RawEnvelope;
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::store::{EventStore, LogTail, pg_message};

const RELAY_LOCK: i64 = 0x6b67_6f75_7462_6f78; // "kgoutbox"
const BATCH: usize = 1024;
const SWEEP: Duration = Duration::from_secs(1);

/// What the relay is doing, for readiness and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStatus {
    /// This replica holds the relay lock.
    pub leader: bool,
    /// The last attempt to publish failed (NATS away or refusing).
    pub failing: bool,
    /// Events published since start.
    pub published: u64,
    /// Reads of the log since start (one per batch when the relay keeps up).
    pub reads: u64,
    /// The last log position the stream is known to hold: what it held when this relay last
    /// took the lead, then what the bus acknowledged since (0 until it first leads).
    pub through: u64,
    /// The stream holds events this log does not have: nothing is published.
    pub diverged: bool,
}

pub struct OutboxRelay {
    store: EventStore,
    bus: Bus,
    stream: String,
}

/// How the stream stands against the log.
enum Reconciled {
    /// In line: the stream holds the log up to `through`; `behind` events follow it in the log.
    Ready { through: u64, behind: u64 },
    /// The stream holds another history; why.
    Diverged(String),
}

/// How often a diverged stream is looked at again.
const DIVERGED_RECHECK: Duration = Duration::from_secs(5);

/// A running relay.
pub struct RelayHandle {
    pub status: watch::Receiver<RelayStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl RelayHandle {
    /// Waits for the relay to finish its last drain after shutdown was requested.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

impl OutboxRelay {
    /// A relay of `store`'s events into `stream` (the JetStream stream their subjects land in).
    pub fn new(store: EventStore, bus: Bus, stream: &str) -> OutboxRelay {
        OutboxRelay { store, bus, stream: stream.to_string() }
    }

    /// Starts the relay; it stops after `shutdown`, having tried one last drain.
    pub fn spawn(self, shutdown: CancellationToken) -> RelayHandle {
        let (tx, rx) = watch::channel(RelayStatus::default());
        let task = tokio::spawn(self.run(shutdown, tx));
        RelayHandle { status: rx, task }
    }

    async fn run(self, shutdown: CancellationToken, status: watch::Sender<RelayStatus>) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown, &status).await {
                Ok(()) => return,
                Err(message) => {
                    status.send_modify(|s| {
                        s.leader = false;
                        s.failing = true;
                    });
                    tracing::warn!(error = %message, "outbox relay lost its database connection; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Holds a dedicated connection: takes the relay lock (or waits for it), listens for new
    /// events, and publishes the log's new events until shutdown or a connection failure.
    async fn lead(
        &self,
        shutdown: &CancellationToken,
        status: &watch::Sender<RelayStatus>,
    ) -> Result<(), String> {
        let (client, mut connection) =
            self.store.pg_config().connect(NoTls).await.map_err(|e| pg_message(&e))?;
        let wake = std::sync::Arc::new(Notify::new());
        let lost = CancellationToken::new();
        let driver = {
            let wake = wake.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(msg) = messages.next().await {
                    match msg {
                        Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                lost.cancel();
            })
        };
        let tail = match LogTail::open(client).await {
            Ok(tail) => tail,
            Err(e) => {
                driver.abort();
                return Err(e.to_string());
            }
        };
        let client = tail.client();
        // The last position the stream holds, once it is held against the log.
        let mut through = None;
        let result = async {
            // Become the one relay of this database.
            loop {
                let got: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&RELAY_LOCK])
                    .await
                    .map_err(|e| pg_message(&e))?
                    .get(0);
                if got {
                    break;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = lost.cancelled() => return Err("connection lost".to_string()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            client.batch_execute("LISTEN kubegate_outbox").await.map_err(|e| pg_message(&e))?;
            status.send_modify(|s| s.leader = true);
            tracing::info!("outbox relay active");
            let Some(held) = self.hold_stream_to_log(shutdown, &lost, status).await? else {
                return Ok(());
            };
            let through = through.insert(held);
            let mut backoff = Duration::from_millis(50);
            loop {
                if lost.is_cancelled() {
                    return Err("connection lost".to_string());
                }
                match self.drain_once(&tail, through, status).await {
                    // Less than a full batch: the read reached the log's end. Whatever commits
                    // after it notifies, and a notification that comes while no one waits is
                    // kept for the next wait, so reading again at once would find nothing.
                    Ok(n) if n < BATCH => {
                        backoff = Duration::from_millis(50);
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = lost.cancelled() => return Err("connection lost".to_string()),
                            _ = wake.notified() => {}
                            _ = tokio::time::sleep(SWEEP) => {}
                        }
                    }
                    Ok(_) => {
                        backoff = Duration::from_millis(50);
                    }
                    Err(message) => {
                        tracing::debug!(error = %message, "outbox publish failed; backing off");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
        .await;
        if shutdown.is_cancelled()
            && let Some(through) = through.as_mut()
        {
            // Last drain with a deadline: whatever is left stays in the log for the next leader.
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                while let Ok(n) = self.drain_once(&tail, through, status).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        driver.abort();
        result
    }

    /// Waits until the stream is in line with the log and returns the last position it holds;
    /// `None` when shutdown came first.
    async fn hold_stream_to_log(
        &self,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
        status: &watch::Sender<RelayStatus>,
    ) -> Result<Option<u64>, String> {
        let stream = self.stream.as_str();
        let mut backoff = Duration::from_millis(25);
        loop {
            if !self.bus.is_connected() {
                // Nothing to ask yet (a request now would only wait for its timeout).
                let mut state = self.bus.watch_state();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = lost.cancelled() => return Err("connection lost".to_string()),
                    _ = state.wait_for(|s| matches!(s, kubegate_bus::ConnectionState::Connected)) => {}
                }
            }
            let wait = match self.reconcile().await {
                Ok(Reconciled::Ready { through, behind }) => {
                    if behind > 0 {
                        tracing::info!(
                            stream,
                            through,
                            behind,
                            "publishing the log's events after the stream's last"
                        );
                    }
                    if status.borrow().diverged {
                        tracing::warn!(
                            stream,
                            "the stream is in line with the log again; publishing resumes"
                        );
                    }
                    status.send_modify(|s| {
                        s.diverged = false;
                        s.through = through;
                    });
                    metrics::gauge!("kubegate_outbox_stream_diverged").set(0.0);
                    return Ok(Some(through));
                }
                Ok(Reconciled::Diverged(why)) => {
                    if !status.borrow().diverged {
                        tracing::error!(
                            stream,
                            %why,
                            "the stream holds events this database does not have (a database restored from an \
                             older backup, or replaced while the bus was kept): nothing is published until the \
                             stream is removed (the log is then published into it again) or the database restored"
                        );
                    }
                    status.send_modify(|s| {
                        s.diverged = true;
                        s.failing = true;
                    });
                    metrics::gauge!("kubegate_outbox_stream_diverged").set(1.0);
                    DIVERGED_RECHECK
                }
                Err(message) => {
                    tracing::debug!(stream, error = %message, "cannot hold the stream against the log yet");
                    status.send_modify(|s| s.failing = true);
                    if message.contains("not found") {
                        // Not made yet (the service makes it as it starts), or removed: made
                        // again from its definition, when known.
                        let _ = self.bus.ensure_known_stream(stream).await;
                    }
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = lost.cancelled() => return Err("connection lost".to_string()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn reconcile(&self) -> Result<Reconciled, String> {
        let last = self.bus.last_message(&self.stream).await.map_err(|e| e.to_string())?;
        let after = match last {
            None => 0,
            Some((sequence, payload)) => {
                let Ok(event) = RawEnvelope::from_slice(&payload) else {
                    return Ok(Reconciled::Diverged(format!(
                        "its last message ({sequence}) is not an event"
                    )));
                };
                match self.store.event_id_at(event.position).await.map_err(|e| e.to_string())? {
                    Some(id) if id == event.id => event.position,
                    Some(_) => {
                        return Ok(Reconciled::Diverged(format!(
                            "position {} is another event in the stream than in the log",
                            event.position
                        )));
                    }
                    None => {
                        return Ok(Reconciled::Diverged(format!(
                            "the stream reaches position {}, past the log's end",
                            event.position
                        )));
                    }
                }
            }
        };
        let last = self.store.last_position().await.map_err(|e| e.to_string())?;
        Ok(Reconciled::Ready { through: after, behind: last.saturating_sub(after) })
    }

    /// Publishes the next batch of the log after `through` and moves `through` to the last
    /// position the bus acknowledged; returns how many events it published. A relay that keeps
    /// up makes one read of the log per batch.
    async fn drain_once(
        &self,
        tail: &LogTail,
        through: &mut u64,
        status: &watch::Sender<RelayStatus>,
    ) -> Result<usize, String> {
        let batch = tail.after(*through, BATCH).await.map_err(|e| e.to_string())?;
        metrics::gauge!("kubegate_outbox_batch_pending").set(batch.len() as f64);
        status.send_modify(|s| {
            s.reads += 1;
            if batch.is_empty() {
                s.failing = false;
            }
        });
        if batch.is_empty() {
            return Ok(0);
        }
        let items: Vec<(&str, &kubegate_events::RawEnvelope)> =
            batch.iter().map(|(subject, env)| (subject.as_str(), env)).collect();
        let (published, error) = match self.bus.publish_events(&items).await {
            Ok(()) => (batch.len(), None),
            Err(e) => (e.published, Some(e.to_string())),
        };
        if let Some((_, last)) = published.checked_sub(1).and_then(|i| batch.get(i)) {
            *through = last.position;
            metrics::counter!("kubegate_outbox_published_total").increment(published as u64);
            status.send_modify(|s| {
                s.published += published as u64;
                s.through = last.position;
            });
        }
        match error {
            None => {
                status.send_modify(|s| s.failing = false);
                Ok(published)
            }
            Some(message) => {
                status.send_modify(|s| s.failing = true);
                Err(message)
            }
        }
    }
}
