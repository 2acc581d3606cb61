//! Events of the kubeconfig service (stream `KUBEGATE_ENVIRONMENTS`, subjects
//! `kubegate.environments.>`): environments, access policies and kubeconfig downloads.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::EnvironmentRole;
use crate::macros::domain_events;

/// An upstream credential sealed to the proxy fleet's public key (an armored age file). Only
/// proxies can open it; `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SealedCredential(pub String);

impl std::fmt::Debug for SealedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedCredential({} bytes)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRegistered {
    pub environment_id: u64,
    pub name: String,
    /// The upstream API server, `https://…`.
    pub url: String,
    /// PEM of the CA the upstream's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Only when the operator explicitly asked for it.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    pub credential: SealedCredential,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRenamed {
    pub environment_id: u64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentEndpointChanged {
    pub environment_id: u64,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentCredentialRotated {
    pub environment_id: u64,
    pub credential: SealedCredential,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRemoved {
    pub environment_id: u64,
}

/// One user's or team's entry in an access policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// A user id or a team id, depending on the list it is in.
    pub id: u64,
    pub role: EnvironmentRole,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicySet {
    pub environment_id: u64,
    /// The whole policy: it replaces the previous one.
    pub users: Vec<PolicyEntry>,
    pub teams: Vec<PolicyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeconfigDownloaded {
    pub user_id: u64,
    pub username: String,
    pub environment_ids: Vec<u64>,
    pub token_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub client_address: String,
}

domain_events! {
    /// Every fact the kubeconfig service records.
    pub enum EnvironmentEvent, service "environments", stream "KUBEGATE_ENVIRONMENTS" {
        EnvironmentRegistered(EnvironmentRegistered) = "environment.registered" v 1,
        EnvironmentRenamed(EnvironmentRenamed) = "environment.renamed" v 1,
        EnvironmentEndpointChanged(EnvironmentEndpointChanged) = "environment.endpoint-changed" v 1,
        EnvironmentCredentialRotated(EnvironmentCredentialRotated) = "environment.credential-rotated" v 1,
        EnvironmentRemoved(EnvironmentRemoved) = "environment.removed" v 1,
        AccessPolicySet(AccessPolicySet) = "access.policy-set" v 1,
        KubeconfigDownloaded(KubeconfigDownloaded) = "kubeconfig.downloaded" v 1,
    }
}
