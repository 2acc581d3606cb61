//! Publishing events to JetStream with `Nats-Msg-Id` = event id, many acknowledgements in flight.

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use kubegate_events::RawEnvelope;

use crate::connection::Bus;

#[derive(Debug, thiserror::Error)]
#[error("published {published} of {total} events; then: {message}")]
pub struct PublishError {
    /// How many of the batch, from its start, are known to be stored.
    pub published: usize,
    pub total: usize,
    pub message: String,
}

impl Bus {
    /// Publishes a batch in order and waits for every acknowledgement. On failure, reports how
    /// long a prefix is known stored; re-publishing the rest (or all) is safe: the stream drops a
    /// duplicate id inside its window and consumers skip positions they have applied.
    pub async fn publish_events(&self, events: &[(&str, &RawEnvelope)]) -> Result<(), PublishError> {
        let total = events.len();
        let mut published = 0;
        // Acknowledgements are awaited a window at a time: the context allows only so many in
        // flight (`max_ack_inflight`), and a publish beyond that waits for an earlier ack to be
        // taken, so one unbounded batch would wait on itself.
        for window in events.chunks(ACK_WINDOW) {
            let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(window.len());
            for (i, (subject, env)) in window.iter().enumerate() {
                let msg = PublishMessage::build().payload(env.to_vec().into()).message_id(env.id.to_string());
                match self.jetstream().send_publish(subject.to_string(), msg).await {
                    Ok(ack) => acks.push(ack),
                    Err(e) => {
                        let settled = settle(acks).await;
                        return Err(PublishError {
                            published: published + settled.min(i),
                            total,
                            message: e.to_string(),
                        });
                    }
                }
            }
            for ack in acks {
                match ack.await {
                    Ok(_) => published += 1,
                    Err(e) => return Err(PublishError { published, total, message: e.to_string() }),
                }
            }
        }
        metrics::counter!("kubegate_bus_published_total").increment(total as u64);
        Ok(())
    }
}

/// Publishes whose acknowledgements may be outstanding at once in [`Bus::publish_events`]; well
/// under the context's `max_ack_inflight` (4096).
const ACK_WINDOW: usize = 1024;

/// Awaits acknowledgements in order; returns the length of the acknowledged prefix.
async fn settle(acks: Vec<PublishAckFuture>) -> usize {
    let mut n = 0;
    for ack in acks {
        if ack.await.is_err() {
            break;
        }
        n += 1;
    }
    n
}
