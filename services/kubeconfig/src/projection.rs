//! The service's view of identity (users, teams, global roles, expiry, signing keys,
//! revocations), built by applying every event of the `KUBEGATE_IDENTITY` stream to identity's
//! own state type, in log order and exactly once, whatever the bus delivers. It is trusted only
//! once it has caught up with the stream and while no gap in identity's positions stays open.

use std::time::{Duration, Instant};

use kubegate_bus::{FeedItem, Offer, Sequencer};
use kubegate_events::RawEnvelope;
use kubegate_events::identity::IdentityEvent;
use kubegate_identity::domain::IdentityState;

/// How long a gap in identity's positions may stay open before the view stops being trusted.
pub const GAP_LIMIT: Duration = Duration::from_secs(10);

/// What the engine must do after an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// The view was dropped (too many events held behind a gap): follow the stream from its
    /// start again.
    Restart,
}

/// Whether the view may be used, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ready,
    Loading,
    Reset(String),
    Gap { missing: u64 },
}

impl Health {
    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready)
    }

    pub fn describe(&self) -> String {
        match self {
            Health::Ready => "caught up with KUBEGATE_IDENTITY".into(),
            Health::Loading => "reading KUBEGATE_IDENTITY".into(),
            Health::Reset(why) => format!("rebuilding from KUBEGATE_IDENTITY: {why}"),
            Health::Gap { missing } => format!("identity event at position {missing} is missing"),
        }
    }
}

pub struct IdentityProjection {
    pub state: IdentityState,
    sequencer: Sequencer<RawEnvelope>,
    caught_up: bool,
    reset: Option<String>,
    /// Events that could not be read (counted and logged, never applied).
    pub undecodable: u64,
}

impl Default for IdentityProjection {
    fn default() -> Self {
        IdentityProjection {
            state: IdentityState::default(),
            sequencer: Sequencer::new(0),
            caught_up: false,
            reset: None,
            undecodable: 0,
        }
    }
}

impl IdentityProjection {
    /// Applies one item of the feed.
    pub fn handle(&mut self, item: FeedItem, now: Instant) -> Action {
        match item {
            FeedItem::Event { envelope, stream_sequence } => {
                match self.sequencer.offer(envelope.position, envelope, now) {
                    Offer::Ready(ready) => {
                        for raw in ready {
                            self.apply(&raw);
                        }
                    }
                    Offer::Duplicate => {}
                    Offer::Held { missing } => {
                        tracing::warn!(missing, stream_sequence, "identity event held back behind a gap");
                    }
                    Offer::Overflow => {
                        tracing::error!("too many identity events held behind a gap; rebuilding");
                        self.clear(Some("a gap in identity's events did not close".into()));
                        return Action::Restart;
                    }
                }
            }
            FeedItem::Undecodable { stream_sequence, error } => {
                self.undecodable += 1;
                tracing::error!(stream_sequence, %error, "KUBEGATE_IDENTITY holds a message that is not an event");
            }
            FeedItem::CaughtUp { .. } => {
                self.caught_up = true;
                self.reset = None;
            }
            FeedItem::Reset(error) => {
                // The stream was deleted or restarted its numbering: nothing built from it holds.
                self.clear(Some(error.to_string()));
            }
        }
        Action::None
    }

    fn clear(&mut self, why: Option<String>) {
        *self = IdentityProjection { reset: why, undecodable: self.undecodable, ..Default::default() };
    }

    fn apply(&mut self, raw: &RawEnvelope) {
        match raw.decode::<IdentityEvent>() {
            Ok(env) => self.state.apply(&env),
            Err(e) => {
                // A fact this build cannot read: keep the order, say so loudly.
                self.undecodable += 1;
                tracing::error!(position = raw.position, error = %e, "cannot decode identity event");
                self.state.position = raw.position;
            }
        }
    }

