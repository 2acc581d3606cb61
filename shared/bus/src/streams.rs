//! The JetStream streams kubegate uses. Each producing service ensures its own stream at start.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};

/// What a stream should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDef {
    pub name: String,
    pub subjects: Vec<String>,
    /// Zero keeps messages forever.
    pub max_age: Duration,
    /// -1 for no limit.
    pub max_bytes: i64,
    pub duplicate_window: Duration,
    pub replicas: usize,
    /// Messages kept per subject; -1 for no limit.
    pub max_messages_per_subject: i64,
}

/// How long JetStream remembers a `Nats-Msg-Id` to drop a re-publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl StreamDef {
    /// A domain event log: never truncated.
    pub fn domain(name: &str, service: &str) -> StreamDef {
        StreamDef {
            name: name.to_string(),
            subjects: vec![format!("kubegate.{service}.>")],
            max_age: Duration::ZERO,
            max_bytes: -1,
            duplicate_window: DUPLICATE_WINDOW,
            replicas: 1,
            max_messages_per_subject: -1,
        }
    }

    /// `KUBEGATE_IDENTITY`: users, teams, settings, keys, tokens, sign-ins.
    pub fn identity() -> StreamDef {
        Self::domain("KUBEGATE_IDENTITY", "identity")
    }

    /// `KUBEGATE_ENVIRONMENTS`: environments, access policies, downloads.
    pub fn environments() -> StreamDef {
        Self::domain("KUBEGATE_ENVIRONMENTS", "environments")
    }

    /// `KUBEGATE_AUDIT`: the proxy's records, kept for `max_age` and at most `max_bytes`.
    pub fn audit(max_age: Duration, max_bytes: i64) -> StreamDef {
        StreamDef {
            name: "KUBEGATE_AUDIT".to_string(),
            subjects: vec!["kubegate.audit.>".to_string()],
            max_age,
            max_bytes,
            duplicate_window: DUPLICATE_WINDOW,
            replicas: 1,
            max_messages_per_subject: -1,
        }
    }

    /// `KUBEGATE_SNAPSHOTS`: state folded from a domain stream, so a joining reader loads it and
    /// replays only the tail. Each subject keeps its last two messages: a snapshot's chunks stay
    /// readable while the next one is written, and older ones go.
    pub fn snapshots() -> StreamDef {
        StreamDef {
            name: "KUBEGATE_SNAPSHOTS".to_string(),
            subjects: vec!["kubegate.snapshots.>".to_string()],
            max_age: Duration::ZERO,
            max_bytes: -1,
            duplicate_window: DUPLICATE_WINDOW,
            replicas: 1,
            max_messages_per_subject: 2,
        }
    }

    pub fn with_replicas(mut self, replicas: usize) -> StreamDef {
        self.replicas = replicas.max(1);
        self
    }

    pub(crate) fn to_config(&self) -> Config {
        Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            duplicate_window: self.duplicate_window,
            storage: StorageType::File,
            num_replicas: self.replicas,
            max_messages_per_subject: self.max_messages_per_subject,
            // Old records make room for new ones only in the audit stream (which has limits); the
            // domain logs have none, so this never drops a domain event.
            discard: DiscardPolicy::Old,
            ..Default::default()
        }
    }
}
