//! The one writer of the cache: follows `KUBEGATE_IDENTITY` and `KUBEGATE_ENVIRONMENTS` from
//! their first message, applies each producer's events exactly once and in position order,
//! says when both are caught up, and fails closed when a stream is reset or a gap stays open.
//!
//! The identity stream is long (every issued token is in it), so a replica first loads the
//! identity service's latest directory snapshot, when there is one, and follows the stream
//! from the snapshot's message on. That message must be the first one it receives, with the
//! snapshot's envelope id; otherwise the snapshot is not of this stream's history and the
//! replica starts again from nothing and the first message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubegate_bus::{Bus, Feed, FeedItem, Offer, Sequencer};
use kubegate_directory::snapshot::{self, Mark, Resume};
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{DomainEvent, RawEnvelope};
use tokio_util::sync::CancellationToken;

use super::Cache;

/// The environment event type the cache ignores, and most of a long environments log.
pub(super) const DOWNLOADED: &str = "KubeconfigDownloaded";
/// How long a gap in a producer's positions may stay open before the cache stops trusting itself.
pub const GAP_DEADLINE: Duration = Duration::from_secs(10);
/// How long a starting replica waits for the bus and for the snapshot before it replays the
/// identity stream from its start instead.
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
        cache.clear_identity();
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

/// Runs until `shutdown`; with `snapshots`, starts the identity part from the latest snapshot.
pub async fn run(cache: Arc<Cache>, bus: Bus, snapshots: bool, shutdown: CancellationToken) {
    let mut environments = Source::new(&bus, false, None);
    let restored = if snapshots {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            mark = restore(&cache, &bus) => mark,
        }
    } else {
        None
    };
    let mut identity = Source::new(&bus, true, restored.as_ref());
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

/// Loads the latest directory snapshot into the cache; `None` (and an empty directory) when
/// there is none or it cannot be had.
async fn restore(cache: &Cache, bus: &Bus) -> Option<Mark> {
    let started = Instant::now();
    if !bus.wait_connected(SNAPSHOT_WAIT).await {
        tracing::warn!("no bus yet; replaying the identity stream from its start");
        return None;
    }
    let snapshot = match tokio::time::timeout(SNAPSHOT_WAIT, snapshot::load(bus)).await {
        Ok(Ok(Some(snapshot))) => snapshot,
        Ok(Ok(None)) => {
            tracing::info!("no directory snapshot; replaying the identity stream from its start");
            return None;
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot load the directory snapshot; replaying the identity stream from its start");
            return None;
        }
        Err(_) => {
            tracing::warn!(
                "the directory snapshot did not load in time; replaying the identity stream from its start"
            );
            return None;
        }
    };
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
    metrics::gauge!("kubegate_proxy_cache_snapshot_sequence").set(mark.stream_sequence as f64);
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
    } else if raw.event_type == DOWNLOADED {
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