    pub fn health(&self, now: Instant) -> Health {
        if let Some(why) = &self.reset {
            return Health::Reset(why.clone());
        }
        if !self.caught_up {
            return Health::Loading;
        }
        match self.sequencer.gap_age(now) {
            Some(age) if age >= GAP_LIMIT => Health::Gap { missing: self.sequencer.last() + 1 },
            _ => Health::Ready,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use kubegate_bus::FeedError;
    use kubegate_events::identity::{GlobalRole, UserCreated};
    use kubegate_events::{Actor, Envelope, SealedSecret};

    use super::*;

    fn user_created(position: u64, id: u64) -> FeedItem {
        let mut env = Envelope::new(
            format!("user-{id}"),
            Actor::system("test"),
            "c",
            IdentityEvent::UserCreated(UserCreated {
                user_id: id,
                username: format!("user{id}"),
                role: GlobalRole::User,
                password: SealedSecret("x".into()),
            }),
        );
        env.position = position;
        FeedItem::Event { stream_sequence: position, envelope: env.to_raw().unwrap() }
    }

    #[test]
    fn given_a_feed_when_it_catches_up_then_the_view_is_ready() {
        let now = Instant::now();
        let mut p = IdentityProjection::default();
        assert_eq!(p.health(now), Health::Loading);
        p.handle(user_created(1, 1), now);
        p.handle(user_created(2, 2), now);
        p.handle(FeedItem::CaughtUp { stream_sequence: 2 }, now);
        assert!(p.health(now).is_ready());
        assert_eq!(p.state.users.len(), 2);
    }

    #[test]
    fn given_a_re_published_event_when_it_arrives_again_then_it_is_applied_once() {
        let now = Instant::now();
        let mut p = IdentityProjection::default();
        p.handle(user_created(1, 1), now);
        p.handle(user_created(1, 1), now);
        assert_eq!(p.state.version("user-1"), 1);
    }

    #[test]
    fn given_a_gap_when_it_stays_open_then_the_view_is_not_trusted_until_it_closes() {
        let now = Instant::now();
        let mut p = IdentityProjection::default();
        p.handle(user_created(1, 1), now);
        p.handle(FeedItem::CaughtUp { stream_sequence: 1 }, now);
        p.handle(user_created(3, 3), now);
        assert!(p.health(now).is_ready(), "a fresh gap may just be reordering");
        assert!(!p.state.users.contains_key(&3), "held back, not applied out of order");
        assert_eq!(p.health(now + GAP_LIMIT), Health::Gap { missing: 2 });
        p.handle(user_created(2, 2), now + GAP_LIMIT);
        assert!(p.health(now + GAP_LIMIT).is_ready());
        assert_eq!(p.state.users.len(), 3);
    }

    #[test]
    fn given_a_reset_stream_when_the_feed_says_so_then_the_view_is_dropped_until_caught_up_again() {
        let now = Instant::now();
        let mut p = IdentityProjection::default();
        p.handle(user_created(1, 1), now);
        p.handle(FeedItem::CaughtUp { stream_sequence: 1 }, now);
        p.handle(FeedItem::Reset(FeedError::StreamGone("KUBEGATE_IDENTITY".into())), now);
        assert!(matches!(p.health(now), Health::Reset(_)));
        assert!(p.state.users.is_empty());
        p.handle(user_created(1, 1), now);
        p.handle(FeedItem::CaughtUp { stream_sequence: 1 }, now);
        assert!(p.health(now).is_ready());
        assert_eq!(p.state.users.len(), 1);
    }

    #[test]
    fn given_an_unreadable_event_when_it_arrives_then_it_is_skipped_in_order() {
        let now = Instant::now();
        let mut p = IdentityProjection::default();
        let FeedItem::Event { envelope: mut raw, .. } = user_created(1, 1) else { unreachable!() };
        raw.event_type = "SomethingNew".into();
        p.handle(FeedItem::Event { stream_sequence: 1, envelope: raw }, now);
        p.handle(user_created(2, 2), now);
        assert_eq!(p.undecodable, 1);
        assert_eq!(p.state.users.keys().copied().collect::<Vec<_>>(), vec![2]);
    }
}
