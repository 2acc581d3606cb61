//! An ordered feed of one JetStream stream from a given sequence: reconnects and resumes by
//! itself, says when it has caught up with what the stream held at start, and notices a stream
//! that was deleted or reset under it (so the consumer can fail closed instead of serving an
//! empty or stale view).

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use kubegate_events::RawEnvelope;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::connection::Bus;

/// What a feed delivers.
#[derive(Debug)]
pub enum FeedItem {
    /// The next message of the stream.
    Event { stream_sequence: u64, envelope: RawEnvelope },
    /// A message that is not a kubegate envelope (never applied; counted and logged).
    Undecodable { stream_sequence: u64, error: String },
    /// Everything the stream held when the feed (re)started has been delivered.
    CaughtUp { stream_sequence: u64 },
    /// The stream disappeared or restarted its numbering: what was built from it cannot be trusted.
    Reset(FeedError),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    #[error("stream {0} no longer exists")]
    StreamGone(String),
    #[error("stream {stream} was reset: it ends at sequence {last} but {seen} had been seen")]
    StreamReset { stream: String, last: u64, seen: u64 },
}

/// A running feed; drop or cancel to stop it.
pub struct Feed {
    pub rx: mpsc::Receiver<FeedItem>,
    cancel: CancellationToken,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Feed {
    /// Follows `stream` (messages matching `filter`, e.g. `kubegate.identity.>`) from
    /// `start_sequence` (1 = from the beginning).
    pub fn follow(bus: Bus, stream: &str, filter: &str, start_sequence: u64) -> Feed {
        let (tx, rx) = mpsc::channel(4096);
        let cancel = CancellationToken::new();
        let task = FeedTask {
            bus,
            stream: stream.to_string(),
            filter: filter.to_string(),
            next: start_sequence.max(1),
            tx,
            cancel: cancel.clone(),
        };
        tokio::spawn(task.run());
        Feed { rx, cancel }
    }

    pub async fn recv(&mut self) -> Option<FeedItem> {
        self.rx.recv().await
    }
}

/// Checks (one a second) a consumer may go without delivering while the stream is ahead of it.
const STALL_CHECKS: u32 = 5;

/// Tells a consumer that has stopped delivering: for [`STALL_CHECKS`] checks in a row the stream
/// held messages past the feed's position (`last >= next`; a domain stream holds only its feed's
/// subjects) and the position did not move. Seen with a consumer created on an empty stream
/// that never delivered what was published right after; a new consumer from the same position
/// delivers it. A feed waiting for its reader does not check meanwhile, so it is never taken
/// for stuck.
#[derive(Debug, Default)]
struct Stall {
    /// The position the stream has been ahead of, and at how many checks in a row.
    ahead_of: Option<(u64, u32)>,
}

impl Stall {
    fn stuck(&mut self, next: u64, last: u64) -> bool {
        self.ahead_of = match self.ahead_of {
            _ if last < next => None,
            Some((at, checks)) if at == next => Some((at, checks + 1)),
            _ => Some((next, 1)),
        };
        self.ahead_of.is_some_and(|(_, checks)| checks >= STALL_CHECKS)
    }
}

struct FeedTask {
    bus: Bus,
    stream: String,
    filter: String,
    next: u64,
    tx: mpsc::Sender<FeedItem>,
    cancel: CancellationToken,
}

enum Round {
    Retry,
    Stop,
}

impl FeedTask {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let before = self.next;
            let cancel = self.cancel.clone();
            let round = tokio::select! {
                _ = cancel.cancelled() => Round::Stop,
                r = self.round() => r,
            };
            if let Round::Stop = round {
                return;
            }
            if self.next != before {
                backoff = Duration::from_millis(50);
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// One consumer's life: create it at `next`, deliver until something breaks.
    async fn round(&mut self) -> Round {
        let mut stream = match self.bus.jetstream().get_stream(&self.stream).await {
            Ok(s) => s,
            Err(e) => {
                // A stream never seen is simply not created yet; one seen before is gone.
                if self.next > 1 && e.to_string().contains("not found") {
                    return self.reset(FeedError::StreamGone(self.stream.clone())).await;
                }
                return Round::Retry;
            }
        };
        let last_at_start = match stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(_) => return Round::Retry,
        };
        if last_at_start + 1 < self.next {
            let seen = self.next - 1;
            return self
                .reset(FeedError::StreamReset { stream: self.stream.clone(), last: last_at_start, seen })
                .await;
        }
        let consumer = match stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.filter.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: self.next },
                ..Default::default()
            })
            .await
        {
            Ok(c) => c,
            Err(_) => return Round::Retry,
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(_) => return Round::Retry,
        };
        let lag = metrics::gauge!("kubegate_feed_lag_messages", "stream" => self.stream.clone());
        let mut caught_up = false;
        if last_at_start < self.next {
            caught_up = true;
            if self.tx.send(FeedItem::CaughtUp { stream_sequence: last_at_start }).await.is_err() {
                return Round::Stop;
            }
        }
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = self.bus.watch_state();
        state.mark_unchanged();
        let mut stall = Stall::default();
        loop {
            tokio::select! {
                changed = state.changed() => {
                    // After a reconnect, start a fresh consumer at once rather than wait for the
                    // old one's heartbeats to time out: the server may have lost it.
                    if changed.is_err() || matches!(*state.borrow(), crate::ConnectionState::Connected) {
                        return Round::Retry;
                    }
                }
                msg = messages.next() => {
                    let Some(Ok(msg)) = msg else { return Round::Retry };
                    let Ok(info) = msg.info() else { continue };
                    let seq = info.stream_sequence;
                    let pending = info.pending;
                    // How far behind the stream this consumer is: its lag (set on every message
                    // once caught up; while replaying a long history, every 1,024th is enough).
                    if caught_up || pending % 1024 == 0 {
                        lag.set(pending as f64);
                    }
                    if seq < self.next {
                        continue;
                    }
                    self.next = seq + 1;
                    let item = match RawEnvelope::from_slice(&msg.payload) {
                        Ok(envelope) => FeedItem::Event { stream_sequence: seq, envelope },
                        Err(e) => FeedItem::Undecodable { stream_sequence: seq, error: e.to_string() },
                    };
                    if self.tx.send(item).await.is_err() {
                        return Round::Stop;
                    }
                    if !caught_up && (seq >= last_at_start || pending == 0) {
                        caught_up = true;
                        if self.tx.send(FeedItem::CaughtUp { stream_sequence: seq }).await.is_err() {
                            return Round::Stop;
                        }
                    }
                }
                _ = check.tick() => {
                    // A stream deleted or recreated under an ordered consumer may just look quiet.
                    match stream.info().await {
                        Ok(info) if info.state.last_sequence + 1 < self.next => {
                            let seen = self.next - 1;
                            let last = info.state.last_sequence;
                            return self.reset(FeedError::StreamReset { stream: self.stream.clone(), last, seen }).await;
                        }
                        Ok(info) => {
                            if stall.stuck(self.next, info.state.last_sequence) {
                                tracing::warn!(
                                    stream = %self.stream,
                                    next = self.next,
                                    last = info.state.last_sequence,
                                    "the event feed's consumer delivered nothing while the stream is ahead of it; starting a new one"
                                );
                                return Round::Retry;
                            }
                        }
                        Err(e) if e.to_string().contains("not found") => {
                            return self.reset(FeedError::StreamGone(self.stream.clone())).await;
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }

    async fn reset(&mut self, error: FeedError) -> Round {
        tracing::error!(error = %error, "event feed cannot continue");
        if self.tx.send(FeedItem::Reset(error)).await.is_err() {
            return Round::Stop;
        }
        // The consumer decides what to do (rebuild from scratch); this feed restarts from 1.
        self.next = 1;
        Round::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::{STALL_CHECKS, Stall};

    #[test]
    fn a_consumer_is_stuck_only_when_the_stream_stays_ahead_of_a_position_that_does_not_move() {
        let stuck_after = |stall: &mut Stall, next, last| {
            (1..=STALL_CHECKS).map(|_| stall.stuck(next, last)).collect::<Vec<_>>()
        };
        let mut once = vec![false; STALL_CHECKS as usize - 1];
        once.push(true);

        let mut stall = Stall::default();
        assert!(!stall.stuck(1, 0) && !stall.stuck(1, 0), "an empty stream: nothing to deliver");
        assert_eq!(stuck_after(&mut stall, 1, 2), once, "the stream stayed ahead of position 1");

        let mut stall = Stall::default();
        assert!(!stall.stuck(1, 500));
        for next in [200, 300, 400, 500] {
            assert!(!stall.stuck(next, 900), "delivering, however far behind");
        }
        assert!(!stall.stuck(901, 900), "caught up");
        assert_eq!(stuck_after(&mut stall, 901, 905), once, "ahead again: the count starts over");
    }
}
