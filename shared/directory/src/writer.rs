//! The snapshot writer, run by the identity service (the owner of `KUBEGATE_IDENTITY`; proxy
//! replicas may only read): follows the stream with the same fold the replicas run, and writes
//! a snapshot once it has caught up, whenever `every` more messages have arrived since the last
//! one, and when the last one is older than `max_age` and the stream has moved on. It starts
//! from its latest snapshot as replicas do (checked the same way), else from the first message.

use std::time::{Duration, Instant};

use chrono::Utc;
use kubegate_bus::{Bus, Feed, FeedItem, Offer, Sequencer};
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{DomainEvent, RawEnvelope};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Directory;
use crate::snapshot::{self, Mark, Resume, Snapshot};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Write again after this many messages; 0 turns the writer off.
    pub every: u64,
    /// Write again after this long when anything arrived since.
    pub max_age: Duration,
    /// How often the conditions are looked at besides on each message.
    pub check: Duration,
}

impl Default for WriterConfig {
    fn default() -> WriterConfig {
        WriterConfig { every: 10_000, max_age: Duration::from_secs(3600), check: Duration::from_secs(10) }
    }
}

/// What the writer follows, reset together when the stream is.
struct Fold {
    directory: Directory,
    sequencer: Sequencer<RawEnvelope>,
    /// The last message delivered and its envelope id (none after an undecodable one).
    last: Option<(u64, Uuid)>,
    caught_up: bool,
}

impl Fold {
    fn new() -> Fold {
        Fold { directory: Directory::new(), sequencer: Sequencer::new(0), last: None, caught_up: false }
    }
}

/// What one feed item did to the fold.
enum Step {
    Applied,
    /// The stream was reset: the fold starts again, and the last snapshot is of another history.
    Reset,
    /// Too much held behind a gap, or the snapshot resumed from is not of this stream: start
    /// over from nothing with a new feed.
    Restart,
}

