//! What replicas fold from `KUBEGATE_ENVIRONMENTS`, in the form a snapshot holds: the log's
//! events but the downloads, in position order. Those are few (environments, their endpoints,
//! credentials and policies change by an admin's hand), while the downloads are most of a long
//! log and nothing a replica keeps. A replica restores a snapshot by applying these events as
//! it would have from the stream, so it knows what a whole replay gives.

use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::{DomainEvent, RawEnvelope};
use serde::{Deserialize, Serialize};

use crate::snapshot::Folded;

/// The environment event type replicas keep nothing of (one per kubeconfig download).
pub const DOWNLOADED: &str = "KubeconfigDownloaded";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentLog {
    /// Every event but the downloads, in position order; sealed credentials stay sealed.
    pub events: Vec<RawEnvelope>,
}

/// Whether a replica keeps anything of `event`: every environment event but a download.
pub fn kept(event: &RawEnvelope) -> bool {
    event.event_type != DOWNLOADED
}

impl EnvironmentLog {
    /// Keeps `event` unless it is a download.
    pub fn apply(&mut self, event: &RawEnvelope) {
        if kept(event) {
            self.events.push(event.clone());
        }
    }
}

impl Folded for EnvironmentLog {
    const SOURCE: &'static str = EnvironmentEvent::STREAM;
    const NAME: &'static str = "environments";
}
