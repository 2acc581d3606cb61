//! The kubeconfig service's own state: environments and their access policies, evolved only by
//! applying its own events (`apply`), so it can be rebuilt from the log at any time.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use kubegate_events::Envelope;
use kubegate_events::environments::*;

/// One registered environment (a Kubernetes cluster kubegate reaches).
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub id: u64,
    pub name: String,
    /// The upstream API server, `https://…`, without a trailing slash.
    pub url: String,
    /// Canonical PEM of the CA the upstream's certificate must chain to.
    pub ca_pem: Option<String>,
    pub insecure_skip_tls_verify: bool,
    /// Only proxies can open it.
    pub credential: SealedCredential,
    pub credential_kind: CredentialKind,
    /// The whole current policy (empty until one is set).
    pub policy: AccessPolicySet,
    pub registered_at: DateTime<Utc>,
}

/// Aggregate streams. Every environment and access-policy event goes to one stream, the
/// catalogue: environment names are unique across all of them, and a single stream makes that
/// invariant (and id allocation) safe under optimistic concurrency when several replicas write.
/// Admin changes are rare, so one stream costs nothing. Downloads are independent facts.
pub mod streams {
    pub const ENVIRONMENTS: &str = "environments";
    pub const DOWNLOADS: &str = "downloads";
}

/// Everything the service knows from its own log.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentsState {
    pub environments: BTreeMap<u64, Environment>,
    /// Highest environment id ever used (ids are never reused).
    pub last_environment_id: u64,
    /// Version of every aggregate stream, for optimistic concurrency.
    pub versions: HashMap<String, u64>,
    /// Last log position applied.
    pub position: u64,
    /// Downloads recorded so far.
    pub downloads: u64,
}

/// The key under which names are unique: names differing only in letter case are the same
/// name, so a list never shows `prod` next to `Prod`.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

impl EnvironmentsState {
    pub fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    pub fn get(&self, id: u64) -> Option<&Environment> {
        self.environments.get(&id)
    }

    /// The environment whose name equals `name` regardless of letter case.
    pub fn named(&self, name: &str) -> Option<&Environment> {
        let key = name_key(name);
        self.environments.values().find(|e| name_key(&e.name) == key)
    }

    /// Evolves the state by one event. Never fails: events are facts.
    pub fn apply(&mut self, env: &Envelope<EnvironmentEvent>) {
        *self.versions.entry(env.stream.clone()).or_insert(0) += 1;
        if env.position > self.position {
            self.position = env.position;
        }
        match &env.event {
            EnvironmentEvent::EnvironmentRegistered(e) => {
                self.last_environment_id = self.last_environment_id.max(e.environment_id);
                self.environments.insert(
                    e.environment_id,
                    Environment {
                        id: e.environment_id,
                        name: e.name.clone(),
                        url: e.url.clone(),
                        ca_pem: e.ca_pem.clone(),
                        insecure_skip_tls_verify: e.insecure_skip_tls_verify,
                        credential: e.credential.clone(),
                        credential_kind: e.credential_kind,
                        policy: AccessPolicySet {
                            environment_id: e.environment_id,
                            users: Vec::new(),
                            teams: Vec::new(),
                        },
                        registered_at: env.occurred_at,
                    },
                );
            }
            EnvironmentEvent::EnvironmentRenamed(e) => {
                if let Some(x) = self.environments.get_mut(&e.environment_id) {
                    x.name = e.name.clone();
                }
            }
            EnvironmentEvent::EnvironmentEndpointChanged(e) => {
                if let Some(x) = self.environments.get_mut(&e.environment_id) {
                    x.url = e.url.clone();
                    x.ca_pem = e.ca_pem.clone();
                    x.insecure_skip_tls_verify = e.insecure_skip_tls_verify;
                }
            }
            EnvironmentEvent::EnvironmentCredentialRotated(e) => {
                if let Some(x) = self.environments.get_mut(&e.environment_id) {
                    x.credential = e.credential.clone();
                    x.credential_kind = e.credential_kind;
                }
            }
            EnvironmentEvent::EnvironmentRemoved(e) => {
                self.environments.remove(&e.environment_id);
            }
            EnvironmentEvent::AccessPolicySet(e) => {
                if let Some(x) = self.environments.get_mut(&e.environment_id) {
                    x.policy = e.clone();
                }
            }
            EnvironmentEvent::KubeconfigDownloaded(_) => self.downloads += 1,
        }
    }
}
