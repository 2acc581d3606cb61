//! A canonical summary of the kubeconfig service's read models — its environments and access
//! policies, and its view of identity — what `kubegate replay verify` compares. The same function
//! summarizes the running service (admin listener, `GET /state`) and states rebuilt from
//! `KUBEGATE_ENVIRONMENTS` and `KUBEGATE_IDENTITY` alone.

use kubegate_identity::domain::IdentityState;
use serde_json::{Value, json};

use crate::domain::EnvironmentsState;

pub fn summary(environments: &EnvironmentsState, identity: &IdentityState) -> Value {
    let envs: Vec<Value> = environments
        .environments
        .values()
        .map(|e| {
            json!({
                "id": e.id,
                "name": e.name,
                "url": e.url,
                "caPem": e.ca_pem,
                "insecureSkipTlsVerify": e.insecure_skip_tls_verify,
                "credentialKind": e.credential_kind.as_str(),
                "credential": e.credential.0,
                "policy": {
                    "users": e.policy.users,
                    "teams": e.policy.teams,
                },
            })
        })
        .collect();
    json!({
        "position": environments.position,
        "environments": envs,
        "lastEnvironmentId": environments.last_environment_id,
        "downloads": environments.downloads,
        "identity": kubegate_identity::summary::summary(identity),
    })
}
