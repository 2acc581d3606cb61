//! Reading one stream: an ordered consumer from a time, a sequence or the start, each message
//! decoded into a row and filtered on the reader's own task, rows handed over in batches. The
//! reader knows where the stream ended when it started ("caught up"), and either stops there or,
//! following, goes on with what arrives next.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use kubegate_bus::Bus;
use kubegate_events::RawEnvelope;
use kubegate_events::audit::AuditEvent;
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AuditError;
use crate::directory::Directory;
use crate::filter::Filter;
use crate::row::{self, At, Kind, Row, Sessions, Source};

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// The first message the stream received at or after this time.
    Time(DateTime<Utc>),
    /// This record of a message (or the first message kept after it): the records before it
    /// in the message are skipped.
    At(At),
}

/// Rows handed over at once.
const BATCH_ROWS: usize = 512;
/// Messages looked at before a batch is handed over even if it holds few rows (so a heavily
/// filtered replay still reports progress and a page can stop at its scan budget).
const BATCH_SCAN: u64 = 4096;
/// How long a replaying reader lets a batch fill before handing it over.
const BATCH_WAIT: Duration = Duration::from_millis(3);
/// How often a failing consumer is tried again before a replay gives up (following: forever).
const RETRIES: u32 = 5;
/// Records are stamped by their producer before the stream receives them; a start time is moved
/// back by this much so that a producer whose clock is a little ahead is not missed (rows
/// before the asked time are filtered out anyway).
const CLOCK_SLACK: chrono::Duration = chrono::Duration::minutes(1);

/// What a reader hands over.
#[derive(Debug, Default)]
pub struct Batch {
    pub rows: Vec<Row>,
    /// The stream sequence after the last message looked at (0: none looked at yet).
    pub next_sequence: u64,
    /// Messages looked at, rows or not.
    pub scanned: u64,
    /// Messages that are not kubegate events this build can read.
    pub undecodable: u64,
    /// Everything the stream held at the start has been read.
    pub caught_up: bool,
}

/// What one reader reads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub source: Source,
    pub subject: String,
    pub start: Start,
    /// Rows are wanted; otherwise the reader only keeps the directory's names current.
    pub emit: bool,
}

/// What every reader of one replay shares.
pub struct Context {
    pub filter: Filter,
    pub directory: Arc<Directory>,
}

fn nats(stream: &str, e: impl std::fmt::Display) -> AuditError {
    AuditError::Nats { stream: stream.to_string(), message: e.to_string() }
}

/// One record into a row, if it passes the filter. `None` for records the filter drops; `Err`
/// for a record that is not a readable event.
fn to_row(
    source: Source,
    at: At,
    raw: &RawEnvelope,
    ctx: &Context,
    sessions: &mut Sessions,
    emit: bool,
) -> Result<Option<Row>, ()> {
    let kind = Kind::of_event(&raw.event_type).ok_or(())?;
    let filter = &ctx.filter;
    // Cheap checks before decoding; the directory and session memory must still see everything
    // that feeds them.
    let feeds = matches!(source, Source::Identity | Source::Environments) || kind == Kind::Session;
    let passes = emit
        && filter.wants_kind(kind)
        && filter.wants_time(raw.occurred_at)
        && filter.wants_correlation(&raw.correlation_id);
    if !passes && !feeds {
        return Ok(None);
    }
    let d = &ctx.directory;
    let row = match source {
        Source::Identity => row::identity_row(&raw.decode::<IdentityEvent>().map_err(|_| ())?, at, d),
        Source::Environments => {
            row::environment_row(&raw.decode::<EnvironmentEvent>().map_err(|_| ())?, at, d)
        }
        Source::Audit => sessions.audit_row(&raw.decode::<AuditEvent>().map_err(|_| ())?, at, d),
    };
    Ok((passes && filter.matches(&row)).then_some(row))
}

fn deliver_policy(start: Start) -> DeliverPolicy {
    match start {
        Start::Beginning | Start::At(At { sequence: 0, .. }) => DeliverPolicy::All,
        Start::At(At { sequence: s, .. }) => DeliverPolicy::ByStartSequence { start_sequence: s },
        Start::Time(t) => {
            let t = t - CLOCK_SLACK;
            let nanos = i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos());
            match async_nats::datetime::from_nanos(nanos) {
                Ok(at) => DeliverPolicy::ByStartTime { start_time: at },
                Err(_) => DeliverPolicy::All,
            }
        }
    }
}

