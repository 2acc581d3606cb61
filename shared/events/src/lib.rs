//! kubegate's domain events: the envelope every event travels in, and the typed, past-tense,
//! versioned event enums of each producing service. No I/O lives here.

pub mod access;
pub mod audit;
pub mod envelope;
pub mod environments;
pub mod identity;
mod macros;
pub mod schema;

pub use envelope::{
    Actor, DecodeError, DomainEvent, Envelope, EventType, RawEnvelope, SealedSecret, pack_id,
};
