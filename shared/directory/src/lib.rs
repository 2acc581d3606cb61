//! What a proxy replica knows of identities: users, teams, signing keys, retired keys and
//! revoked tokens, folded from `KUBEGATE_IDENTITY`. Request handlers read it without waiting
//! (concurrent maps for what changes often, an atomically swapped key set); one task writes.
//!
//! The same fold runs in the identity service, which writes [`snapshot`]s of it so a replica
//! joining a long log loads the state and replays only the tail (see [`writer`]). The kubeconfig
//! service does the same for `KUBEGATE_ENVIRONMENTS` with the [`environments`] log.

pub mod environments;
pub mod snapshot;
pub mod writer;

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use kubegate_events::identity::{GlobalRole, IdentityEvent};
use kubegate_events::{DecodeError, DomainEvent, RawEnvelope};
use kubegate_token::{KeySet, TokenError, VerifiedToken};
use serde::{Deserialize, Serialize};

/// What the proxy knows of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub username: String,
    pub admin: bool,
    pub disabled: bool,
    /// Tokens with `iat` below this (seconds) are revoked; 0 for none.
    pub valid_after: i64,
    pub teams: BTreeSet<u64>,
}

/// Identity event types [`Directory::apply`] does nothing with: a follower may skip decoding
/// them (most of a long identity log is issued tokens).
pub const IGNORED_EVENTS: &[&str] = &[
    "KubeconfigTokenIssued",
    "UserPasswordChanged",
    "KubeconfigExpiryChanged",
    "SignInSucceeded",
    "SignInFailed",
];

#[derive(Default)]
pub struct Directory {
    keys: ArcSwap<KeySet>,
    retired_kids: DashMap<String, ()>,
    /// Revoked token id → when the token expires (seconds); kept until then.
    revoked: DashMap<String, i64>,
    users: DashMap<u64, Arc<UserEntry>>,
    teams: DashMap<u64, (String, BTreeSet<u64>)>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("keys", &self.keys.load().len())
            .field("users", &self.users.len())
            .field("teams", &self.teams.len())
            .field("revoked", &self.revoked.len())
            .finish()
    }
}

impl Directory {
    pub fn new() -> Directory {
        Directory { keys: ArcSwap::from_pointee(KeySet::new()), ..Directory::default() }
    }

    /// The signing keys tokens may be verified with.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// [`KeySet::verify_signature`] with the current keys.
    pub fn verify_signature(&self, token: &str) -> Result<Arc<VerifiedToken>, TokenError> {
        self.keys.load().verify_signature(token)
    }

    pub fn is_retired(&self, kid: &str) -> bool {
        !self.retired_kids.is_empty() && self.retired_kids.contains_key(kid)
    }

    pub fn is_revoked(&self, token_id: &str) -> bool {
        self.revoked.contains_key(token_id)
    }

    pub fn user(&self, id: u64) -> Option<Arc<UserEntry>> {
        self.users.get(&id).map(|u| u.value().clone())
    }

    pub fn team_name(&self, id: u64) -> Option<String> {
        self.teams.get(&id).map(|t| t.0.clone())
    }

    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// Forgets everything (the stream was reset and is replayed again).
    pub fn clear(&self) {
        self.keys.store(Arc::new(KeySet::new()));
        self.retired_kids.clear();
        self.revoked.clear();
        self.users.clear();
        self.teams.clear();
    }

    /// Forgets revocations of tokens that have expired by `now` (they could not be used anyway).
    pub fn prune_revocations(&self, now: i64) {
        self.revoked.retain(|_, exp| *exp > now);
    }

    /// Applies one envelope of the identity stream and returns its event, or `None` for a type
    /// the directory ignores (skipped without decoding). An envelope that does not decode
    /// changes nothing.
    pub fn apply_raw(&self, raw: &RawEnvelope, now: i64) -> Result<Option<IdentityEvent>, DecodeError> {
        if IGNORED_EVENTS.contains(&raw.event_type.as_str()) {
            return Ok(None);
        }
        let event = IdentityEvent::decode_payload(&raw.event_type, raw.version, &raw.payload)?;
        self.apply(&event, now);
        Ok(Some(event))
    }

