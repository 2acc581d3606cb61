//! kubegate's NATS JetStream adapter: one connection handle per process, the stream definitions,
//! publishing with de-duplication ids, ordered feeds with gap and duplicate handling, and typed
//! request/reply.

pub mod config;
pub mod connection;
pub mod feed;
pub mod publish;
pub mod rpc;
pub mod sequencer;
pub mod streams;

pub use config::{NatsConfig, service_inbox_prefix, service_rpc_reply_prefix};
pub use connection::{Bus, BusError, ConnectionState};
pub use feed::{Feed, FeedError, FeedItem};
pub use publish::{Encoded, Outgoing, PublishError};
pub use rpc::{RpcError, RpcFailure};
pub use sequencer::{Offer, Sequencer};
pub use streams::StreamDef;
