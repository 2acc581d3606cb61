//! The proxy's memory: everything it needs to decide a request, built from the identity and
//! environment event streams. One task writes (see `follow`); request handlers read without
//! waiting: concurrent maps for what changes often (revocations, users), an atomically swapped
//! snapshot for what changes rarely (keys, environments).

pub mod follow;
pub mod sessions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
pub use kubegate_directory::{Directory, UserEntry};
use kubegate_events::access::{EnvironmentRole, Grant};
use kubegate_events::environments::{AccessPolicySet, EnvironmentEvent, SealedCredential};
use kubegate_events::identity::IdentityEvent;
use kubegate_seal::FleetSecretKey;
use kubegate_token::{Claims, Scope, TokenError};

use crate::upstream::Upstream;
pub use sessions::{Holder, Sessions};
use tokio_util::sync::CancellationToken;

/// One environment: where it is, how to authenticate there, who may do what.
pub struct Environment {
    pub id: u64,
    pub name: String,
    pub url: String,
    pub ca_pem: Option<String>,
    pub insecure_skip_tls_verify: bool,
    sealed: SealedCredential,
    pub policy: AccessPolicySet,
    upstream: OnceLock<Result<Arc<Upstream>, String>>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("url", &self.url)
            .finish()
    }
}

impl Environment {
    /// The connection pool and credential, built on first use (opening the sealed credential
    /// with the fleet key). An error says why the environment cannot be reached.
    pub fn upstream(&self, fleet: &FleetSecretKey) -> Result<Arc<Upstream>, String> {
        self.upstream
            .get_or_init(|| {
                let sealed = kubegate_seal::SealedCredential::from_armored(self.sealed.0.clone())
                    .map_err(|e| format!("environment {}'s sealed credential is damaged: {e}", self.id))?;
                let credential = kubegate_seal::open(fleet, &sealed).map_err(|e| {
                    format!("environment {}'s credential cannot be opened by this proxy: {e}", self.id)
                })?;
                Upstream::new(&self.url, self.ca_pem.as_deref(), self.insecure_skip_tls_verify, &credential)
                    .map(Arc::new)
                    .map_err(|e| format!("environment {} is misconfigured: {e}", self.id))
            })
            .clone()
    }

    fn with(&self, f: impl FnOnce(&mut EnvironmentParts)) -> Environment {
        let mut parts = EnvironmentParts {
            name: self.name.clone(),
            url: self.url.clone(),
            ca_pem: self.ca_pem.clone(),
            insecure: self.insecure_skip_tls_verify,
            sealed: self.sealed.clone(),
            policy: self.policy.clone(),
        };
        let before = (parts.url.clone(), parts.ca_pem.clone(), parts.insecure, parts.sealed.clone());
        f(&mut parts);
        let after = (parts.url.clone(), parts.ca_pem.clone(), parts.insecure, parts.sealed.clone());
        let upstream = OnceLock::new();
        if before == after
            && let Some(u) = self.upstream.get()
        {
            // Same endpoint and credential: keep the warm connection pool.
            let _ = upstream.set(u.clone());
        }
        Environment {
            id: self.id,
            name: parts.name,
            url: parts.url,
            ca_pem: parts.ca_pem,
            insecure_skip_tls_verify: parts.insecure,
            sealed: parts.sealed,
            policy: parts.policy,
            upstream,
        }
    }
}

struct EnvironmentParts {
    name: String,
    url: String,
    ca_pem: Option<String>,
    insecure: bool,
    sealed: SealedCredential,
    policy: AccessPolicySet,
}

/// A token that passed every check, with who it stands for.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Arc<Claims>,
    pub kid: Arc<str>,
    pub user_id: u64,
    pub user: Arc<UserEntry>,
}

/// Whether the replica may answer from its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Caught up with both streams (or following them live).
    Current,
    /// Still replaying; not ready yet.
    CatchingUp,
    /// A stream was reset or a gap did not close: fail closed until rebuilt.
    Untrusted,
}

pub struct Cache {
    /// Users, teams, signing keys, revocations (the identity stream's part).
    pub directory: Directory,
    environments: ArcSwap<HashMap<u64, Arc<Environment>>>,
    pub sessions: Sessions,
    identity_caught_up: AtomicBool,
    environments_caught_up: AtomicBool,
    untrusted: AtomicBool,
    /// Milliseconds since `started` of the last event or caught-up signal, for staleness.
    last_contact_ms: AtomicU64,
    started: Instant,
    pub fleet: FleetSecretKey,
}

impl Cache {
    pub fn new(fleet: FleetSecretKey) -> Cache {
        Cache {
            directory: Directory::new(),
            environments: ArcSwap::from_pointee(HashMap::new()),
            sessions: Sessions::default(),
            identity_caught_up: AtomicBool::new(false),
            environments_caught_up: AtomicBool::new(false),
            untrusted: AtomicBool::new(false),
            last_contact_ms: AtomicU64::new(0),
            started: Instant::now(),
            fleet,
        }
    }