    /// Applies one identity event; `now` (seconds) decides whether a revocation is still worth
    /// keeping. Closing the streams an event ends is the caller's business.
    pub fn apply(&self, event: &IdentityEvent, now: i64) {
        match event {
            IdentityEvent::UserCreated(e) => {
                let teams = self
                    .teams
                    .iter()
                    .filter(|t| t.value().1.contains(&e.user_id))
                    .map(|t| *t.key())
                    .collect();
                self.users.insert(
                    e.user_id,
                    Arc::new(UserEntry {
                        username: e.username.clone(),
                        admin: e.role == GlobalRole::Admin,
                        disabled: false,
                        valid_after: 0,
                        teams,
                    }),
                );
            }
            IdentityEvent::UserRoleChanged(e) => {
                self.update_user(e.user_id, |u| u.admin = e.role == GlobalRole::Admin);
            }
            IdentityEvent::UserDisabled(e) => self.update_user(e.user_id, |u| u.disabled = true),
            IdentityEvent::UserEnabled(e) => self.update_user(e.user_id, |u| u.disabled = false),
            IdentityEvent::UserDeleted(e) => {
                self.users.remove(&e.user_id);
                for mut t in self.teams.iter_mut() {
                    t.value_mut().1.remove(&e.user_id);
                }
            }
            IdentityEvent::TeamCreated(e) => {
                self.teams.insert(e.team_id, (e.name.clone(), BTreeSet::new()));
            }
            IdentityEvent::TeamRenamed(e) => {
                if let Some(mut t) = self.teams.get_mut(&e.team_id) {
                    t.0 = e.name.clone();
                }
            }
            IdentityEvent::TeamDeleted(e) => {
                self.teams.remove(&e.team_id);
                for mut u in self.users.iter_mut() {
                    if u.teams.contains(&e.team_id) {
                        Arc::make_mut(u.value_mut()).teams.remove(&e.team_id);
                    }
                }
            }
            IdentityEvent::TeamMemberAdded(e) => {
                if let Some(mut t) = self.teams.get_mut(&e.team_id) {
                    t.1.insert(e.user_id);
                }
                self.update_user(e.user_id, |u| {
                    u.teams.insert(e.team_id);
                });
            }
            IdentityEvent::TeamMemberRemoved(e) => {
                if let Some(mut t) = self.teams.get_mut(&e.team_id) {
                    t.1.remove(&e.user_id);
                }
                self.update_user(e.user_id, |u| {
                    u.teams.remove(&e.team_id);
                });
            }
            IdentityEvent::SigningKeyAdded(e) => {
                let mut keys = (**self.keys.load()).clone();
                match keys.insert(&e.kid, &e.public_key) {
                    Ok(()) => self.keys.store(Arc::new(keys)),
                    Err(err) => {
                        tracing::error!(kid = %e.kid, error = %err, "signing key in the stream is unusable")
                    }
                }
            }
            IdentityEvent::SigningKeyRetired(e) => {
                let mut keys = (**self.keys.load()).clone();
                keys.remove(&e.kid);
                self.keys.store(Arc::new(keys));
                self.retired_kids.insert(e.kid.clone(), ());
            }
            IdentityEvent::KubeconfigTokenRevoked(e) => {
                let expires = e.expires_at.map(|t| t.timestamp()).unwrap_or(i64::MAX);
                if expires > now {
                    self.revoked.insert(e.token_id.clone(), expires);
                }
            }
            IdentityEvent::UserTokensRevoked(e) => {
                let cutoff = e.valid_after.timestamp();
                self.update_user(e.user_id, |u| u.valid_after = u.valid_after.max(cutoff));
            }
            IdentityEvent::UserPasswordChanged(_)
            | IdentityEvent::KubeconfigExpiryChanged(_)
            | IdentityEvent::KubeconfigTokenIssued(_)
            | IdentityEvent::SignInSucceeded(_)
            | IdentityEvent::SignInFailed(_) => {}
        }
    }

