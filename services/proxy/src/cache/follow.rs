//! The one writer of the cache: follows `KUBEGATE_IDENTITY` and `KUBEGATE_ENVIRONMENTS` from
//! their first message, applies each producer's events exactly once and in position order,
//! says when both are caught up, and fails closed when a stream is reset or a gap stays open.
//!
//! Both streams grow long (every issued token is in the identity stream, every download in the
//! environments stream), so a replica first loads the latest snapshot of each, when there is
//! one (identity's directory snapshot, kubeconfig's environments snapshot), and follows the
//! stream from the snapshot's message on. That message must be the first one it receives, with
//! the snapshot's envelope id; otherwise the snapshot is not of this stream's history and the
//! replica starts that stream again from nothing and the first message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubegate_bus::{Bus, Feed, FeedItem, Offer, Sequencer};
use kubegate_directory::environments::{self, EnvironmentLog};
use kubegate_directory::snapshot::{self, Folded, Mark, Resume, Snapshot};
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{DomainEvent, RawEnvelope};
use tokio_util::sync::CancellationToken;

use super::Cache;

/// How long a gap in a producer's positions may stay open before the cache stops trusting itself.
pub const GAP_DEADLINE: Duration = Duration::from_secs(10);
/// How long a starting replica waits for the bus and for a snapshot before it replays the
/// stream from its start instead.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

struct Source {
    identity: bool,
    stream: &'static str,
    filter: String,
    bus: Bus,
    feed: Feed,
    /// Started from a snapshot: what the feed's first item must be.
    expect: Option<Resume>,
    sequencer: Sequencer<RawEnvelope>,
    /// After a reset: the position this replica had applied before it. A stream that comes back
    /// shorter (recreated empty, restored from an old backup) is not trusted until it holds at
    /// least that much again; until then the replica answers 503, never from empty or old state.
    must_reach: Option<u64>,
    /// The feed said it caught up with the stream's end (since the last reset).
    feed_caught_up: bool,
    /// The position gauge, looked up once.
    position: metrics::Gauge,
}

impl Source {
    /// Follows the stream from its first message, or from a snapshot's (already restored).
    fn new(bus: &Bus, identity: bool, from: Option<&Mark>) -> Source {
        let (stream, filter) = if identity {
            (IdentityEvent::STREAM, IdentityEvent::subject_filter())
        } else {
            (EnvironmentEvent::STREAM, EnvironmentEvent::subject_filter())
        };
        Source {
            identity,
            stream,
            feed: Feed::follow(bus.clone(), stream, &filter, from.map(|m| m.stream_sequence).unwrap_or(1)),
            filter,
            bus: bus.clone(),
            expect: from.map(Resume::new),
            sequencer: Sequencer::new(from.map(|m| m.position).unwrap_or(0)),
            must_reach: None,
            feed_caught_up: false,
            position: metrics::gauge!("kubegate_proxy_cache_position", "stream" => stream),
        }
    }

    /// The snapshot turned out not to be of this stream: forget it, follow from the start.
    fn start_over(&mut self, cache: &Cache, why: &str) {
        tracing::error!(
            stream = self.stream,
            why,
            "the snapshot does not match the stream; replaying it from its start"
        );
        metrics::counter!("kubegate_proxy_cache_snapshots_refused_total").increment(1);
        self.expect = None;
        if self.identity {
            cache.clear_identity();
        } else {
            cache.clear_environments();
        }
        self.sequencer = Sequencer::new(0);
        self.must_reach = None;
        self.feed_caught_up = false;
        self.feed = Feed::follow(self.bus.clone(), self.stream, &self.filter, 1);
    }

    /// Whether what was applied can be served: caught up, and not shorter than before a reset.
    fn settle(&mut self, cache: &Cache) {
        if !self.feed_caught_up {
            return;
        }
        let last = self.sequencer.last();
        match self.must_reach {
            Some(needed) if last < needed => return,
            Some(_) => {
                tracing::warn!(stream = self.stream, position = last, "the stream holds its whole log again");
                self.must_reach = None;
            }
            None => {}
        }
        cache.set_caught_up(self.identity, true);
    }
}

