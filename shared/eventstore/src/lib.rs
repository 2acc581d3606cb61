//! kubegate's event store: each service's append-only PostgreSQL log (the source of truth) and the
//! transactional outbox relay that publishes every committed event to JetStream exactly once.

pub mod engine;
mod migrations;
pub mod relay;
pub mod store;

pub use relay::{OutboxRelay, RelayHandle};
pub use store::{EventStore, Expected, StoreError, StreamAppend};
