//! The one writer of the cache: follows `KUBEGATE_IDENTITY` and `KUBEGATE_ENVIRONMENTS` from
//! their first message, applies each producer's events exactly once and in position order,
//! says when both are caught up, and fails closed when a stream is reset or a gap stays open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubegate_bus::{Bus, Feed, FeedItem, Offer, Sequencer};
use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{DomainEvent, RawEnvelope};
use tokio_util::sync::CancellationToken;

use super::Cache;

/// How long a gap in a producer's positions may stay open before the cache stops trusting itself.
pub const GAP_DEADLINE: Duration = Duration::from_secs(10);

struct Source {
    identity: bool,
    stream: &'static str,
    feed: Feed,
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
    fn new(bus: &Bus, identity: bool) -> Source {
        let (stream, filter) = if identity {
            (IdentityEvent::STREAM, IdentityEvent::subject_filter())
        } else {
            (EnvironmentEvent::STREAM, EnvironmentEvent::subject_filter())
        };
        Source {
            identity,
            stream,
            feed: Feed::follow(bus.clone(), stream, &filter, 1),
            sequencer: Sequencer::new(0),
            must_reach: None,
            feed_caught_up: false,
            position: metrics::gauge!("kubegate_proxy_cache_position", "stream" => stream),
        }
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

/// Runs until `shutdown`.
pub async fn run(cache: Arc<Cache>, bus: Bus, shutdown: CancellationToken) {
    let mut identity = Source::new(&bus, true);
    let mut environments = Source::new(&bus, false);
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

fn handle(cache: &Cache, source: &mut Source, item: FeedItem) {
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
    if identity && super::IGNORED_IDENTITY_EVENTS.contains(&raw.event_type.as_str()) {
        // Most of a long identity log is issued tokens, which the cache never looks at: no
        // typed decode for them (a replica joining a log of a million tokens starts faster).
        return;
    }
    if identity {
        match raw.decode::<IdentityEvent>() {
            Ok(env) => cache.apply_identity(&env.event),
            Err(e) => {
                tracing::error!(position = raw.position, error = %e, "cannot decode identity event");
                metrics::counter!("kubegate_proxy_cache_undecodable_total").increment(1);
            }
        }
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