/// Starts a reader on its own task; its batches arrive on the receiver, which it stops
/// writing to (and ends) when it is dropped or `stop` is cancelled.
pub fn spawn(
    bus: Bus,
    plan: Plan,
    ctx: Arc<Context>,
    follow: bool,
    stop: CancellationToken,
) -> mpsc::Receiver<Result<Batch, AuditError>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let reader = Reader { bus, plan, ctx, follow, stop, tx: tx.clone(), sessions: Sessions::default() };
        if let Err(e) = reader.run().await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

struct Reader {
    bus: Bus,
    plan: Plan,
    ctx: Arc<Context>,
    follow: bool,
    stop: CancellationToken,
    tx: mpsc::Sender<Result<Batch, AuditError>>,
    sessions: Sessions,
}

/// How a reader's loop ended.
enum Ended {
    /// Done (caught up and not following, or nobody listens any more).
    Done,
    /// The consumer failed; start again at the position reached.
    Failed(AuditError),
}

impl Reader {
    async fn send(&self, batch: Batch) -> bool {
        self.tx.send(Ok(batch)).await.is_ok()
    }

    async fn run(mut self) -> Result<(), AuditError> {
        let name = self.plan.source.stream();
        let mut start = self.plan.start;
        let mut caught_up = false;
        let mut failures = 0;
        loop {
            match self.round(start, &mut caught_up).await {
                Ok((Ended::Done, _)) => return Ok(()),
                Ok((Ended::Failed(e), next)) | Err((e, next)) => {
                    if next > 0 {
                        start = Start::At(At::message(next));
                        failures = 0;
                    }
                    failures += 1;
                    if !self.follow && failures > RETRIES {
                        return Err(e);
                    }
                    tracing::debug!(stream = name, error = %e, "audit reader restarting");
                    let backoff = Duration::from_millis(100 * u64::from(failures.min(10)));
                    tokio::select! {
                        _ = self.stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }

    /// One consumer's life. Returns how it ended and the next sequence to read.
    async fn round(&mut self, start: Start, caught_up: &mut bool) -> Result<(Ended, u64), (AuditError, u64)> {
        let name = self.plan.source.stream();
        let mut next_sequence = match start {
            Start::At(At { sequence: s, .. }) => s,
            _ => 0,
        };
        // Records of the start message a page already handed out.
        let skip_before = match start {
            Start::At(at) => at,
            _ => At::default(),
        };
        let js = self.bus.jetstream();
        let mut stream = match js.get_stream(name).await {
            Ok(s) => s,
            Err(e) if e.to_string().contains("not found") => {
                // Nothing was ever written there: nothing to read yet.
                if !*caught_up {
                    *caught_up = true;
                    let batch = Batch { next_sequence, caught_up: true, ..Default::default() };
                    if !self.send(batch).await || !self.follow {
                        return Ok((Ended::Done, next_sequence));
                    }
                }
                return Err((nats(name, "the stream does not exist yet"), next_sequence));
            }
            Err(e) => return Err((nats(name, e), next_sequence)),
        };
        let last = stream.info().await.map_err(|e| (nats(name, e), next_sequence))?.state.last_sequence;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.plan.subject.clone(),
                deliver_policy: deliver_policy(start),
                ..Default::default()
            })
            .await
            .map_err(|e| (nats(name, e), next_sequence))?;
        if !*caught_up && (consumer.cached_info().num_pending == 0 || last < next_sequence) {
            *caught_up = true;
            let batch = Batch { next_sequence, caught_up: true, ..Default::default() };
            if !self.send(batch).await || !self.follow {
                return Ok((Ended::Done, next_sequence));
            }
        }
        let mut messages = consumer.messages().await.map_err(|e| (nats(name, e), next_sequence))?;
        let mut batch = Batch { next_sequence, ..Default::default() };
        let mut batch_started = std::time::Instant::now();
        loop {
            let started = batch.scanned > 0 || batch.caught_up;
            if !started {
                batch_started = std::time::Instant::now();
            }
            let item = if started {
                // Replaying, a batch fills for a moment (fewer hand-overs); live, every row goes
                // at once.
                let wait = if *caught_up {
                    Duration::ZERO
                } else {
                    BATCH_WAIT.saturating_sub(batch_started.elapsed())
                };
                let ready = if wait.is_zero() {
                    messages.next().now_or_never()
                } else {
                    tokio::time::timeout(wait, messages.next()).await.ok()
                };
                match ready {
                    Some(item) => item,
                    None => {
                        // Nothing more right now: hand over what there is.
                        let next =
                            std::mem::replace(&mut batch, Batch { next_sequence, ..Default::default() });
                        if !self.send(next).await {
                            return Ok((Ended::Done, next_sequence));
                        }
                        continue;
                    }
                }
            } else if self.follow {
                tokio::select! {
                    _ = self.stop.cancelled() => return Ok((Ended::Done, next_sequence)),
                    item = messages.next() => item,
                }
            } else {
                messages.next().await
            };
            let message = match item {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Ok((Ended::Failed(nats(name, e)), next_sequence)),
                None => return Ok((Ended::Failed(nats(name, "the consumer ended")), next_sequence)),
            };
            let Ok(info) = message.info() else { continue };
            let (sequence, pending) = (info.stream_sequence, info.pending);
            if !*caught_up && sequence > last {
                // Arrived after the start: the replay of what was there is complete.
                *caught_up = true;
                batch.caught_up = true;
                if !self.follow {
                    let _ = self.send(batch).await;
                    return Ok((Ended::Done, next_sequence));
                }
            }
            match RawEnvelope::all_from_slice(&message.payload) {
                Ok(records) => {
                    for (index, raw) in records.iter().enumerate() {
                        let at = At { sequence, index: index as u32 };
                        if at < skip_before {
                            continue;
                        }
                        let (source, emit) = (self.plan.source, self.plan.emit);
                        match to_row(source, at, raw, &self.ctx, &mut self.sessions, emit) {
                            Ok(Some(row)) => batch.rows.push(row),
                            Ok(None) => {}
                            Err(()) => batch.undecodable += 1,
                        }
                    }
                }
                Err(_) => batch.undecodable += 1,
            }
            batch.scanned += 1;
            next_sequence = sequence + 1;
            batch.next_sequence = next_sequence;
            let end_reached = !*caught_up && (sequence >= last || pending == 0);
            if end_reached {
                *caught_up = true;
                batch.caught_up = true;
            }
            if end_reached || batch.rows.len() >= BATCH_ROWS || batch.scanned >= BATCH_SCAN {
                let next = std::mem::replace(&mut batch, Batch { next_sequence, ..Default::default() });
                if !self.send(next).await || (end_reached && !self.follow) {
                    return Ok((Ended::Done, next_sequence));
                }
            }
        }
    }
}

/// Reads `stream` (messages matching `subject`) from `start` to where it ended when the read
/// began, calling `each` with every decodable envelope, in order.
/// Returns the stream's last sequence at the start.
pub async fn read_to_end(
    bus: &Bus,
    stream: &str,
    subject: &str,
    start: Start,
    mut each: impl FnMut(RawEnvelope),
) -> Result<u64, AuditError> {
    read_sequenced(bus, stream, subject, start, |_, raw| {
        if let Ok(raw) = raw {
            each(raw)
        }
    })
    .await
}

/// Like [`read_to_end`], with the stream sequence of each envelope's message, and messages that
/// are not envelopes too.
pub async fn read_sequenced(
    bus: &Bus,
    stream: &str,
    subject: &str,
    start: Start,
    mut each: impl FnMut(u64, Result<RawEnvelope, String>),
) -> Result<u64, AuditError> {
    let js = bus.jetstream();
    let mut s = match js.get_stream(stream).await {
        Ok(s) => s,
        Err(e) if e.to_string().contains("not found") => return Ok(0),
        Err(e) => return Err(nats(stream, e)),
    };
    let last = s.info().await.map_err(|e| nats(stream, e))?.state.last_sequence;
    let mut next = match start {
        Start::At(At { sequence: n, .. }) => n.max(1),
        _ => 1,
    };
    let mut first_round = true;
    let mut failures = 0;
    loop {
        let policy =
            if first_round { deliver_policy(start) } else { deliver_policy(Start::At(At::message(next))) };
        first_round = false;
        let consumer = s
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.to_string(),
                deliver_policy: policy,
                ..Default::default()
            })
            .await
            .map_err(|e| nats(stream, e))?;
        if consumer.cached_info().num_pending == 0 || last < next {
            return Ok(last);
        }
        let mut messages = consumer.messages().await.map_err(|e| nats(stream, e))?;
        loop {
            let message = match messages.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    failures += 1;
                    if failures > RETRIES {
                        return Err(nats(stream, e));
                    }
                    break;
                }
                None => {
                    failures += 1;
                    if failures > RETRIES {
                        return Err(nats(stream, "the consumer ended"));
                    }
                    break;
                }
            };
            let Ok(info) = message.info() else { continue };
            let (sequence, pending) = (info.stream_sequence, info.pending);
            if sequence > last {
                return Ok(last);
            }
            match RawEnvelope::all_from_slice(&message.payload) {
                Ok(all) => all.into_iter().for_each(|raw| each(sequence, Ok(raw))),
                Err(e) => each(sequence, Err(e.to_string())),
            }
            next = sequence + 1;
            if sequence >= last || pending == 0 {
                return Ok(last);
            }
        }
    }
}
