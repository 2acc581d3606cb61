//! What replicas fold from `KUBEGATE_ENVIRONMENTS`, in the form a snapshot holds: the log's
//! events but the downloads, in position order, without the events a later one supersedes.
//! Those are few (environments, their endpoints, credentials and policies change by an admin's
//! hand), while the downloads are most of a long log and nothing a replica keeps. A replica
//! restores a snapshot by applying these events as it would have from the stream, so it knows
//! what a whole replay gives.
//!
//! Every environment event but the download replaces what it sets, whole: a registration the
//! whole environment (its policy starts empty), a rename its name, an endpoint change its URL,
//! CA and verification, a credential rotation its credential, a policy its policy; a removal
//! forgets the environment. So the log keeps, per environment, its last registration and, after
//! it, the last event of each other kind; a removed environment leaves nothing, and an event for
//! an environment the log does not hold (a replica ignores it) is not kept. An event the log
//! cannot decode (a later version's) is kept as it is and supersedes nothing.

use kubegate_events::environments::EnvironmentEvent;
use kubegate_events::{DomainEvent, RawEnvelope};
use serde::{Deserialize, Serialize};

use crate::snapshot::Folded;

/// The environment event type replicas keep nothing of (one per kubeconfig download).
pub const DOWNLOADED: &str = "KubeconfigDownloaded";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentLog {
    /// The events a replica needs, in position order; sealed credentials stay sealed.
    pub events: Vec<RawEnvelope>,
    /// What each event sets, by index into `events` (rebuilt when the two disagree in length).
    #[serde(skip)]
    sets: Vec<Option<Sets>>,
}

/// The part of one environment an event replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sets {
    environment_id: u64,
    part: Part,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The whole environment (a registration).
    Whole,
    Name,
    Endpoint,
    Credential,
    Policy,
}

/// What one event does to the environments.
enum Effect {
    /// Replaces a part of one environment.
    Sets(Sets),
    /// Forgets an environment.
    Removes(u64),
    /// An event this log does not know (kept as it is).
    Unknown,
}

fn effect(event: &RawEnvelope) -> Effect {
    let sets = |environment_id, part| Effect::Sets(Sets { environment_id, part });
    match event.decode::<EnvironmentEvent>().map(|e| e.event) {
        Ok(EnvironmentEvent::EnvironmentRegistered(e)) => sets(e.environment_id, Part::Whole),
        Ok(EnvironmentEvent::EnvironmentRenamed(e)) => sets(e.environment_id, Part::Name),
        Ok(EnvironmentEvent::EnvironmentEndpointChanged(e)) => sets(e.environment_id, Part::Endpoint),
        Ok(EnvironmentEvent::EnvironmentCredentialRotated(e)) => sets(e.environment_id, Part::Credential),
        Ok(EnvironmentEvent::AccessPolicySet(e)) => sets(e.environment_id, Part::Policy),
        Ok(EnvironmentEvent::EnvironmentRemoved(e)) => Effect::Removes(e.environment_id),
        Ok(EnvironmentEvent::KubeconfigDownloaded(_)) | Err(_) => Effect::Unknown,
    }
}

impl Effect {
    fn sets(&self) -> Option<Sets> {
        match self {
            Effect::Sets(sets) => Some(*sets),
            Effect::Removes(_) | Effect::Unknown => None,
        }
    }
}

/// Whether a replica keeps anything of `event`: every environment event but a download.
pub fn kept(event: &RawEnvelope) -> bool {
    event.event_type != DOWNLOADED
}

impl EnvironmentLog {
    /// The log of `events` applied in order.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a RawEnvelope>) -> EnvironmentLog {
        let mut log = EnvironmentLog::default();
        for event in events {
            log.apply(event);
        }
        log
    }

    /// Applies the next event of the stream: a download is not kept, and the events it
    /// supersedes are dropped.
    pub fn apply(&mut self, event: &RawEnvelope) {
        if !kept(event) {
            return;
        }
        if self.sets.len() != self.events.len() {
            self.sets = self.events.iter().map(|e| effect(e).sets()).collect();
        }
        let sets = match effect(event) {
            Effect::Unknown => None,
            Effect::Removes(id) => {
                self.drop_where(|s| s.environment_id == id);
                return;
            }
            Effect::Sets(sets) if sets.part == Part::Whole => {
                self.drop_where(|s| s.environment_id == sets.environment_id);
                Some(sets)
            }
            Effect::Sets(sets) => {
                let whole = Sets { environment_id: sets.environment_id, part: Part::Whole };
                if !self.sets.contains(&Some(whole)) {
                    // Not registered (or removed since): a replica ignores it.
                    return;
                }
                self.drop_where(|s| *s == sets);
                Some(sets)
            }
        };
        self.events.push(event.clone());
        self.sets.push(sets);
    }

    fn drop_where(&mut self, superseded: impl Fn(&Sets) -> bool) {
        let mut i = 0;
        self.events.retain(|_| {
            let keep = !self.sets[i].as_ref().is_some_and(&superseded);
            i += 1;
            keep
        });
        self.sets.retain(|s| !s.as_ref().is_some_and(&superseded));
    }
}

impl Folded for EnvironmentLog {
    const SOURCE: &'static str = EnvironmentEvent::STREAM;
    const NAME: &'static str = "environments";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kubegate_events::environments::*;
    use kubegate_events::{Actor, Envelope, RawEnvelope};

