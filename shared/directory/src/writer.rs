//! The snapshot writer, run by the owner of a stream (identity for `KUBEGATE_IDENTITY`,
//! kubeconfig for `KUBEGATE_ENVIRONMENTS`; proxy replicas may only read): follows the stream
//! with the fold the replicas run, and writes a snapshot once it has caught up, whenever `every`
//! more messages have arrived since the last one, and when the last one is older than `max_age`
//! and the stream has moved on. It starts from its latest snapshot as replicas do (checked the
//! same way), else from the first message.

use std::time::{Duration, Instant};

use chrono::Utc;
use kubegate_bus::{Bus, Feed, FeedItem, Offer, Sequencer};
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{DomainEvent, RawEnvelope};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::environments::EnvironmentLog;
use crate::snapshot::{self, Folded, Mark, Resume, Snapshot};
use crate::{Directory, State};

/// A fold the writer keeps and snapshots.
pub trait Fold: Send + 'static {
    type State: Folded + Send + Sync;
    /// The subjects of the stream it folds.
    fn filter() -> String;
    fn empty() -> Self;
    /// Applies one event, in position order.
    fn apply(&mut self, event: &RawEnvelope);
    /// What a snapshot written now holds.
    fn state(&mut self) -> Self::State;
    fn restore(&mut self, state: Self::State) -> Result<(), String>;
}

impl Fold for Directory {
    type State = State;

    fn filter() -> String {
        IdentityEvent::subject_filter()
    }

    fn empty() -> Directory {
        Directory::new()
    }

    fn apply(&mut self, event: &RawEnvelope) {
        if let Err(error) = self.apply_raw(event, Utc::now().timestamp()) {
            tracing::error!(position = event.position, %error, "cannot decode identity event");
        }
    }

    fn state(&mut self) -> State {
        self.prune_revocations(Utc::now().timestamp());
        Directory::state(self)
    }

    fn restore(&mut self, state: State) -> Result<(), String> {
        Directory::restore(self, state)
    }
}

impl Fold for EnvironmentLog {
    type State = EnvironmentLog;

    fn filter() -> String {
        EnvironmentEvent::subject_filter()
    }

    fn empty() -> EnvironmentLog {
        EnvironmentLog::default()
    }

    fn apply(&mut self, event: &RawEnvelope) {
        EnvironmentLog::apply(self, event);
    }

    fn state(&mut self) -> EnvironmentLog {
        self.clone()
    }

