//! The envelope every event travels in (in the event store, on the bus, in audit replays) and the
//! trait the typed event enums implement.

use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Largest envelope a consumer will try to decode; anything bigger is refused as malformed.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// One event type: its name (past tense), its current version and its NATS subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    pub name: &'static str,
    pub version: u16,
    pub subject: &'static str,
}

/// A typed event enum of one producing service.
pub trait DomainEvent: Sized + Clone + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// `identity`, `environments` or `audit`: the second part of every subject.
    const SERVICE: &'static str;
    /// The JetStream stream that carries these events.
    const STREAM: &'static str;
    /// Every event type of the enum, in declaration order.
    const TYPES: &'static [EventType];

    fn event_type(&self) -> &'static str;
    fn version(&self) -> u16;
    fn subject(&self) -> &'static str;
    /// Serializes the payload alone (the variant's struct, untagged).
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
    fn payload_json(&self) -> Result<Box<RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(&Payload(self))
    }
    fn decode_payload(event_type: &str, version: u16, payload: &RawValue) -> Result<Self, DecodeError>;
    /// JSON Schema of the payload of `event_type` (for `schemas/events/`).
    fn schema_for_type(event_type: &str) -> Option<schemars::Schema>;

    /// The subject filter that matches every event of this service (`kubegate.<service>.>`).
    fn subject_filter() -> String {
        format!("kubegate.{}.>", Self::SERVICE)
    }
}

/// Why bytes could not become a typed event. Never panics, whatever the input.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event envelope is larger than {MAX_ENVELOPE_BYTES} bytes")]
    TooLarge,
    #[error("event envelope is not valid: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{event_type} version {version} is not supported (this build knows version {supported})")]
    UnsupportedVersion { event_type: &'static str, version: u16, supported: u16 },
    #[error("{event_type} payload is not valid: {source}")]
    Payload {
        event_type: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Actor {
    /// A signed-in user.
    User { id: u64, name: String },
    /// kubegate itself (first start, key rotation, a service acting on its own).
    System { service: String },
    /// Someone not signed in (a failed sign-in), known only by address.
    Anonymous {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
}

impl Actor {
    pub fn system(service: &str) -> Actor {
        Actor::System { service: service.to_string() }
    }

    /// The user's name, or a stand-in for other actors.
    pub fn display_name(&self) -> String {
        match self {
            Actor::User { name, .. } => name.clone(),
            Actor::System { service } => format!("system:{service}"),
            Actor::Anonymous { address } => {
                format!("anonymous@{}", address.as_deref().unwrap_or("unknown"))
            }
        }
    }
}

/// A secret sealed by its owner (e.g. identity's master key); only its owner can open it. Kept in
/// events so the log stays the whole truth, never readable elsewhere. `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SealedSecret(pub String);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.0.len())
    }
}

/// An event as stored and as published: the payload stays raw JSON until someone asks for the
/// typed form, so consumers can skip what they do not care about cheaply. `EnvelopeJson` (what
/// [`Envelope::encode`] writes) has the same fields in the same order; the schemas test checks
/// that both write the same bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawEnvelope {
    /// UUIDv7; also the bus de-duplication id.
    pub id: Uuid,
    /// The aggregate stream, e.g. `user-3`.
    pub stream: String,
    /// Version of `stream` after this event (1 for the first event of a stream).
    pub sequence: u64,
    /// Gap-free position in the producing service's whole log (1, 2, 3, …); for audit records,
    /// the replica's own counter.
    pub position: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u16,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub correlation_id: String,
    pub payload: Box<RawValue>,
}