    use super::EnvironmentLog;
    use crate::writer::Fold;

    fn registered(id: u64, name: &str) -> EnvironmentEvent {
        EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
            environment_id: id,
            name: name.into(),
            url: "https://127.0.0.1:6443".into(),
            ca_pem: None,
            insecure_skip_tls_verify: false,
            credential: SealedCredential("sealed".into()),
            credential_kind: CredentialKind::Token,
        })
    }

    fn renamed(id: u64, name: &str) -> EnvironmentEvent {
        EnvironmentEvent::EnvironmentRenamed(EnvironmentRenamed { environment_id: id, name: name.into() })
    }

    fn policy(id: u64, user: u64) -> EnvironmentEvent {
        EnvironmentEvent::AccessPolicySet(AccessPolicySet {
            environment_id: id,
            users: vec![PolicyEntry {
                id: user,
                role: kubegate_events::access::EnvironmentRole::ReadOnly,
                namespaces: vec![],
            }],
            teams: vec![],
        })
    }

    fn raw(events: Vec<EnvironmentEvent>) -> Vec<RawEnvelope> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let mut env = Envelope::new(format!("s-{i}"), Actor::system("kubeconfig"), "test", e);
                env.position = i as u64 + 1;
                env.to_raw().unwrap()
            })
            .collect()
    }

    fn at(position: u64, event: EnvironmentEvent) -> RawEnvelope {
        let mut raw = raw(vec![event]).remove(0);
        raw.position = position;
        raw
    }

    fn positions(log: &EnvironmentLog) -> Vec<u64> {
        log.events.iter().map(|e| e.position).collect()
    }

    #[test]
    fn the_log_keeps_the_last_event_of_each_kind_after_the_last_registration() {
        // Position by position: what stays in the log, or what drops it.
        let events = raw(vec![
            // 1: stays.
            registered(1, "a"),
            // 2: the removal at 12.
            registered(2, "b"),
            // 3: the rename at 4.
            renamed(1, "a2"),
            // 4: stays.
            renamed(1, "a3"),
            // 5: the policy at 10.
            policy(1, 7),
            // 6: stays.
            EnvironmentEvent::EnvironmentEndpointChanged(EnvironmentEndpointChanged {
                environment_id: 1,
                url: "https://127.0.0.2:6443".into(),
                ca_pem: None,
                insecure_skip_tls_verify: true,
            }),
            // 7: a download.
            EnvironmentEvent::KubeconfigDownloaded(KubeconfigDownloaded {
                user_id: 7,
                username: "alice".into(),
                environment_ids: vec![1],
                token_id: "t".into(),
                expires_at: None,
                client_address: "127.0.0.1".into(),
            }),
            // 8: stays.
            EnvironmentEvent::EnvironmentCredentialRotated(EnvironmentCredentialRotated {
                environment_id: 1,
                credential: SealedCredential("again".into()),
                credential_kind: CredentialKind::Token,
            }),
            // 9: the removal at 12.
            policy(2, 7),
            // 10: stays.
            policy(1, 8),
            // 11: environment 3 was never registered.
            policy(3, 7),
            // 12: a removal is not kept.
            EnvironmentEvent::EnvironmentRemoved(EnvironmentRemoved { environment_id: 2 }),
            // 13: stays.
            registered(2, "b again"),
            // 14: environment 4 was never registered.
            renamed(4, "nowhere"),
        ]);
        let log = EnvironmentLog::of(&events);
        assert_eq!(positions(&log), vec![1, 4, 6, 8, 10, 13]);

        // Removing an environment leaves nothing of it.
        let mut removed = log.clone();
        removed
            .apply(&at(15, EnvironmentEvent::EnvironmentRemoved(EnvironmentRemoved { environment_id: 1 })));
        assert_eq!(positions(&removed), vec![13]);

        // A snapshot's log read back (without what each event sets) is compacted on apply.
        let mut read_back: EnvironmentLog =
            serde_json::from_slice(&serde_json::to_vec(&log).unwrap()).unwrap();
        read_back.apply(&at(15, renamed(1, "a4")));
        assert_eq!(positions(&read_back), vec![1, 6, 8, 10, 13, 15], "the rename at 4 gave way");
    }

    #[test]
    fn a_snapshot_written_whole_is_compacted_when_the_writer_restores_it() {
        let events =
            raw(vec![registered(1, "a"), renamed(1, "b"), renamed(1, "c"), policy(1, 7), policy(1, 8)]);
        // A log as written before superseded events were dropped: every event but the downloads.
        let whole: EnvironmentLog = serde_json::from_value(serde_json::json!({ "events": events })).unwrap();
        assert_eq!(positions(&whole), vec![1, 2, 3, 4, 5]);
        let mut restored = EnvironmentLog::default();
        Fold::restore(&mut restored, whole).unwrap();
        assert_eq!(positions(&restored), vec![1, 3, 5]);
    }

    #[test]
    fn an_event_the_log_cannot_read_is_kept_and_supersedes_nothing() {
        let mut events = raw(vec![registered(1, "a"), renamed(1, "b")]);
        let mut unknown = events[1].clone();
        unknown.event_type = "EnvironmentArchived".into();
        unknown.position = 3;
        events.push(unknown);
        let log = EnvironmentLog::of(&events);
        assert_eq!(positions(&log), vec![1, 2, 3]);
    }
}
