//! Identity's decisions: a command and the current state in, events (or a refusal) out. No I/O:
//! everything that needs randomness, time or hashing arrives inside the command or the context.

use chrono::{DateTime, Utc};
use kubegate_events::SealedSecret;
use kubegate_events::identity::*;

use super::state::{IdentityState, streams};

/// Limits on names, checked before anything is recorded.
pub const MAX_USERNAME_CHARS: usize = 64;
pub const MAX_TEAM_NAME_CHARS: usize = 64;
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;
pub const MAX_ENVIRONMENTS_PER_TOKEN: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    CreateUser {
        username: String,
        role: GlobalRole,
        password: SealedSecret,
    },
    ChangeRole {
        user_id: u64,
        role: GlobalRole,
    },
    ChangePassword {
        user_id: u64,
        password: SealedSecret,
    },
    DisableUser {
        user_id: u64,
    },
    EnableUser {
        user_id: u64,
    },
    DeleteUser {
        user_id: u64,
    },
    CreateTeam {
        name: String,
    },
    RenameTeam {
        team_id: u64,
        name: String,
    },
    DeleteTeam {
        team_id: u64,
    },
    AddTeamMember {
        team_id: u64,
        user_id: u64,
    },
    RemoveTeamMember {
        team_id: u64,
        user_id: u64,
    },
    SetKubeconfigExpiry {
        expiry: KubeconfigExpiry,
    },
    /// The key was generated and sealed by the caller.
    AddSigningKey {
        kid: String,
        public_key: String,
        private_key: SealedSecret,
    },
    RetireSigningKey {
        kid: String,
    },
    IssueKubeconfigToken {
        token_id: String,
        user_id: u64,
        /// The name the caller knows the user by (it is recorded as who asked): must be theirs.
        username: String,
        environment_ids: Vec<u64>,
    },
    RevokeToken {
        token_id: String,
    },
    RevokeUserTokens {
        user_id: u64,
    },
    RecordSignIn {
        user_id: u64,
        session_id: String,
        client_address: String,
        expires_at: DateTime<Utc>,
    },
    RecordSignInFailure {
        username: String,
        client_address: String,
        reason: SignInFailure,
    },
}

/// Why a command was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

/// One stream's share of a decision.
pub type Decision = kubegate_eventstore::engine::Decision<IdentityEvent>;

/// A decision on `stream` based on its current version.
fn on(state: &IdentityState, stream: String, events: Vec<IdentityEvent>) -> Decision {
    let expected = Some(state.version(&stream));
    Decision { stream, expected, events }
}

/// What a command produced: the events, and for the caller, the id it created if any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub decisions: Vec<Decision>,
    pub created_id: Option<u64>,
    /// For token issue: the claims' `iat` and `exp` (seconds) to mint with.
    pub token_times: Option<(i64, Option<i64>)>,
    /// For token issue: the signing key the decision chose (the active key at its time).
    pub signing_kid: Option<String>,
    /// The token minted once the events are stored.
    pub token: Option<String>,
}

fn one(decision: Decision) -> Outcome {
    Outcome { decisions: vec![decision], ..Default::default() }
}

/// The first whole second after `now`: tokens issued before a revoke-all carry an earlier `iat`.
pub fn next_whole_second(now: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now)
}