/// Runs until `shutdown`. Writes only while `active()` says so (one writer among the identity
/// instances: the one whose outbox relay leads); the others follow the stream all the same, so
/// whichever takes over has its fold ready.
pub async fn run(
    bus: Bus,
    config: WriterConfig,
    active: impl Fn() -> bool + Send + 'static,
    shutdown: CancellationToken,
) {
    if config.every == 0 {
        tracing::info!("snapshot writer off");
        return;
    }
    // The stream first; NATS may not be there yet.
    loop {
        match snapshot::ensure_stream(&bus).await {
            Ok(()) => break,
            Err(e) => tracing::debug!(error = %e, "snapshot stream not ensured yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    let mut written: Option<(u64, Instant)> = match snapshot::latest_mark(&bus).await {
        Ok(Some(mark)) => {
            let age = (Utc::now() - mark.written_at).to_std().unwrap_or_default();
            Some((mark.stream_sequence, Instant::now().checked_sub(age).unwrap_or_else(Instant::now)))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the latest snapshot's manifest; writing a new one");
            None
        }
    };
    let written_gauge = metrics::gauge!("kubegate_directory_snapshot_sequence");
    let mut fold = Fold::new();
    let (start, mut resume) = match resume_from_latest(&bus, &mut fold).await {
        Some((r, sequence)) => (sequence, Some(r)),
        None => (1, None),
    };
    let follow_from =
        |start| Feed::follow(bus.clone(), IdentityEvent::STREAM, &IdentityEvent::subject_filter(), start);
    let mut feed = follow_from(start);
    let mut tick = tokio::time::interval(config.check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            item = feed.recv() => {
                let Some(item) = item else { return };
                let step = match resume.take().map(|r| r.check(&item)) {
                    Some(Err(why)) => {
                        tracing::warn!(why, "the latest snapshot does not match the identity stream; folding it from the start");
                        Step::Restart
                    }
                    _ => follow(&mut fold, item),
                };
                match step {
                    Step::Applied => {}
                    Step::Reset => written = None,
                    Step::Restart => {
                        feed = follow_from(1);
                        fold = Fold::new();
                        written = None;
                        continue;
                    }
                }
            }
            _ = tick.tick() => {}
        }
        let Some(due) = due(&fold, written, &config).filter(|_| active()) else { continue };
        let now = Utc::now();
        fold.directory.prune_revocations(now.timestamp());
        let mark = Mark {
            stream_sequence: due.0,
            event_id: due.1,
            position: fold.sequencer.last(),
            written_at: now,
        };
        let snapshot = Snapshot::new(mark, fold.directory.state());
        let started = Instant::now();
        match snapshot::write(&bus, &snapshot).await {
            Ok(()) => {
                tracing::info!(
                    stream_sequence = due.0,
                    position = snapshot.mark.position,
                    users = snapshot.state.users.len(),
                    revoked = snapshot.state.revoked.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "directory snapshot written"
                );
                written = Some((due.0, Instant::now()));
                written_gauge.set(due.0 as f64);
                metrics::counter!("kubegate_directory_snapshots_written_total").increment(1);
            }
            Err(e) => tracing::warn!(error = %e, "cannot write a directory snapshot; trying again later"),
        }
    }
}

/// Loads the latest snapshot into `fold` (whose sequencer then stands at its position): how to
/// check the feed's first item, and the stream sequence to start the feed at. `None` (and an
/// untouched fold) when there is none or it cannot be used.
async fn resume_from_latest(bus: &Bus, fold: &mut Fold) -> Option<(Resume, u64)> {
    let snapshot = match snapshot::load(bus).await {
        Ok(s) => s?,
        Err(error) => {
            tracing::warn!(%error, "cannot load the latest snapshot; folding the identity stream from the start");
            return None;
        }
    };
    if let Err(error) = fold.directory.restore(snapshot.state) {
        tracing::warn!(%error, "the latest snapshot cannot be used; folding the identity stream from the start");
        return None;
    }
    fold.sequencer = Sequencer::new(snapshot.mark.position);
    tracing::info!(
        stream_sequence = snapshot.mark.stream_sequence,
        "snapshot writer resumes from the latest snapshot"
    );
    Some((Resume::new(&snapshot.mark), snapshot.mark.stream_sequence))
}

/// Applies one feed item.
fn follow(fold: &mut Fold, item: FeedItem) -> Step {
    match item {
        FeedItem::Event { stream_sequence, envelope } => {
            let id = envelope.id;
            match fold.sequencer.offer(envelope.position, envelope, Instant::now()) {
                Offer::Ready(events) => {
                    let now = Utc::now().timestamp();
                    for e in events {
                        if let Err(error) = fold.directory.apply_raw(&e, now) {
                            tracing::error!(position = e.position, %error, "cannot decode identity event");
                        }
                    }
                }
                Offer::Duplicate | Offer::Held { .. } => {}
                Offer::Overflow => return Step::Restart,
            }
            fold.last = Some((stream_sequence, id));
        }
        FeedItem::Undecodable { .. } => fold.last = None,
        FeedItem::CaughtUp { .. } => fold.caught_up = true,
        FeedItem::Reset(error) => {
            tracing::warn!(%error, "identity stream reset; folding it again from the start");
            *fold = Fold::new();
            return Step::Reset;
        }
    }
    Step::Applied
}

/// The message a snapshot would stand at, when one is due.
fn due(fold: &Fold, written: Option<(u64, Instant)>, config: &WriterConfig) -> Option<(u64, Uuid)> {
    let (seq, id) = fold.last?;
    if !fold.caught_up || fold.sequencer.held() > 0 {
        return None;
    }
    let is_due = match written {
        None => seq >= config.every,
        Some((at, when)) => seq > at && (seq - at >= config.every || when.elapsed() >= config.max_age),
    };
    is_due.then_some((seq, id))
}