impl RawEnvelope {
    /// Parses bytes (a bus message, a stored row) into a raw envelope.
    pub fn from_slice(bytes: &[u8]) -> Result<RawEnvelope, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge);
        }
        serde_json::from_slice(bytes).map_err(DecodeError::Envelope)
    }

    pub fn to_vec(&self) -> Vec<u8> {
        // Serializing a struct of strings, numbers and raw JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Every envelope of one bus message (at least one): a message is one envelope (a JSON
    /// object) or, where a producer packs several (the proxies' audit records), a JSON array of
    /// them in order.
    pub fn all_from_slice(bytes: &[u8]) -> Result<Vec<RawEnvelope>, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge);
        }
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => {
                let all: Vec<RawEnvelope> = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
                if all.is_empty() {
                    return Err(DecodeError::Envelope(serde::de::Error::custom(
                        "a message without an envelope",
                    )));
                }
                Ok(all)
            }
            _ => Ok(vec![RawEnvelope::from_slice(bytes)?]),
        }
    }

    /// One bus message holding envelopes already encoded ([`RawEnvelope::to_vec`]), read back
    /// by [`RawEnvelope::all_from_slice`]: a single envelope as itself, several as a JSON array.
    /// One line: encoded envelopes hold no newline, and none is added.
    pub fn pack(encoded: &[&[u8]]) -> Vec<u8> {
        if let [one] = encoded {
            return one.to_vec();
        }
        let mut out = Vec::with_capacity(encoded.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
        out.push(b'[');
        for (i, e) in encoded.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(e);
        }
        out.push(b']');
        out
    }

    /// The bus de-duplication id of a message packing `count` envelopes from `self` on (see
    /// [`pack_id`]).
    pub fn pack_id(&self, count: usize) -> String {
        pack_id(&self.id, count)
    }

    /// The typed event, checking type and version.
    pub fn decode<E: DomainEvent>(&self) -> Result<Envelope<E>, DecodeError> {
        let event = E::decode_payload(&self.event_type, self.version, &self.payload)?;
        Ok(Envelope {
            id: self.id,
            stream: self.stream.clone(),
            sequence: self.sequence,
            position: self.position,
            occurred_at: self.occurred_at,
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            event,
        })
    }
}

/// The bus de-duplication id of a message packing `count` envelopes, the first with id `first`:
/// the event id alone for one (as every other producer), the first id and the count for more.
pub fn pack_id(first: &Uuid, count: usize) -> String {
    if count <= 1 { first.to_string() } else { format!("{first}+{count}") }
}

/// An event's payload as `Serialize` (what [`DomainEvent::serialize_payload`] writes).
struct Payload<'a, E>(&'a E);

impl<E: DomainEvent> Serialize for Payload<'_, E> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}

/// [`RawEnvelope`]'s fields, borrowed from an [`Envelope`], with the payload still typed: the
/// same JSON as [`Envelope::to_raw`] then [`RawEnvelope::to_vec`], written in one pass.
#[derive(Serialize)]
#[serde(bound = "")]
struct EnvelopeJson<'a, E: DomainEvent> {
    id: &'a Uuid,
    stream: &'a str,
    sequence: u64,
    position: u64,
    #[serde(rename = "type")]
    event_type: &'static str,
    version: u16,
    #[serde(serialize_with = "rfc3339")]
    occurred_at: &'a DateTime<Utc>,
    actor: &'a Actor,
    correlation_id: &'a str,
    payload: Payload<'a, E>,
}

/// A time as chrono's `Serialize` writes it (RFC 3339, `Z`, as many fraction digits as needed),
/// handed to the serializer as one string: chrono's own writes it a character at a time, and
/// serde_json escapes each piece separately.
fn rfc3339<S: serde::Serializer>(at: &&DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// A typed event with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    pub id: Uuid,
    pub stream: String,
    pub sequence: u64,
    pub position: u64,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub correlation_id: String,
    pub event: E,
}

impl<E: DomainEvent> Envelope<E> {
    /// A new event not yet stored: `sequence` and `position` are set by the store on append.
    pub fn new(stream: impl Into<String>, actor: Actor, correlation_id: impl Into<String>, event: E) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            stream: stream.into(),
            sequence: 0,
            position: 0,
            occurred_at: Utc::now(),
            actor,
            correlation_id: correlation_id.into(),
            event,
        }
    }

    pub fn to_raw(&self) -> Result<RawEnvelope, serde_json::Error> {
        Ok(RawEnvelope {
            id: self.id,
            stream: self.stream.clone(),
            sequence: self.sequence,
            position: self.position,
            event_type: self.event.event_type().to_string(),
            version: self.event.version(),
            occurred_at: self.occurred_at,
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            payload: self.event.payload_json()?,
        })
    }

    /// The envelope as it is stored and published: the bytes of [`Envelope::to_raw`] then
    /// [`RawEnvelope::to_vec`], without encoding the payload on its own first.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(512);
        serde_json::to_writer(
            &mut out,
            &EnvelopeJson {
                id: &self.id,
                stream: &self.stream,
                sequence: self.sequence,
                position: self.position,
                event_type: self.event.event_type(),
                version: self.event.version(),
                occurred_at: &self.occurred_at,
                actor: &self.actor,
                correlation_id: &self.correlation_id,
                payload: Payload(&self.event),
            },
        )?;
        Ok(out)
    }
}

/// The subject an event of type `event_type` is published on, if `E` knows the type.
pub fn subject_of<E: DomainEvent>(event_type: &str) -> Option<&'static str> {
    E::TYPES.iter().find(|t| t.name == event_type).map(|t| t.subject)
}