    fn update_user(&self, id: u64, f: impl FnOnce(&mut UserEntry)) {
        if let Some(mut u) = self.users.get_mut(&id) {
            f(Arc::make_mut(u.value_mut()));
        }
    }

    /// Everything, in a plain form (sorted, so two equal directories give equal states).
    pub fn state(&self) -> State {
        let keys = self
            .keys
            .load()
            .public_keys()
            .into_iter()
            .map(|(kid, public_key)| PublicKey { kid, public_key })
            .collect();
        let mut retired_kids: Vec<String> = self.retired_kids.iter().map(|k| k.key().clone()).collect();
        retired_kids.sort();
        let mut revoked: Vec<Revoked> =
            self.revoked.iter().map(|r| Revoked { token_id: r.key().clone(), expires: *r.value() }).collect();
        revoked.sort_by(|a, b| a.token_id.cmp(&b.token_id));
        let mut users: Vec<UserState> = self
            .users
            .iter()
            .map(|u| UserState {
                id: *u.key(),
                username: u.username.clone(),
                admin: u.admin,
                disabled: u.disabled,
                valid_after: u.valid_after,
                teams: u.teams.iter().copied().collect(),
            })
            .collect();
        users.sort_by_key(|u| u.id);
        let mut teams: Vec<TeamState> = self
            .teams
            .iter()
            .map(|t| TeamState { id: *t.key(), name: t.0.clone(), members: t.1.iter().copied().collect() })
            .collect();
        teams.sort_by_key(|t| t.id);
        State { keys, retired_kids, revoked, users, teams }
    }

    /// Replaces everything with `state`. A key that cannot be used refuses the whole state (and
    /// changes nothing): a snapshot holds only keys its writer could use.
    pub fn restore(&self, state: State) -> Result<(), String> {
        let mut keys = KeySet::new();
        for k in &state.keys {
            keys.insert(&k.kid, &k.public_key).map_err(|e| format!("signing key {}: {e}", k.kid))?;
        }
        self.clear();
        self.keys.store(Arc::new(keys));
        for kid in state.retired_kids {
            self.retired_kids.insert(kid, ());
        }
        for r in state.revoked {
            self.revoked.insert(r.token_id, r.expires);
        }
        for u in state.users {
            self.users.insert(
                u.id,
                Arc::new(UserEntry {
                    username: u.username,
                    admin: u.admin,
                    disabled: u.disabled,
                    valid_after: u.valid_after,
                    teams: u.teams.into_iter().collect(),
                }),
            );
        }
        for t in state.teams {
            self.teams.insert(t.id, (t.name, t.members.into_iter().collect()));
        }
        Ok(())
    }

    /// All users, by id (for summaries).
    pub fn users(&self) -> Vec<(u64, Arc<UserEntry>)> {
        let mut users: Vec<_> = self.users.iter().map(|u| (*u.key(), u.value().clone())).collect();
        users.sort_by_key(|u| u.0);
        users
    }

    /// Revoked token ids still in force, sorted (for summaries).
    pub fn revoked_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.revoked.iter().map(|r| r.key().clone()).collect();
        ids.sort();
        ids
    }
}

/// A [`Directory`] in plain form: what a snapshot holds. No secrets: public keys, names, ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub keys: Vec<PublicKey>,
    pub retired_kids: Vec<String>,
    pub revoked: Vec<Revoked>,
    pub users: Vec<UserState>,
    pub teams: Vec<TeamState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKey {
    pub kid: String,
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    pub token_id: String,
    pub expires: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserState {
    pub id: u64,
    pub username: String,
    pub admin: bool,
    pub disabled: bool,
    pub valid_after: i64,
    pub teams: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamState {
    pub id: u64,
    pub name: String,
    pub members: Vec<u64>,
}

#[cfg(test)]
mod tests;