    fn restore(&mut self, state: EnvironmentLog) -> Result<(), String> {
        // Applied again, so that a snapshot written before superseded events were dropped is
        // compacted too.
        *self = EnvironmentLog::of(&state.events);
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Write again after this many messages; 0 turns the writer off.
    pub every: u64,
    /// Write again after this long when anything arrived since.
    pub max_age: Duration,
    /// How often the conditions are looked at besides on each message.
    pub check: Duration,
}

impl From<&kubegate_config::SnapshotArgs> for WriterConfig {
    fn from(args: &kubegate_config::SnapshotArgs) -> WriterConfig {
        WriterConfig { every: args.every, max_age: args.max_age, ..WriterConfig::default() }
    }
}

impl Default for WriterConfig {
    fn default() -> WriterConfig {
        WriterConfig { every: 10_000, max_age: Duration::from_secs(3600), check: Duration::from_secs(10) }
    }
}

/// What the writer follows, reset together when the stream is.
struct Follower<F> {
    fold: F,
    sequencer: Sequencer<RawEnvelope>,
    /// The last message delivered and its envelope id (none after an undecodable one).
    last: Option<(u64, Uuid)>,
    caught_up: bool,
}

impl<F: Fold> Follower<F> {
    fn new() -> Follower<F> {
        Follower { fold: F::empty(), sequencer: Sequencer::new(0), last: None, caught_up: false }
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

/// Runs until `shutdown`, folding `F`'s stream. Writes only while `active()` says so (one
/// writer among the owner's instances: the one whose outbox relay leads); the others follow the
/// stream all the same, so whichever takes over has its fold ready.
pub async fn run<F: Fold>(
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
    let source = <F::State as Folded>::SOURCE;
    let mut written: Option<(u64, Instant)> = match snapshot::latest_mark_of::<F::State>(&bus).await {
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
    let written_gauge = metrics::gauge!("kubegate_directory_snapshot_sequence", "stream" => source);
    let mut fold = Follower::<F>::new();
    let (start, mut resume) = match resume_from_latest(&bus, &mut fold).await {
        Some((r, sequence)) => (sequence, Some(r)),
        None => (1, None),
    };
    let filter = F::filter();
    let follow_from = |start| Feed::follow(bus.clone(), source, &filter, start);
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
                        tracing::warn!(why, stream = source, "the latest snapshot does not match the stream; folding it from the start");
                        Step::Restart
                    }
                    _ => follow(&mut fold, item),
                };
                match step {
                    Step::Applied => {}
                    Step::Reset => written = None,
                    Step::Restart => {
                        feed = follow_from(1);
                        fold = Follower::new();
                        written = None;
                        continue;
                    }
                }
            }
            _ = tick.tick() => {}
        }
        let Some(due) = due(&fold, written, &config).filter(|_| active()) else { continue };
        let mark = Mark {
            stream_sequence: due.0,
            event_id: due.1,
            position: fold.sequencer.last(),
            written_at: Utc::now(),
        };
        let snapshot = Snapshot::new(mark, fold.fold.state());
        let started = Instant::now();
        match snapshot::write(&bus, &snapshot).await {
            Ok(()) => {
                tracing::info!(
                    stream = source,
                    stream_sequence = due.0,
                    position = snapshot.mark.position,
                    took_ms = started.elapsed().as_millis() as u64,
                    "snapshot written"
                );
                written = Some((due.0, Instant::now()));
                written_gauge.set(due.0 as f64);
                metrics::counter!("kubegate_directory_snapshots_written_total", "stream" => source)
                    .increment(1);
            }
            Err(e) => {
                tracing::warn!(error = %e, stream = source, "cannot write a snapshot; trying again later")
            }
        }
    }
}

/// Loads the latest snapshot into `fold` (whose sequencer then stands at its position): how to
/// check the feed's first item, and the stream sequence to start the feed at. `None` (and an
/// untouched fold) when there is none or it cannot be used.
async fn resume_from_latest<F: Fold>(bus: &Bus, fold: &mut Follower<F>) -> Option<(Resume, u64)> {
    let stream = <F::State as Folded>::SOURCE;
    let snapshot = match snapshot::load_of::<F::State>(bus).await {
        Ok(s) => s?,
        Err(error) => {
            tracing::warn!(%error, stream, "cannot load the latest snapshot; folding the stream from the start");
            return None;
        }
    };
    if let Err(error) = fold.fold.restore(snapshot.state) {
        tracing::warn!(%error, stream, "the latest snapshot cannot be used; folding the stream from the start");
        return None;
    }
    fold.sequencer = Sequencer::new(snapshot.mark.position);
    tracing::info!(
        stream,
        stream_sequence = snapshot.mark.stream_sequence,
        "snapshot writer resumes from the latest snapshot"
    );
    Some((Resume::new(&snapshot.mark), snapshot.mark.stream_sequence))
}

/// Applies one feed item.
fn follow<F: Fold>(fold: &mut Follower<F>, item: FeedItem) -> Step {
    match item {
        FeedItem::Event { stream_sequence, envelope } => {
            let id = envelope.id;
            match fold.sequencer.offer(envelope.position, envelope, Instant::now()) {
                Offer::Ready(events) => {
                    for e in events {
                        fold.fold.apply(&e);
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
            tracing::warn!(%error, "stream reset; folding it again from the start");
            *fold = Follower::new();
            return Step::Reset;
        }
    }
    Step::Applied
}

/// The message a snapshot would stand at, when one is due.
fn due<F>(fold: &Follower<F>, written: Option<(u64, Instant)>, config: &WriterConfig) -> Option<(u64, Uuid)> {
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
