//! Identity's state, evolved only by applying its own events (`apply`), so it can be rebuilt from
//! the log at any time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use kubegate_events::identity::*;
use kubegate_events::{Envelope, SealedSecret};
use kubegate_token::{Claims, Scope, TokenError};

/// How long a new signing key is published before it signs (see [`IdentityState::active_key`]).
pub const KEY_WARM_UP: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub role: GlobalRole,
    pub password: SealedSecret,
    pub disabled: bool,
    /// Tokens with `iat` before this (whole seconds) are revoked.
    pub valid_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The signed-in user behind a session token, as both REST APIs (identity's and the kubeconfig
/// service's) see them: what [`IdentityState::session`] answers.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: u64,
    pub username: String,
    pub role: GlobalRole,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == GlobalRole::Admin
    }

    pub fn actor(&self) -> kubegate_events::Actor {
        kubegate_events::Actor::User { id: self.user_id, name: self.username.clone() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    pub id: u64,
    pub name: String,
    pub members: BTreeSet<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub public_key: String,
    pub private_key: SealedSecret,
    pub added_at: DateTime<Utc>,
    pub retired: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub token_id: String,
    pub user_id: u64,
    pub username: String,
    pub environment_ids: Vec<u64>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

/// Everything identity knows.
#[derive(Debug, Clone, Default)]
pub struct IdentityState {
    pub users: BTreeMap<u64, User>,
    /// Lower-cased user name → id, for case-insensitive uniqueness.
    pub usernames: HashMap<String, u64>,
    pub teams: BTreeMap<u64, Team>,
    pub expiry: KubeconfigExpiry,
    /// In the order they were added; the last one not retired signs new tokens.
    pub keys: Vec<SigningKeyRecord>,
    pub tokens: HashMap<String, TokenRecord>,
    /// Highest user and team ids ever used (ids are never reused).
    pub last_user_id: u64,
    pub last_team_id: u64,
    /// Version of every aggregate stream, for optimistic concurrency.
    pub versions: HashMap<String, u64>,
    /// Last log position applied.
    pub position: u64,
    /// Public keys of the signing keys not retired, for verifying tokens (derived from `keys`).
    pub verifying_keys: kubegate_token::KeySet,
}

/// Stream names: one per aggregate instance.
pub mod streams {
    pub fn user(id: u64) -> String {
        format!("user-{id}")
    }
    pub fn team(id: u64) -> String {
        format!("team-{id}")
    }
    pub const SETTINGS: &str = "settings";
    pub const SIGNING_KEYS: &str = "signing-keys";
    pub fn token(id: &str) -> String {
        format!("token-{id}")
    }
    pub const SIGNINS: &str = "signins";
}

impl IdentityState {
    pub fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.usernames.get(&name.to_lowercase()).and_then(|id| self.users.get(id))
    }

    pub fn team_by_name(&self, name: &str) -> Option<&Team> {
        let lower = name.to_lowercase();
        self.teams.values().find(|t| t.name.to_lowercase() == lower)
    }

    /// The key that signs new tokens at `now`: the newest key not retired that has been
    /// published for [`KEY_WARM_UP`], or, when none has been that long, the oldest key not
    /// retired (the first key, or a new key whose predecessors were all retired).
    ///
    /// A new key is published on the bus as soon as it is added, but everything that verifies
    /// tokens (proxy replicas, the kubeconfig service) learns it a little later; signing with it
    /// at once would make them refuse, for that little while, the tokens it signed.
    pub fn active_key(&self, now: DateTime<Utc>) -> Option<&SigningKeyRecord> {
        let oldest = self.keys.iter().find(|k| !k.retired)?;
        let warmed = self.keys.iter().rev().find(|k| !k.retired && k.added_at + KEY_WARM_UP <= now);
        Some(warmed.unwrap_or(oldest))
    }

    pub fn enabled_admins(&self) -> usize {
        self.users.values().filter(|u| u.role == GlobalRole::Admin && !u.disabled).count()
    }

    pub fn teams_of(&self, user_id: u64) -> Vec<&Team> {
        self.teams.values().filter(|t| t.members.contains(&user_id)).collect()
    }

    /// Evolves the state by one event. Never fails: events are facts.
    pub fn apply(&mut self, env: &Envelope<IdentityEvent>) {
        *self.versions.entry(env.stream.clone()).or_insert(0) += 1;
        if env.position > self.position {
            self.position = env.position;
        }
        let at = env.occurred_at;
        match &env.event {
            IdentityEvent::UserCreated(e) => {
                self.last_user_id = self.last_user_id.max(e.user_id);
                self.usernames.insert(e.username.to_lowercase(), e.user_id);
                self.users.insert(
                    e.user_id,
                    User {
                        id: e.user_id,
                        username: e.username.clone(),
                        role: e.role,
                        password: e.password.clone(),
                        disabled: false,
                        valid_after: None,
                        created_at: at,
                    },
                );
            }
            IdentityEvent::UserRoleChanged(e) => {
                if let Some(u) = self.users.get_mut(&e.user_id) {
                    u.role = e.role;
                }
            }
            IdentityEvent::UserPasswordChanged(e) => {
                if let Some(u) = self.users.get_mut(&e.user_id) {
                    u.password = e.password.clone();
                }
            }
            IdentityEvent::UserDisabled(e) => {
                if let Some(u) = self.users.get_mut(&e.user_id) {
                    u.disabled = true;
                }
            }
            IdentityEvent::UserEnabled(e) => {
                if let Some(u) = self.users.get_mut(&e.user_id) {
                    u.disabled = false;
                }
            }
            IdentityEvent::UserDeleted(e) => {
                if let Some(u) = self.users.remove(&e.user_id) {
                    self.usernames.remove(&u.username.to_lowercase());
                }
                for t in self.teams.values_mut() {
                    t.members.remove(&e.user_id);
                }
            }
            IdentityEvent::TeamCreated(e) => {
                self.last_team_id = self.last_team_id.max(e.team_id);
                self.teams.insert(
                    e.team_id,
                    Team { id: e.team_id, name: e.name.clone(), members: BTreeSet::new() },
                );
            }
            IdentityEvent::TeamRenamed(e) => {
                if let Some(t) = self.teams.get_mut(&e.team_id) {
                    t.name = e.name.clone();
                }
            }
            IdentityEvent::TeamDeleted(e) => {
                self.teams.remove(&e.team_id);
            }
            IdentityEvent::TeamMemberAdded(e) => {
                if let Some(t) = self.teams.get_mut(&e.team_id) {
                    t.members.insert(e.user_id);
                }
            }
            IdentityEvent::TeamMemberRemoved(e) => {
                if let Some(t) = self.teams.get_mut(&e.team_id) {
                    t.members.remove(&e.user_id);
                }
            }
            IdentityEvent::KubeconfigExpiryChanged(e) => self.expiry = e.expiry,
            IdentityEvent::SigningKeyAdded(e) => {
                if let Err(err) = self.verifying_keys.insert(&e.kid, &e.public_key) {
                    tracing::error!(kid = %e.kid, error = %err, "signing key in the log is unusable");
                }
                self.keys.push(SigningKeyRecord {
                    kid: e.kid.clone(),
                    public_key: e.public_key.clone(),
                    private_key: e.private_key.clone(),
                    added_at: at,
                    retired: false,
                })
            }
            IdentityEvent::SigningKeyRetired(e) => {
                self.verifying_keys.remove(&e.kid);
                if let Some(k) = self.keys.iter_mut().find(|k| k.kid == e.kid) {
                    k.retired = true;
                }
            }
            IdentityEvent::KubeconfigTokenIssued(e) => {
                self.tokens.insert(
                    e.token_id.clone(),
                    TokenRecord {
                        token_id: e.token_id.clone(),
                        user_id: e.user_id,
                        username: e.username.clone(),
                        environment_ids: e.environment_ids.clone(),
                        issued_at: e.issued_at,
                        expires_at: e.expires_at,
                        revoked: false,
                    },
                );
            }
            IdentityEvent::KubeconfigTokenRevoked(e) => {
                if let Some(t) = self.tokens.get_mut(&e.token_id) {
                    t.revoked = true;
                }
            }
            IdentityEvent::UserTokensRevoked(e) => {
                if let Some(u) = self.users.get_mut(&e.user_id) {
                    u.valid_after = Some(e.valid_after);
                }
                let cutoff = e.valid_after.timestamp();
                for t in self.tokens.values_mut().filter(|t| t.user_id == e.user_id) {
                    if t.issued_at.timestamp() < cutoff {
                        t.revoked = true;
                    }
                }
            }
            IdentityEvent::SignInSucceeded(_) | IdentityEvent::SignInFailed(_) => {}
        }
    }

    /// Whether a token issued at `iat` (seconds) for `user_id` is still allowed by the user's
    /// state (exists, enabled, not revoked wholesale).
    pub fn user_accepts(&self, user_id: u64, iat: i64) -> Result<&User, &'static str> {
        let user = self.users.get(&user_id).ok_or("the user no longer exists")?;
        if user.disabled {
            return Err("the user is disabled");
        }
        if let Some(after) = user.valid_after
            && iat < after.timestamp()
        {
            return Err("the token has been revoked");
        }
        Ok(user)
    }

    /// Checks a presented token completely: signature, algorithm and key (against the keys not
    /// retired), expiry, scope, then the user's state (exists, enabled, not revoked wholesale).
    /// The error is a message fit for the person holding the token.
    pub fn authenticate(&self, token: &str, scope: Scope, now: i64) -> Result<(&User, Claims), String> {
        let claims = self.verifying_keys.verify(token, scope, now).map_err(|e| token_refusal(&e, scope))?;
        let user_id = claims.user_id().map_err(|e| token_refusal(&e, scope))?;
        let user = self.user_accepts(user_id, claims.iat).map_err(|m| format!("token refused: {m}"))?;
        Ok((user, claims))
    }

    /// The session a presented session token stands for, checked as [`Self::authenticate`] does.
    pub fn session(&self, token: &str, now: i64) -> Result<Session, String> {
        self.authenticate(token, Scope::Session, now).map(|(user, _)| Session {
            user_id: user.id,
            username: user.username.clone(),
            role: user.role,
        })
    }
}

/// How a refused token is explained.
pub fn token_refusal(e: &TokenError, expected: Scope) -> String {
    match (e, expected) {
        (TokenError::WrongScope { found: "kubeconfig", .. }, Scope::Session) => {
            "kubeconfig tokens are not accepted by the REST API; sign in to get a session token".into()
        }
        (TokenError::WrongScope { found: "session", .. }, Scope::Kubeconfig) => {
            "session tokens are not accepted here; download a kubeconfig".into()
        }
        (TokenError::Expired, Scope::Session) => "session expired; sign in again".into(),
        (TokenError::Expired, Scope::Kubeconfig) => "token expired; download a new kubeconfig".into(),
        (other, _) => format!("invalid token: {other}"),
    }
}
