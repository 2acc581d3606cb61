//! Audit records, off the request path: handlers hand records to one batching task, which numbers
//! them (1, 2, 3, … per replica boot, so a reader can prove none is missing), packs those in hand
//! into messages (see [`pack`]), publishes them to `KUBEGATE_AUDIT` with acknowledgements, and
//! spools them to local disk while NATS is away, replaying the spool (in order, before newer
//! records) when it returns. Nothing is dropped silently: the only loss path is a full overflow
//! queue or a failing disk, both counted and logged.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubegate_bus::{Bus, Encoded};
use kubegate_events::audit::AuditEvent;
use kubegate_events::{Actor, DomainEvent, Envelope};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod pack;
mod spool;

use pack::{Packed, pack, records_in};
use spool::Spool;

const CHANNEL: usize = 65_536;
const OVERFLOW_LIMIT: usize = 1_000_000;
const BATCH: usize = 1024;
/// Once a record arrives, the publisher lets more gather this long (unless it has a message's
/// worth already), so that a message carries many records under load; a record reaches the
/// stream at most this much later.
const LINGER: Duration = Duration::from_millis(5);
/// After a replay of the spool failed, new records go straight to the spool for this long
/// before publishing is tried again.
const REPLAY_BACKOFF: Duration = Duration::from_millis(500);
/// Spooled messages read and published at a time.
const REPLAY_MESSAGES: usize = 64;

/// What the publisher reports, for readiness and tests.
#[derive(Debug, Default)]
pub struct AuditStatus {
    pub published: AtomicU64,
    pub spooled: AtomicU64,
    pub lost: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_full: AtomicBool,
    pub nats_failing: AtomicBool,
}

/// The handle handlers use; cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::Sender<(AuditEvent, Actor, String)>,
    overflow: Arc<Mutex<VecDeque<(AuditEvent, Actor, String)>>>,
    pub status: Arc<AuditStatus>,
    pub stream_id: Arc<str>,
}

impl Auditor {
    /// Records one event (`correlation` is the request id). Never blocks.
    pub fn record(&self, event: AuditEvent, actor: Actor, correlation: String) {
        match self.tx.try_send((event, actor, correlation)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) | Err(mpsc::error::TrySendError::Closed(item)) => {
                let mut q = match self.overflow.lock() {
                    Ok(q) => q,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if q.len() >= OVERFLOW_LIMIT {
                    self.status.lost.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("kubegate_audit_lost_total").increment(1);
                    tracing::error!("audit overflow queue full: a record was lost");
                } else {
                    q.push_back(item);
                }
            }
        }
    }
}

pub struct AuditTask {
    handle: tokio::task::JoinHandle<()>,
}

