//! Audit records packed into bus messages. Storing a message costs the stream the same whether it
//! holds one record or hundreds, and a proxy writes a record per request, so the publisher packs
//! the records it has in hand — consecutive ones of one subject, so a reader can still select by
//! subject — up to [`PACK_RECORDS`] records or [`PACK_BYTES`] bytes a message. A message is one
//! record or a JSON array of them ([`RawEnvelope::all_from_slice`] reads both); its
//! de-duplication id is its first record's id and its count, so a message published again from
//! the spool, exactly as it was packed, is dropped by the stream if the first one arrived.

use bytes::Bytes;
use kubegate_bus::{Encoded, Outgoing};
use kubegate_events::audit::AuditEvent;
use kubegate_events::{DecodeError, DomainEvent, Envelope, RawEnvelope};

/// Records one message holds at most.
pub(super) const PACK_RECORDS: usize = 256;
/// Bytes one message holds at most (a record is a few hundred; NATS allows 1 MiB by default).
pub(super) const PACK_BYTES: usize = 256 * 1024;

/// One message: ready to publish, or to spool as one line (its payload).
#[derive(Debug, Clone)]
pub(super) struct Packed {
    pub message: Outgoing<'static>,
    pub records: usize,
}

/// One record as it is packed: its JSON, written once ([`Envelope::encode`]).
pub(super) fn encode(record: &Envelope<AuditEvent>) -> Result<Encoded<'static>, serde_json::Error> {
    Ok(Encoded { subject: record.event.subject(), id: record.id, json: record.encode()? })
}

/// Packs `records` (in order) into messages.
pub(super) fn pack(records: &[Encoded<'static>]) -> Vec<Packed> {
    Outgoing::pack_runs(records, PACK_RECORDS, PACK_BYTES)
        .into_iter()
        .map(|(message, records)| Packed { message, records })
        .collect()
}

impl Packed {
    /// A message read back from the spool, as it was packed.
    pub fn read(line: &[u8]) -> Result<Packed, DecodeError> {
        let records = RawEnvelope::all_from_slice(line)?;
        // `all_from_slice` gives at least one.
        let (subject, id) =
            records.first().map(|f| (subject(f), f.pack_id(records.len()))).unwrap_or_default();
        let message = Outgoing { subject, id, payload: Bytes::copy_from_slice(line) };
        Ok(Packed { message, records: records.len() })
    }

    /// The records it holds (for tests and for whoever reads a spool by hand).
    #[cfg(test)]
    pub fn envelopes(&self) -> Vec<RawEnvelope> {
        RawEnvelope::all_from_slice(&self.message.payload).unwrap_or_default()
    }
}

/// Records in the first `messages` of `packed`.
pub(super) fn records_in(packed: &[Packed]) -> usize {
    packed.iter().map(|p| p.records).sum()
}

fn subject(raw: &RawEnvelope) -> &'static str {
    kubegate_events::envelope::subject_of::<AuditEvent>(&raw.event_type)
        .unwrap_or(AuditEvent::TYPES[0].subject)
}

#[cfg(test)]
pub(super) mod tests;
