//! A canonical summary of identity's read model: what `kubegate replay verify` compares. The same
//! function summarizes the running service's state (admin listener, `GET /state`) and a state
//! rebuilt from `KUBEGATE_IDENTITY` alone (by the command, and by the kubeconfig service's view
//! of identity), so any difference is a difference in what was applied.

use serde_json::{Value, json};

use crate::domain::IdentityState;

pub fn summary(state: &IdentityState) -> Value {
    let users: Vec<Value> = state
        .users
        .values()
        .map(|u| {
            json!({
                "id": u.id,
                "username": u.username,
                "role": u.role.as_str(),
                "disabled": u.disabled,
                "validAfter": u.valid_after,
                "teams": state.teams_of(u.id).iter().map(|t| t.id).collect::<Vec<_>>(),
            })
        })
        .collect();
    let teams: Vec<Value> =
        state.teams.values().map(|t| json!({"id": t.id, "name": t.name, "members": t.members})).collect();
    let keys: Vec<Value> = state
        .keys
        .iter()
        .map(|k| json!({"kid": k.kid, "publicKey": k.public_key, "retired": k.retired}))
        .collect();
    let mut revoked: Vec<&str> =
        state.tokens.values().filter(|t| t.revoked).map(|t| t.token_id.as_str()).collect();
    revoked.sort_unstable();
    json!({
        "position": state.position,
        "users": users,
        "teams": teams,
        "kubeconfigExpiry": state.expiry.as_str(),
        "signingKeys": keys,
        "tokensIssued": state.tokens.len(),
        "revokedTokens": revoked,
        "lastUserId": state.last_user_id,
        "lastTeamId": state.last_team_id,
    })
}
