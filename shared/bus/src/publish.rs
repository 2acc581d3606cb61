//! Publishing events to JetStream with `Nats-Msg-Id` = event id, many acknowledgements in flight.

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use kubegate_events::RawEnvelope;

use crate::connection::Bus;

#[derive(Debug, thiserror::Error)]
#[error("published {published} of {total} messages; then: {message}")]
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
        let messages: Vec<Outgoing<'_>> = events
            .iter()
            .map(|(subject, env)| Outgoing { subject, id: env.id.to_string(), payload: env.to_vec().into() })
            .collect();
        self.publish_messages(&messages).await
    }

    /// Publishes messages in order, each with its `Nats-Msg-Id`, and waits for every
    /// acknowledgement; on failure, [`PublishError::published`] counts the stored prefix.
    pub async fn publish_messages(&self, messages: &[Outgoing<'_>]) -> Result<(), PublishError> {
        let total = messages.len();
        let mut published = 0;
        // Acknowledgements are awaited a window at a time: the context allows only so many in
        // flight (`max_ack_inflight`), and a publish beyond that waits for an earlier ack to be
        // taken, so one unbounded batch would wait on itself.
        for window in messages.chunks(ACK_WINDOW) {
            let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(window.len());
            for (i, m) in window.iter().enumerate() {
                let msg = PublishMessage::build().payload(m.payload.clone()).message_id(m.id.as_str());
                match self.jetstream().send_publish(m.subject.to_string(), msg).await {
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

/// One message for [`Bus::publish_messages`].
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub subject: &'a str,
    /// `Nats-Msg-Id`: the stream drops a second message with this id inside its window.
    pub id: String,
    pub payload: bytes::Bytes,
}

/// One envelope ready to pack ([`kubegate_events::Envelope::encode`] or
/// [`RawEnvelope::to_vec`]), with the subject it goes to and its event id.
#[derive(Debug, Clone)]
pub struct Encoded<'a> {
    pub subject: &'a str,
    pub id: uuid::Uuid,
    pub json: Vec<u8>,
}

impl<'a> Outgoing<'a> {
    /// Messages packing `items` in order: runs of consecutive envelopes of one subject, each of
    /// at most `max_records` envelopes and under `max_bytes` (an envelope larger than that gets
    /// a message of its own), as [`RawEnvelope::pack`] and [`kubegate_events::pack_id`] make
    /// them; with the number of envelopes each holds.
    pub fn pack_runs(
        items: &[Encoded<'a>],
        max_records: usize,
        max_bytes: usize,
    ) -> Vec<(Outgoing<'a>, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < items.len() {
            let subject = items[start].subject;
            let mut end = start + 1;
            let mut bytes = items[start].json.len() + 2;
            while end < items.len()
                && end - start < max_records
                && bytes + items[end].json.len() < max_bytes
                && items[end].subject == subject
            {
                bytes += items[end].json.len() + 1;
                end += 1;
            }
            let parts: Vec<&[u8]> = items[start..end].iter().map(|e| e.json.as_slice()).collect();
            let id = kubegate_events::pack_id(&items[start].id, end - start);
            out.push((Outgoing { subject, id, payload: RawEnvelope::pack(&parts).into() }, end - start));
            start = end;
        }
        out
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
