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

/// What a sealed credential holds. Not secret: admins see it, proxies know what to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// A bearer token.
    Token,
    /// A client certificate and its private key.
    ClientCertificate,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Token => "token",
            CredentialKind::ClientCertificate => "client-certificate",
        }
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
    pub credential_kind: CredentialKind,
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
    pub credential_kind: CredentialKind,
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

impl AccessPolicySet {
    /// What the policy gives `user_id` (directly, or through one of `team_ids`): the most
    /// permissive role wins. Global admins are environment-admin everywhere; callers check that
    /// before asking the policy.
    pub fn grant_for(&self, user_id: u64, team_ids: &[u64]) -> Option<crate::access::Grant> {
        let grants: Vec<crate::access::Grant> = self
            .users
            .iter()
            .filter(|e| e.id == user_id)
            .chain(self.teams.iter().filter(|e| team_ids.contains(&e.id)))
            .map(|e| crate::access::Grant { role: e.role, namespaces: e.namespaces.clone() })
            .collect();
        crate::access::Grant::merge(grants.iter())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_user_gets_the_most_permissive_of_direct_and_team_grants() {
        let policy = AccessPolicySet {
            environment_id: 1,
            users: vec![PolicyEntry {
                id: 7,
                role: EnvironmentRole::ReadOnly,
                namespaces: vec!["qa".into()],
            }],
            teams: vec![
                PolicyEntry { id: 2, role: EnvironmentRole::Standard, namespaces: vec!["dev".into()] },
                PolicyEntry { id: 3, role: EnvironmentRole::Operator, namespaces: vec![] },
            ],
        };
        assert_eq!(policy.grant_for(7, &[]).unwrap().role, EnvironmentRole::ReadOnly);
        let g = policy.grant_for(7, &[2]).unwrap();
        assert_eq!((g.role, g.namespaces), (EnvironmentRole::Standard, vec!["dev".to_string()]));
        assert_eq!(policy.grant_for(8, &[2, 3]).unwrap().role, EnvironmentRole::Operator);
        assert!(policy.grant_for(8, &[]).is_none());
    }
}
