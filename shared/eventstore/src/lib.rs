//! kubegate's event store: each service's append-only PostgreSQL log (the source of truth) and the
//! outbox relay that publishes every committed event to JetStream exactly once, in log order,
//! reading the log itself after the last position the stream holds.

pub mod engine;
mod migrations;
pub mod relay;
pub mod store;

pub use relay::{OutboxRelay, RelayHandle, RelayStatus};
pub use store::{EventStore, Expected, StoreError, StreamAppend};