    pub fn trust(&self) -> Trust {
        if self.untrusted.load(Ordering::Acquire) {
            Trust::Untrusted
        } else if self.identity_caught_up.load(Ordering::Acquire)
            && self.environments_caught_up.load(Ordering::Acquire)
        {
            Trust::Current
        } else {
            Trust::CatchingUp
        }
    }

    pub(crate) fn set_untrusted(&self, untrusted: bool) {
        self.untrusted.store(untrusted, Ordering::Release);
    }

    pub(crate) fn set_caught_up(&self, identity: bool, caught_up: bool) {
        if identity {
            self.identity_caught_up.store(caught_up, Ordering::Release);
        } else {
            self.environments_caught_up.store(caught_up, Ordering::Release);
        }
    }

    pub(crate) fn touch(&self) {
        self.last_contact_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the cache last heard from the bus.
    pub fn since_contact(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_contact_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Verifies a kubeconfig token and everything about its holder, every time: signature (the
    /// key set remembers it by token hash), key not retired, expiry, scope, revocation of the
    /// token, the user's state.
    pub fn authenticate(&self, token: &str, now: i64) -> Result<Authenticated, String> {
        let verified = self.directory.verify_signature(token).map_err(|e| match e {
            TokenError::UnknownKid
                if kubegate_token::token_kid(token).is_some_and(|kid| self.directory.is_retired(&kid)) =>
            {
                "token refused: its signing key has been retired; download a new kubeconfig".to_string()
            }
            e => refusal(&e),
        })?;
        let claims = &verified.claims;
        kubegate_token::check_claims(claims, Scope::Kubeconfig, now).map_err(|e| refusal(&e))?;
        if self.directory.is_revoked(&claims.jti) {
            return Err("token revoked; download a new kubeconfig".into());
        }
        let user_id: u64 =
            claims.sub.parse().map_err(|_| "invalid token: sub is not a user id".to_string())?;
        let user = self.directory.user(user_id).ok_or("token refused: the user no longer exists")?;
        if user.disabled {
            return Err("token refused: the user is disabled".into());
        }
        if claims.iat < user.valid_after {
            return Err("token revoked; download a new kubeconfig".into());
        }
        Ok(Authenticated { claims: claims.clone(), kid: verified.kid.clone(), user_id, user })
    }

    /// Whether a stream's holder may still keep it open: its token not revoked, its key not
    /// retired, its user present, enabled and not cut off, and the environment still granted.
    /// Checked again right after a stream is registered, because a revocation applied between
    /// the request's check and the registration would otherwise find nothing to close.
    pub fn still_allowed(&self, holder: &Holder) -> bool {
        if self.directory.is_retired(&holder.kid) || self.directory.is_revoked(&holder.token_id) {
            return false;
        }
        let Some(user) = self.directory.user(holder.user_id) else { return false };
        if user.disabled || holder.iat < user.valid_after {
            return false;
        }
        self.environment(holder.environment_id)
            .map(|env| self.grant(&user, holder.user_id, &env).is_some())
            .unwrap_or(false)
    }

    /// Registers a stream (see [`Sessions::open`]); when its holder lost the right to it in the
    /// meantime, the returned token is already cancelled.
    pub fn open_stream(&self, holder: Holder) -> (u64, CancellationToken) {
        let (id, cancel) = self.sessions.open(holder.clone());
        if !self.still_allowed(&holder) {
            cancel.cancel();
        }
        (id, cancel)
    }

    pub fn environment(&self, id: u64) -> Option<Arc<Environment>> {
        self.environments.load().get(&id).cloned()
    }

    pub fn environment_count(&self) -> usize {
        self.environments.load().len()
    }

    /// The user's grant in `env`: admins are environment-admin everywhere; others get what the
    /// access policy gives them directly or through a team.
    pub fn grant(&self, user: &UserEntry, user_id: u64, env: &Environment) -> Option<Grant> {
        if user.admin {
            return Some(Grant { role: EnvironmentRole::EnvironmentAdmin, namespaces: Vec::new() });
        }
        let teams: Vec<u64> = user.teams.iter().copied().collect();
        env.policy.grant_for(user_id, &teams)
    }

    /// Names of the user's teams, for impersonation groups.
    pub fn team_names(&self, user: &UserEntry) -> Vec<String> {
        user.teams.iter().filter_map(|t| self.directory.team_name(*t)).collect()
    }

    /// Numbers for `replay verify` and the admin endpoint.
    pub fn summary(&self) -> serde_json::Value {
        let users: Vec<_> = self
            .directory
            .users()
            .into_iter()
            .map(|(id, u)| {
                serde_json::json!({
                    "id": id, "username": u.username, "admin": u.admin, "disabled": u.disabled,
                    "validAfter": u.valid_after, "teams": u.teams,
                })
            })
            .collect();
        let mut envs: Vec<_> = self
            .environments
            .load()
            .values()
            .map(|e| serde_json::json!({"id": e.id, "name": e.name, "url": e.url, "policy": e.policy}))
            .collect();
        envs.sort_by_key(|e| e["id"].as_u64());
        serde_json::json!({
            "users": users,
            "environments": envs,
            "revokedTokens": self.directory.revoked_ids(),
            "signingKeys": self.directory.keys().len(),
            "trust": format!("{:?}", self.trust()),
        })
    }

    /// Forgets everything learned from one stream (it was reset): the caller replays it again.
    pub(crate) fn clear_identity(&self) {
        self.directory.clear();
        self.set_caught_up(true, false);
    }

    pub(crate) fn clear_environments(&self) {
        self.environments.store(Arc::new(HashMap::new()));
        self.set_caught_up(false, false);
    }

    /// Applies one identity event to the directory, and closes the open streams it ends.
    /// Public for benchmarks and tools that build a cache without a bus; in the proxy, only the
    /// follower (`follow`) calls it.
    pub fn apply_identity(&self, event: &IdentityEvent) {
        self.directory.apply(event, chrono::Utc::now().timestamp());
        self.close_streams_ended_by(event);
    }

    /// Closes the open streams an identity event (already applied) ends.
    pub(crate) fn close_streams_ended_by(&self, event: &IdentityEvent) {
        match event {
            IdentityEvent::UserDisabled(e) => self.sessions.cut_user(e.user_id, i64::MAX),
            IdentityEvent::UserDeleted(e) => self.sessions.cut_user(e.user_id, i64::MAX),
            IdentityEvent::SigningKeyRetired(e) => self.sessions.cut_kid(&e.kid),
            IdentityEvent::KubeconfigTokenRevoked(e) => self.sessions.cut_token(&e.token_id),
            IdentityEvent::UserTokensRevoked(e) => {
                self.sessions.cut_user(e.user_id, e.valid_after.timestamp())
            }
            _ => {}
        }
    }

    /// Applies one environment event (public for the same reason as `apply_identity`).
    pub fn apply_environment(&self, event: &EnvironmentEvent) {
        let mut envs = (**self.environments.load()).clone();
        let id = match event {
            EnvironmentEvent::EnvironmentRegistered(e) => {
                envs.insert(
                    e.environment_id,
                    Arc::new(Environment {
                        id: e.environment_id,
                        name: e.name.clone(),
                        url: e.url.clone(),
                        ca_pem: e.ca_pem.clone(),
                        insecure_skip_tls_verify: e.insecure_skip_tls_verify,
                        sealed: e.credential.clone(),
                        policy: AccessPolicySet {
                            environment_id: e.environment_id,
                            users: vec![],
                            teams: vec![],
                        },
                        upstream: OnceLock::new(),
                    }),
                );
                e.environment_id
            }
            EnvironmentEvent::EnvironmentRenamed(e) => {
                if let Some(env) = envs.get(&e.environment_id) {
                    let updated = env.with(|p| p.name = e.name.clone());
                    envs.insert(e.environment_id, Arc::new(updated));
                }
                e.environment_id
            }
            EnvironmentEvent::EnvironmentEndpointChanged(e) => {
                if let Some(env) = envs.get(&e.environment_id) {
                    let updated = env.with(|p| {
                        p.url = e.url.clone();
                        p.ca_pem = e.ca_pem.clone();
                        p.insecure = e.insecure_skip_tls_verify;
                    });
                    envs.insert(e.environment_id, Arc::new(updated));
                }
                e.environment_id
            }
            EnvironmentEvent::EnvironmentCredentialRotated(e) => {
                if let Some(env) = envs.get(&e.environment_id) {
                    let updated = env.with(|p| p.sealed = e.credential.clone());
                    envs.insert(e.environment_id, Arc::new(updated));
                }
                e.environment_id
            }
            EnvironmentEvent::EnvironmentRemoved(e) => {
                envs.remove(&e.environment_id);
                self.sessions.cut_environment(e.environment_id);
                e.environment_id
            }
            EnvironmentEvent::AccessPolicySet(e) => {
                if let Some(env) = envs.get(&e.environment_id) {
                    let updated = env.with(|p| p.policy = e.clone());
                    envs.insert(e.environment_id, Arc::new(updated));
                }
                e.environment_id
            }
            EnvironmentEvent::KubeconfigDownloaded(_) => return,
        };
        let env = envs.get(&id).cloned();
        self.environments.store(Arc::new(envs));
        // Streams of users who lost access to this environment are closed.
        if let Some(env) = env {
            self.sessions.cut_environment_where(id, |user_id| {
                self.directory.user(user_id).map(|u| self.grant(&u, user_id, &env).is_none()).unwrap_or(true)
            });
        }
    }

    /// Forgets revocations of tokens that have expired anyway (they could not be used).
    pub(crate) fn prune_revocations(&self, now: i64) {
        self.directory.prune_revocations(now);
    }
}

fn refusal(e: &TokenError) -> String {
    match e {
        TokenError::WrongScope { found: "session", .. } => {
            "session tokens are not accepted here; download a kubeconfig".to_string()
        }
        TokenError::Expired => "token expired; download a new kubeconfig".to_string(),
        other => format!("invalid token: {other}"),
    }
}

#[cfg(test)]
mod tests;