pub fn validate_username(name: &str) -> Result<(), DomainError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_USERNAME_CHARS {
        return Err(DomainError::Invalid(format!("username must be 1 to {MAX_USERNAME_CHARS} characters")));
    }
    if name.trim() != name {
        return Err(DomainError::Invalid("username must not start or end with whitespace".into()));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(DomainError::Invalid("username must not contain control characters".into()));
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<(), DomainError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(DomainError::Invalid(format!(
            "password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

fn validate_team_name(name: &str) -> Result<(), DomainError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_TEAM_NAME_CHARS || name.trim() != name || name.chars().any(|c| c.is_control()) {
        return Err(DomainError::Invalid(format!(
            "team name must be 1 to {MAX_TEAM_NAME_CHARS} characters, without control characters or surrounding spaces"
        )));
    }
    Ok(())
}

fn user(state: &IdentityState, id: u64) -> Result<&super::state::User, DomainError> {
    state.users.get(&id).ok_or_else(|| DomainError::NotFound(format!("user {id} not found")))
}

fn team(state: &IdentityState, id: u64) -> Result<&super::state::Team, DomainError> {
    state.teams.get(&id).ok_or_else(|| DomainError::NotFound(format!("team {id} not found")))
}

fn revoke_all(user_id: u64, now: DateTime<Utc>, reason: RevocationReason) -> IdentityEvent {
    IdentityEvent::UserTokensRevoked(UserTokensRevoked {
        user_id,
        valid_after: next_whole_second(now),
        reason,
    })
}

/// Refuses changes that would leave no enabled admin.
fn keeps_an_admin(state: &IdentityState, user_id: u64) -> Result<(), DomainError> {
    let u = user(state, user_id)?;
    if u.role == GlobalRole::Admin && !u.disabled && state.enabled_admins() <= 1 {
        return Err(DomainError::Conflict("this is the last enabled admin; make another admin first".into()));
    }
    Ok(())
}

pub fn decide(state: &IdentityState, command: Command, now: DateTime<Utc>) -> Result<Outcome, DomainError> {
    use IdentityEvent as E;
    match command {
        Command::CreateUser { username, role, password } => {
            validate_username(&username)?;
            if state.user_by_name(&username).is_some() {
                return Err(DomainError::Conflict(format!("a user named {username:?} already exists")));
            }
            // Ids are allocated as last + 1, so two replicas creating users at once collide on the
            // new user's stream and one of them is refused: names stay unique too.
            let user_id = state.last_user_id + 1;
            let created = E::UserCreated(UserCreated { user_id, username, role, password });
            Ok(Outcome {
                decisions: vec![on(state, streams::user(user_id), vec![created])],
                created_id: Some(user_id),
                ..Default::default()
            })
        }
        Command::ChangeRole { user_id, role } => {
            let u = user(state, user_id)?;
            if u.role == role {
                return Ok(Outcome::default());
            }
            if role != GlobalRole::Admin {
                keeps_an_admin(state, user_id)?;
            }
            Ok(one(on(
                state,
                streams::user(user_id),
                vec![
                    E::UserRoleChanged(UserRoleChanged { user_id, role }),
                    revoke_all(user_id, now, RevocationReason::RoleChanged),
                ],
            )))
        }
        Command::ChangePassword { user_id, password } => {
            user(state, user_id)?;
            Ok(one(on(
                state,
                streams::user(user_id),
                vec![
                    E::UserPasswordChanged(UserPasswordChanged { user_id, password }),
                    revoke_all(user_id, now, RevocationReason::PasswordChanged),
                ],
            )))
        }
        Command::DisableUser { user_id } => {
            if user(state, user_id)?.disabled {
                return Ok(Outcome::default());
            }
            keeps_an_admin(state, user_id)?;
            Ok(one(on(
                state,
                streams::user(user_id),
                vec![
                    E::UserDisabled(UserDisabled { user_id }),
                    revoke_all(user_id, now, RevocationReason::Disabled),
                ],
            )))
        }
        Command::EnableUser { user_id } => {
            if !user(state, user_id)?.disabled {
                return Ok(Outcome::default());
            }
            Ok(one(on(state, streams::user(user_id), vec![E::UserEnabled(UserEnabled { user_id })])))
        }
        Command::DeleteUser { user_id } => {
            keeps_an_admin(state, user_id)?;
            let username = user(state, user_id)?.username.clone();
            Ok(one(on(
                state,
                streams::user(user_id),
                vec![
                    revoke_all(user_id, now, RevocationReason::Deleted),
                    E::UserDeleted(UserDeleted { user_id, username }),
                ],
            )))
        }
        Command::CreateTeam { name } => {
            validate_team_name(&name)?;
            if state.team_by_name(&name).is_some() {
                return Err(DomainError::Conflict(format!("a team named {name:?} already exists")));
            }
            let team_id = state.last_team_id + 1;
            Ok(Outcome {
                decisions: vec![on(
                    state,
                    streams::team(team_id),
                    vec![E::TeamCreated(TeamCreated { team_id, name })],
                )],
                created_id: Some(team_id),
                ..Default::default()
            })
        }
        Command::RenameTeam { team_id, name } => {
            validate_team_name(&name)?;
            let t = team(state, team_id)?;
            if t.name == name {
                return Ok(Outcome::default());
            }
            if let Some(other) = state.team_by_name(&name)
                && other.id != team_id
            {
                return Err(DomainError::Conflict(format!("a team named {name:?} already exists")));
            }
            Ok(one(on(state, streams::team(team_id), vec![E::TeamRenamed(TeamRenamed { team_id, name })])))
        }
        Command::DeleteTeam { team_id } => {
            team(state, team_id)?;
            Ok(one(on(state, streams::team(team_id), vec![E::TeamDeleted(TeamDeleted { team_id })])))
        }
        Command::AddTeamMember { team_id, user_id } => {
            let t = team(state, team_id)?;
            user(state, user_id)?;
            if t.members.contains(&user_id) {
                return Ok(Outcome::default());
            }
            Ok(one(on(
                state,
                streams::team(team_id),
                vec![E::TeamMemberAdded(TeamMemberAdded { team_id, user_id })],
            )))
        }
        Command::RemoveTeamMember { team_id, user_id } => {
            let t = team(state, team_id)?;
            if !t.members.contains(&user_id) {
                return Err(DomainError::NotFound(format!(
                    "user {user_id} is not a member of team {team_id}"
                )));
            }
            Ok(one(on(
                state,
                streams::team(team_id),
                vec![E::TeamMemberRemoved(TeamMemberRemoved { team_id, user_id })],
            )))
        }
        Command::SetKubeconfigExpiry { expiry } => {
            if state.expiry == expiry {
                return Ok(Outcome::default());
            }
            Ok(one(on(
                state,
                streams::SETTINGS.to_string(),
                vec![E::KubeconfigExpiryChanged(KubeconfigExpiryChanged { expiry, previous: state.expiry })],
            )))
        }
        Command::AddSigningKey { kid, public_key, private_key } => {
            if state.keys.iter().any(|k| k.kid == kid) {
                return Err(DomainError::Conflict(format!("signing key {kid} exists already")));
            }
            Ok(one(on(
                state,
                streams::SIGNING_KEYS.to_string(),
                vec![E::SigningKeyAdded(SigningKeyAdded { kid, public_key, private_key })],
            )))
        }
        Command::RetireSigningKey { kid } => {
            let key = state
                .keys
                .iter()
                .find(|k| k.kid == kid)
                .ok_or_else(|| DomainError::NotFound(format!("signing key {kid} not found")))?;
            if key.retired {
                return Ok(Outcome::default());
            }
            // Any key may go while another stays in force, also one whose successor has not
            // warmed up yet: retiring a key that may have leaked must not wait. What stays then
            // signs at once.
            if !state.keys.iter().any(|k| !k.retired && k.kid != kid) {
                return Err(DomainError::Conflict(
                    "the last signing key cannot be retired; rotate to a new key first".into(),
                ));
            }
            Ok(one(on(
                state,
                streams::SIGNING_KEYS.to_string(),
                vec![E::SigningKeyRetired(SigningKeyRetired { kid })],
            )))
        }
        Command::IssueKubeconfigToken { token_id, user_id, username, environment_ids } => {
            let u = user(state, user_id)?;
            if u.username != username {
                return Err(DomainError::Conflict(format!("user {user_id} is not named {username:?}")));
            }
            if u.disabled {
                return Err(DomainError::Conflict(format!("user {user_id} is disabled")));
            }
            if environment_ids.is_empty() || environment_ids.len() > MAX_ENVIRONMENTS_PER_TOKEN {
                return Err(DomainError::Invalid(format!(
                    "a token covers 1 to {MAX_ENVIRONMENTS_PER_TOKEN} environments"
                )));
            }
            let Some(key) = state.active_key(now) else {
                return Err(DomainError::Conflict("no active signing key".into()));
            };
            let signing_kid = Some(key.kid.clone());
            let iat = token_iat(u, now);
            let exp = state.expiry.seconds().map(|s| iat + s);
            let issued = KubeconfigTokenIssued {
                token_id: token_id.clone(),
                user_id,
                username: u.username.clone(),
                environment_ids,
                issued_at: DateTime::from_timestamp(iat, 0).unwrap_or(now),
                expires_at: exp.and_then(|e| DateTime::from_timestamp(e, 0)),
            };
            Ok(Outcome {
                decisions: vec![on(state, streams::token(&token_id), vec![E::KubeconfigTokenIssued(issued)])],
                token_times: Some((iat, exp)),
                signing_kid,
                ..Default::default()
            })
        }
        Command::RevokeToken { token_id } => {
            let t = state
                .tokens
                .get(&token_id)
                .ok_or_else(|| DomainError::NotFound(format!("kubeconfig token {token_id} not found")))?;
            if t.revoked {
                return Ok(Outcome::default());
            }
            Ok(one(on(
                state,
                streams::token(&token_id),
                vec![E::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
                    token_id: token_id.clone(),
                    user_id: t.user_id,
                    expires_at: t.expires_at,
                })],
            )))
        }
        Command::RevokeUserTokens { user_id } => {
            user(state, user_id)?;
            Ok(one(on(
                state,
                streams::user(user_id),
                vec![revoke_all(user_id, now, RevocationReason::Requested)],
            )))
        }
        Command::RecordSignIn { user_id, session_id, client_address, expires_at } => {
            let u = user(state, user_id)?;
            if u.disabled {
                return Err(DomainError::Conflict(format!("user {user_id} is disabled")));
            }
            let iat = token_iat(u, now);
            let mut outcome = one(Decision {
                stream: streams::SIGNINS.to_string(),
                expected: None,
                events: vec![E::SignInSucceeded(SignInSucceeded {
                    user_id,
                    username: u.username.clone(),
                    client_address,
                    session_id,
                    expires_at,
                })],
            });
            outcome.token_times = Some((iat, Some(expires_at.timestamp())));
            outcome.signing_kid = state.active_key(now).map(|k| k.kid.clone());
            Ok(outcome)
        }
        Command::RecordSignInFailure { username, client_address, reason } => Ok(one(Decision {
            stream: streams::SIGNINS.to_string(),
            expected: None,
            events: vec![E::SignInFailed(SignInFailed {
                username: username.chars().take(128).collect(),
                client_address,
                reason,
            })],
        })),
    }
}

/// `iat` for a token issued now: never before the user's revoke-all cut-off, so a token issued in
/// the same second as a revoke-all (but after it) stays valid.
pub fn token_iat(user: &super::state::User, now: DateTime<Utc>) -> i64 {
    let now_s = now.timestamp();
    user.valid_after.map(|v| v.timestamp().max(now_s)).unwrap_or(now_s)
}