impl AuditTask {
    /// Waits until every record handed over before shutdown is published or spooled.
    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

/// Starts the publisher. `shutdown` ends it after a last flush.
pub fn spawn(
    bus: Bus,
    replica: &str,
    spool_dir: PathBuf,
    spool_max_bytes: u64,
    shutdown: CancellationToken,
) -> std::io::Result<(Auditor, AuditTask)> {
    std::fs::create_dir_all(&spool_dir)?;
    let (tx, rx) = mpsc::channel(CHANNEL);
    let boot = uuid::Uuid::now_v7().simple().to_string();
    let stream_id: Arc<str> = format!("proxy-{replica}-{}", &boot[boot.len() - 12..]).into();
    let status = Arc::new(AuditStatus::default());
    let overflow = Arc::new(Mutex::new(VecDeque::new()));
    let spool = Spool::open(spool_dir.join("audit.spool"))?;
    status.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
    let publisher = Publisher {
        bus,
        rx,
        overflow: overflow.clone(),
        status: status.clone(),
        stream_id: stream_id.clone(),
        position: 0,
        spool,
        spool_max_bytes,
        replay_after: None,
    };
    let handle = tokio::spawn(publisher.run(shutdown));
    Ok((Auditor { tx, overflow, status, stream_id }, AuditTask { handle }))
}

struct Publisher {
    bus: Bus,
    rx: mpsc::Receiver<(AuditEvent, Actor, String)>,
    overflow: Arc<Mutex<VecDeque<(AuditEvent, Actor, String)>>>,
    status: Arc<AuditStatus>,
    stream_id: Arc<str>,
    position: u64,
    spool: Spool,
    spool_max_bytes: u64,
    /// A replay failed: not before this.
    replay_after: Option<Instant>,
}

impl Publisher {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut retry = tokio::time::interval(Duration::from_millis(500));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            tokio::select! {
                biased;
                n = self.rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                }
                _ = retry.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            if !batch.is_empty() && batch.len() < pack::PACK_RECORDS {
                // Let more gather, without waking for each; then take what is there.
                tokio::select! {
                    _ = tokio::time::sleep(LINGER) => {}
                    _ = shutdown.cancelled() => {}
                }
                while batch.len() < BATCH
                    && let Ok(item) = self.rx.try_recv()
                {
                    batch.push(item);
                }
            }
            self.take_overflow(&mut batch);
            self.ship(batch).await;
        }
        // Last flush: everything queued is published or spooled (and fsync'd) before exit.
        self.rx.close();
        let mut rest = Vec::new();
        while let Ok(item) = self.rx.try_recv() {
            rest.push(item);
        }
        self.take_overflow(&mut rest);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.ship(rest)).await;
        if let Err(e) = self.spool.sync() {
            tracing::error!(error = %e, "cannot sync the audit spool");
        }
    }

    fn take_overflow(&self, batch: &mut Vec<(AuditEvent, Actor, String)>) {
        let mut q = match self.overflow.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        batch.extend(q.drain(..));
    }

    /// Numbers the records and encodes each once, as it is published and spooled.
    fn number(&mut self, batch: Vec<(AuditEvent, Actor, String)>) -> Vec<Encoded<'static>> {
        let mut out = Vec::with_capacity(batch.len());
        for (event, actor, correlation) in batch {
            self.position += 1;
            let mut env = Envelope::new(self.stream_id.to_string(), actor, correlation, event);
            env.sequence = self.position;
            env.position = self.position;
            match pack::encode(&env) {
                Ok(encoded) => out.push(encoded),
                Err(e) => {
                    self.status.lost.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "cannot encode an audit record");
                }
            }
        }
        out
    }

    /// Publishes a batch, after whatever the spool holds; spools what cannot be published.
    async fn ship(&mut self, batch: Vec<(AuditEvent, Actor, String)>) {
        let messages = pack(&self.number(batch));
        if !self.bus.is_connected() {
            // No point waiting for acknowledgements that cannot come: straight to disk.
            self.status.nats_failing.store(true, Ordering::Relaxed);
            self.spool_messages(&messages);
            return;
        }
        if self.spool.bytes() > 0 && !self.replay_spool().await {
            self.spool_messages(&messages);
            return;
        }
        if messages.is_empty() {
            return;
        }
        let published = self.publish(&messages).await;
        if published < messages.len() {
            self.spool_messages(&messages[published..]);
            self.recreate_stream_if_gone().await;
        }
    }

    /// Publishes `messages` in order; how many (from the first) are stored.
    async fn publish(&self, messages: &[Packed]) -> usize {
        let outgoing: Vec<kubegate_bus::Outgoing<'_>> = messages.iter().map(|m| m.message.clone()).collect();
        let published = match self.bus.publish_messages(&outgoing).await {
            Ok(()) => messages.len(),
            Err(e) => {
                // Said once when publishing starts failing, not at every retry.
                if !self.status.nats_failing.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "audit records go to the spool until NATS takes them again");
                }
                e.published
            }
        };
        self.status.published.fetch_add(records_in(&messages[..published]) as u64, Ordering::Relaxed);
        self.status.nats_failing.store(published < messages.len(), Ordering::Relaxed);
        published
    }

    /// Connected, yet publishing failed: the stream may have been deleted under us. Recreate it
    /// (with the definition this replica ensured at start) so the spool can drain into it;
    /// otherwise every record would wait in the spool forever.
    async fn recreate_stream_if_gone(&self) {
        if !self.bus.is_connected() {
            return;
        }
        let stream = AuditEvent::STREAM;
        if matches!(self.bus.jetstream().get_stream(stream).await, Err(e) if e.to_string().contains("not found"))
        {
            match self.bus.ensure_known_stream(stream).await {
                Ok(true) => tracing::warn!(stream, "the audit stream was gone; recreated it"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(stream, error = %e, "the audit stream is gone and cannot be recreated yet")
                }
            }
        }
    }

    fn spool_messages(&mut self, messages: &[Packed]) {
        if messages.is_empty() {
            return;
        }
        let records = records_in(messages) as u64;
        match self.spool.append(messages) {
            Ok(()) => {
                self.status.spooled.fetch_add(records, Ordering::Relaxed);
            }
            Err(e) => {
                self.status.lost.fetch_add(records, Ordering::Relaxed);
                metrics::counter!("kubegate_audit_lost_total").increment(records);
                tracing::error!(error = %e, lost = records, "cannot write the audit spool: records lost");
            }
        }
        self.after_spool_change();
    }

    fn after_spool_change(&self) {
        let bytes = self.spool.bytes();
        self.status.spool_bytes.store(bytes, Ordering::Relaxed);
        metrics::gauge!("kubegate_audit_spool_bytes").set(bytes as f64);
        let full = bytes > self.spool_max_bytes;
        if full && !self.status.spool_full.load(Ordering::Relaxed) {
            tracing::error!(
                bytes,
                limit = self.spool_max_bytes,
                "audit spool over its limit; this replica reports not ready"
            );
        }
        self.status.spool_full.store(full, Ordering::Relaxed);
    }

    /// Publishes the spool in order, a chunk at a time; true when it is empty afterwards. After
    /// a failure, waits [`REPLAY_BACKOFF`] before trying again (new records are spooled behind).
    async fn replay_spool(&mut self) -> bool {
        if self.replay_after.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        let mut done = 0;
        let ok = loop {
            if self.spool.bytes() == 0 {
                break true;
            }
            let (chunk, scanned) = match self.spool.read_chunk(REPLAY_MESSAGES) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the audit spool");
                    break false;
                }
            };
            let messages: Vec<Packed> = chunk.iter().map(|s| s.message.clone()).collect();
            let published = self.publish(&messages).await;
            let all = published == messages.len();
            done += records_in(&messages[..published]);
            // Only what was acknowledged leaves the spool (damaged lines go with the chunk).
            let end = if all { Some(scanned) } else { published.checked_sub(1).map(|i| chunk[i].end) };
            if let Some(end) = end
                && let Err(e) = self.spool.consume_to(end)
            {
                tracing::error!(error = %e, "cannot record how far the audit spool was replayed");
                break false;
            }
            if !all {
                self.recreate_stream_if_gone().await;
                break false;
            }
        };
        self.replay_after = (!ok).then(|| Instant::now() + REPLAY_BACKOFF);
        if ok && done > 0 {
            tracing::info!(records = done, "audit spool replayed");
        }
        self.after_spool_change();
        ok
    }
}
