//! Audit records, off the request path: handlers hand records to one batching task, which numbers
//! them (1, 2, 3, … per replica boot, so a reader can prove none is missing), publishes them to
//! `KUBEGATE_AUDIT` with acknowledgements, and spools them to local disk while NATS is away,
//! replaying the spool (in order, before newer records) when it returns. Nothing is dropped
//! silently: the only loss path is a full overflow queue or a failing disk, both counted and logged.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubegate_bus::Bus;
use kubegate_events::audit::AuditEvent;
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CHANNEL: usize = 65_536;
const OVERFLOW_LIMIT: usize = 1_000_000;
const BATCH: usize = 1024;

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
    status.spool_bytes.store(spool.bytes, Ordering::Relaxed);
    let publisher = Publisher {
        bus,
        rx,
        overflow: overflow.clone(),
        status: status.clone(),
        stream_id: stream_id.clone(),
        position: 0,
        spool,
        spool_max_bytes,
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

    fn number(&mut self, batch: Vec<(AuditEvent, Actor, String)>) -> Vec<RawEnvelope> {
        let mut out = Vec::with_capacity(batch.len());
        for (event, actor, correlation) in batch {
            self.position += 1;
            let mut env = Envelope::new(self.stream_id.to_string(), actor, correlation, event);
            env.sequence = self.position;
            env.position = self.position;
            match env.to_raw() {
                Ok(raw) => out.push(raw),
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
        let records = self.number(batch);
        if !self.bus.is_connected() {
            // No point waiting for acknowledgements that cannot come: straight to disk.
            self.status.nats_failing.store(true, Ordering::Relaxed);
            self.spool_records(&records);
            return;
        }
        if self.spool.bytes > 0 && !self.replay_spool().await {
            self.spool_records(&records);
            return;
        }
        if records.is_empty() {
            return;
        }
        let items: Vec<(&str, &RawEnvelope)> = records.iter().map(|r| (subject(r), r)).collect();
        match self.bus.publish_events(&items).await {
            Ok(()) => {
                self.status.published.fetch_add(records.len() as u64, Ordering::Relaxed);
                self.status.nats_failing.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                self.status.published.fetch_add(e.published as u64, Ordering::Relaxed);
                self.status.nats_failing.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "audit records go to the spool until NATS is back");
                self.spool_records(&records[e.published..]);
                self.recreate_stream_if_gone().await;
            }
        }
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

    fn spool_records(&mut self, records: &[RawEnvelope]) {
        if records.is_empty() {
            return;
        }
        match self.spool.append(records) {
            Ok(()) => {
                self.status.spooled.fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.status.lost.fetch_add(records.len() as u64, Ordering::Relaxed);
                metrics::counter!("kubegate_audit_lost_total").increment(records.len() as u64);
                tracing::error!(error = %e, lost = records.len(), "cannot write the audit spool: records lost");
            }
        }
        self.after_spool_change();
    }

    fn after_spool_change(&self) {
        self.status.spool_bytes.store(self.spool.bytes, Ordering::Relaxed);
        metrics::gauge!("kubegate_audit_spool_bytes").set(self.spool.bytes as f64);
        let full = self.spool.bytes > self.spool_max_bytes;
        if full && !self.status.spool_full.load(Ordering::Relaxed) {
            tracing::error!(
                bytes = self.spool.bytes,
                limit = self.spool_max_bytes,
                "audit spool over its limit; this replica reports not ready"
            );
        }
        self.status.spool_full.store(full, Ordering::Relaxed);
    }

    /// Publishes the spool in order; true when it is empty afterwards.
    async fn replay_spool(&mut self) -> bool {
        let records = match self.spool.read_all() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit spool");
                return false;
            }
        };
        let mut done = 0;
        for chunk in records.chunks(BATCH) {
            let items: Vec<(&str, &RawEnvelope)> = chunk.iter().map(|r| (subject(r), r)).collect();
            match self.bus.publish_events(&items).await {
                Ok(()) => done += chunk.len(),
                Err(e) => {
                    done += e.published;
                    self.recreate_stream_if_gone().await;
                    break;
                }
            }
        }
        self.status.published.fetch_add(done as u64, Ordering::Relaxed);
        let ok = done == records.len();
        if let Err(e) = self.spool.keep_from(&records, done) {
            tracing::error!(error = %e, "cannot rewrite the audit spool");
        }
        self.status.nats_failing.store(!ok, Ordering::Relaxed);
        if ok && done > 0 {
            tracing::info!(records = done, "audit spool replayed");
        }
        self.after_spool_change();
        ok
    }
}

fn subject(raw: &RawEnvelope) -> &'static str {
    kubegate_events::envelope::subject_of::<AuditEvent>(&raw.event_type)
        .unwrap_or(AuditEvent::TYPES[0].subject)
}

/// Newline-delimited JSON envelopes, fsync'd on every append.
struct Spool {
    path: PathBuf,
    bytes: u64,
}

impl Spool {
    fn open(path: PathBuf) -> std::io::Result<Spool> {
        let bytes = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if bytes > 0 {
            tracing::info!(bytes, path = %path.display(), "audit spool from an earlier run will be replayed");
        }
        Ok(Spool { path, bytes })
    }

    fn append(&mut self, records: &[RawEnvelope]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let mut buf = Vec::with_capacity(records.len() * 512);
        for r in records {
            buf.extend_from_slice(&r.to_vec());
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_data()?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn read_all(&self) -> std::io::Result<Vec<RawEnvelope>> {
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            match RawEnvelope::from_slice(line.as_bytes()) {
                Ok(r) => out.push(r),
                // A torn last line from a crash mid-write: the record was never acknowledged to
                // anyone, but say so.
                Err(e) => tracing::error!(error = %e, "skipping a damaged audit spool line"),
            }
        }
        Ok(out)
    }

    /// Keeps `records[done..]` in the spool.
    fn keep_from(&mut self, records: &[RawEnvelope], done: usize) -> std::io::Result<()> {
        if done == 0 {
            return Ok(());
        }
        let rest = &records[done..];
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            for r in rest {
                f.write_all(&r.to_vec())?;
                f.write_all(b"\n")?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        if Path::new(&self.path).exists() { std::fs::File::open(&self.path)?.sync_all() } else { Ok(()) }
    }
}