/// Runs until `shutdown`; with `snapshots`, starts each stream from its latest snapshot.
pub async fn run(cache: Arc<Cache>, bus: Bus, snapshots: bool, shutdown: CancellationToken) {
    let (identity_mark, environments_mark) = if snapshots {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            marks = async { tokio::join!(restore_identity(&cache, &bus), restore_environments(&cache, &bus)) } => marks,
        }
    } else {
        (None, None)
    };
    let mut environments = Source::new(&bus, false, environments_mark.as_ref());
    let mut identity = Source::new(&bus, true, identity_mark.as_ref());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            item = identity.feed.recv() => match item {
                Some(item) => handle(&cache, &mut identity, item),
                None => return,
            },
            item = environments.feed.recv() => match item {
                Some(item) => handle(&cache, &mut environments, item),
                None => return,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let stuck = [&identity, &environments]
                    .iter()
                    .any(|s| s.sequencer.gap_age(now).map(|age| age > GAP_DEADLINE).unwrap_or(false));
                if stuck && cache.trust() != super::Trust::Untrusted {
                    tracing::error!("a gap in the event positions did not close; refusing requests until it does");
                }
                cache.set_untrusted(stuck);
                cache.prune_revocations(chrono::Utc::now().timestamp());
                metrics::gauge!("kubegate_proxy_cache_quiet_seconds").set(cache.since_contact().as_secs_f64());
                metrics::gauge!("kubegate_proxy_cache_ready").set(if cache.trust() == super::Trust::Current { 1.0 } else { 0.0 });
            }
        }
    }
}

/// The latest snapshot of `S`; `None` when there is none or it cannot be had (the stream is then
/// replayed from its start).
async fn load_latest<S: Folded>(bus: &Bus) -> Option<Snapshot<S>> {
    let stream = S::SOURCE;
    if !bus.wait_connected(SNAPSHOT_WAIT).await {
        tracing::warn!(stream, "no bus yet; replaying the stream from its start");
        return None;
    }
    match tokio::time::timeout(SNAPSHOT_WAIT, snapshot::load_of::<S>(bus)).await {
        Ok(Ok(Some(snapshot))) => Some(snapshot),
        Ok(Ok(None)) => {
            tracing::info!(stream, "no snapshot; replaying the stream from its start");
            None
        }
        Ok(Err(error)) => {
            tracing::warn!(stream, %error, "cannot load the snapshot; replaying the stream from its start");
            None
        }
        Err(_) => {
            tracing::warn!(stream, "the snapshot did not load in time; replaying the stream from its start");
            None
        }
    }
}

/// Loads the latest environments snapshot into the cache: its events, applied as from the
/// stream. `None` (and no environments) when there is none.
async fn restore_environments(cache: &Cache, bus: &Bus) -> Option<Mark> {
    let started = Instant::now();
    let snapshot = load_latest::<EnvironmentLog>(bus).await?;
    for event in &snapshot.state.events {
        apply(cache, false, event);
    }
    let mark = snapshot.mark;
    tracing::info!(
        stream_sequence = mark.stream_sequence,
        position = mark.position,
        events = snapshot.state.events.len(),
        environments = cache.environment_count(),
        took_ms = started.elapsed().as_millis() as u64,
        "environments restored from a snapshot; following the environments stream from there"
    );
    metrics::gauge!("kubegate_proxy_cache_snapshot_sequence", "stream" => EnvironmentLog::SOURCE)
        .set(mark.stream_sequence as f64);
    Some(mark)
}

