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
        }
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
            metrics::gauge!("kubegate_proxy_cache_position", "stream" => source.stream)
                .set(source.sequencer.last() as f64);
        }
        FeedItem::Undecodable { stream_sequence, error } => {
            // Not a kubegate envelope: never applied. Counted so an operator sees it.
            tracing::error!(stream = source.stream, stream_sequence, %error, "undecodable message in the stream");
            metrics::counter!("kubegate_proxy_cache_undecodable_total").increment(1);
        }
        FeedItem::CaughtUp { stream_sequence } => {
            cache.touch();
            cache.set_caught_up(source.identity, true);
            tracing::info!(stream = source.stream, stream_sequence, "cache caught up");
        }
        FeedItem::Reset(error) => {
            tracing::error!(stream = source.stream, %error, "stream reset; rebuilding the cache from it");
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