/// Loads the latest directory snapshot into the cache; `None` (and an empty directory) when
/// there is none or it cannot be had.
async fn restore_identity(cache: &Cache, bus: &Bus) -> Option<Mark> {
    let started = Instant::now();
    let snapshot = load_latest::<kubegate_directory::State>(bus).await?;
    let (users, revoked) = (snapshot.state.users.len(), snapshot.state.revoked.len());
    if let Err(error) = cache.directory.restore(snapshot.state) {
        tracing::warn!(%error, "the directory snapshot cannot be used; replaying the identity stream from its start");
        return None;
    }
    cache.prune_revocations(chrono::Utc::now().timestamp());
    let mark = snapshot.mark;
    tracing::info!(
        stream_sequence = mark.stream_sequence,
        position = mark.position,
        users,
        revoked,
        took_ms = started.elapsed().as_millis() as u64,
        "directory restored from a snapshot; following the identity stream from there"
    );
    metrics::gauge!("kubegate_proxy_cache_snapshot_sequence", "stream" => snapshot::SOURCE)
        .set(mark.stream_sequence as f64);
    Some(mark)
}

fn handle(cache: &Cache, source: &mut Source, item: FeedItem) {
    if let Some(resume) = source.expect.take()
        && let Err(why) = resume.check(&item)
    {
        source.start_over(cache, &why);
        return;
    }
    match item {
        FeedItem::Event { stream_sequence, envelope } => {
            cache.touch();
            let position = envelope.position;
            match source.sequencer.offer(position, envelope, Instant::now()) {
                Offer::Ready(events) => {
                    for e in events {
                        apply(cache, source.identity, &e);
                    }
                }
                Offer::Duplicate => metrics::counter!("kubegate_proxy_cache_duplicates_total").increment(1),
                Offer::Held { missing } => {
                    tracing::warn!(
                        stream = source.stream,
                        stream_sequence,
                        position,
                        missing,
                        "event ahead of a gap held back"
                    );
                    metrics::counter!("kubegate_proxy_cache_held_total").increment(1);
                }
                Offer::Overflow => {
                    tracing::error!(
                        stream = source.stream,
                        "too many events held behind a gap; failing closed"
                    );
                    cache.set_untrusted(true);
                }
            }
            source.position.set(source.sequencer.last() as f64);
            if source.must_reach.is_some() {
                source.settle(cache);
            }
        }
        FeedItem::Undecodable { stream_sequence, error } => {
            // Not a kubegate envelope: never applied. Counted so an operator sees it.
            tracing::error!(stream = source.stream, stream_sequence, %error, "undecodable message in the stream");
            metrics::counter!("kubegate_proxy_cache_undecodable_total").increment(1);
        }
        FeedItem::CaughtUp { stream_sequence } => {
            cache.touch();
            source.feed_caught_up = true;
            source.settle(cache);
            match source.must_reach {
                None => tracing::info!(stream = source.stream, stream_sequence, "cache caught up"),
                Some(needed) => tracing::error!(
                    stream = source.stream,
                    stream_sequence,
                    needed,
                    "the stream is shorter than what this replica had applied; refusing requests until it is restored (or the replica is restarted to accept the shorter log)"
                ),
            }
        }
        FeedItem::Reset(error) => {
            tracing::error!(stream = source.stream, %error, "stream reset; rebuilding the cache from it");
            let applied = source.sequencer.last().max(source.must_reach.unwrap_or(0));
            source.must_reach = (applied > 0).then_some(applied);
            source.feed_caught_up = false;
            if source.identity {
                cache.clear_identity();
            } else {
                cache.clear_environments();
            }
            source.sequencer = Sequencer::new(0);
        }
    }
}

fn apply(cache: &Cache, identity: bool, raw: &RawEnvelope) {
    if identity {
        // Types the directory ignores (most of a long log: issued tokens) are not even decoded.
        match cache.directory.apply_raw(raw, chrono::Utc::now().timestamp()) {
            Ok(Some(event)) => cache.close_streams_ended_by(&event),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(position = raw.position, error = %e, "cannot decode identity event");
                metrics::counter!("kubegate_proxy_cache_undecodable_total").increment(1);
            }
        }
    } else if !environments::kept(raw) {
        // Every download is in the log and the cache keeps nothing of it: not decoded.
    } else {
        match raw.decode::<EnvironmentEvent>() {
            Ok(env) => cache.apply_environment(&env.event),
            Err(e) => {
                tracing::error!(position = raw.position, error = %e, "cannot decode environment event");
                metrics::counter!("kubegate_proxy_cache_undecodable_total").increment(1);
            }
        }
    }
}
