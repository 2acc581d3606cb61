//! The kubeconfig service's decisions: a command and the current state in, events (or a refusal)
//! out. No I/O: credentials arrive already sealed, identity's users and teams come from the
//! projection the caller passes in.
//!
//! Rules decided here:
//! - Environment names: 1 to 128 Unicode characters, anything but NUL (PostgreSQL cannot store
//!   it in JSON), kept verbatim; unique regardless of letter case (`prod` and `Prod` collide).
//! - URLs: absolute `https://` with a host, no user info, query or fragment; a path prefix is
//!   allowed (clusters behind a path-routing gateway); a trailing `/` is dropped.
//! - CA: a PEM bundle of certificates only, stored canonical; required unless the operator sets
//!   `insecureSkipTlsVerify`, and not both at once (kubectl refuses that combination too).
//! - Access policies: known user and team ids only, each listed once; `standard` and
//!   `read-only` need at least one valid namespace name, the other roles take none.
//! - Ids: last + 1, never reused.

use kubegate_events::access::EnvironmentRole;
use kubegate_events::environments::*;
use kubegate_identity::domain::IdentityState;

use super::state::{Environment, EnvironmentsState, streams};
use crate::kubeconfig_file::{CaBundle, is_dns1123_label};

pub const MAX_NAME_CHARS: usize = 128;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_POLICY_ENTRIES: usize = 10_000;
pub const MAX_NAMESPACES_PER_ENTRY: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    RegisterEnvironment {
        name: String,
        url: String,
        ca_pem: Option<String>,
        insecure_skip_tls_verify: bool,
        credential: SealedCredential,
        credential_kind: CredentialKind,
    },
    /// Only the fields given change; each kind of change is its own event.
    UpdateEnvironment {
        environment_id: u64,
        name: Option<String>,
        url: Option<String>,
        ca_pem: Option<String>,
        insecure_skip_tls_verify: Option<bool>,
        credential: Option<(SealedCredential, CredentialKind)>,
    },
    RemoveEnvironment {
        environment_id: u64,
    },
    /// Replaces the environment's whole policy.
    SetAccessPolicy {
        environment_id: u64,
        users: Vec<PolicyEntry>,
        teams: Vec<PolicyEntry>,
    },
    RecordDownload(KubeconfigDownloaded),
}

/// Why a command was refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(String),
    /// User or team ids that identity's view does not hold (deleted, never created, or
    /// created a moment ago and not seen yet).
    #[error("{0}")]
    UnknownIds(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

/// One stream's share of a decision.
pub type Decision = kubegate_eventstore::engine::Decision<EnvironmentEvent>;

/// What a command produced: the events, and the id it created if any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub decisions: Vec<Decision>,
    pub created_id: Option<u64>,
}

impl Outcome {
    pub fn events(&self) -> impl Iterator<Item = &EnvironmentEvent> {
        self.decisions.iter().flat_map(|d| d.events.iter())
    }
}

fn catalogue(state: &EnvironmentsState, events: Vec<EnvironmentEvent>) -> Outcome {
    if events.is_empty() {
        return Outcome::default();
    }
    let stream = streams::ENVIRONMENTS.to_string();
    let expected = Some(state.version(&stream));
    Outcome { decisions: vec![Decision { stream, expected, events }], created_id: None }
}

pub fn validate_name(name: &str) -> Result<(), DomainError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(DomainError::Invalid(format!(
            "environment name must be 1 to {MAX_NAME_CHARS} characters, not {n}"
        )));
    }
    if name.contains('\0') {
        return Err(DomainError::Invalid("environment name must not contain NUL (U+0000)".into()));
    }
    Ok(())
}

/// Checks an upstream API server URL and returns it normalized (lower-case scheme and host,
/// default port dropped, no trailing `/`).
pub fn validate_url(url: &str) -> Result<String, DomainError> {
    let invalid =
        |why: &str| DomainError::Invalid(format!("url must be an https:// URL of the API server: {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(invalid(&format!("longer than {MAX_URL_LEN} bytes")));
    }
    if url.trim() != url || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("it contains whitespace or control characters"));
    }
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(invalid(&format!("the scheme is {:?}", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("user info is not allowed; give the credential separately"));
    }
    if parsed.query().is_some() {
        return Err(invalid("a query is not allowed"));
    }
    if parsed.fragment().is_some() {
        return Err(invalid("a fragment is not allowed"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Checks a CA bundle and returns its canonical PEM (certificates only, comments dropped).
pub fn validate_ca(pem: &str) -> Result<String, DomainError> {
    CaBundle::from_pem(pem.as_bytes())
        .map(|b| b.pem().to_string())
        .map_err(|e| DomainError::Invalid(format!("caCert: {e}")))
}

/// The trust settings after a change: (CA, insecure). `None` fields keep the current value;
/// a new CA turns verification on, `insecure: true` drops the CA.
fn resolve_trust(
    current: Option<(&Option<String>, bool)>,
    ca_pem: Option<&str>,
    insecure: Option<bool>,
) -> Result<(Option<String>, bool), DomainError> {
    if ca_pem.is_some() && insecure == Some(true) {
        return Err(DomainError::Invalid(
            "give caCert or insecureSkipTlsVerify: true, not both: a CA is only used when verifying".into(),
        ));
    }
    let (current_ca, current_insecure) = match current {
        Some((ca, insecure)) => (ca.clone(), insecure),
        None => (None, false),
    };
    let ca = match (ca_pem, insecure) {
        (Some(pem), _) => Some(validate_ca(pem)?),
        (None, Some(true)) => None,
        (None, _) => current_ca,
    };
    let insecure = match (ca_pem, insecure) {
        (Some(_), _) => false,
        (None, Some(v)) => v,
        (None, None) => current_insecure,
    };
    if ca.is_none() && !insecure {
        return Err(DomainError::Invalid(
            "caCert is required unless insecureSkipTlsVerify is true for this environment".into(),
        ));
    }
    Ok((ca, insecure))
}

fn environment(state: &EnvironmentsState, id: u64) -> Result<&Environment, DomainError> {
    state.get(id).ok_or_else(|| DomainError::NotFound(format!("environment {id} not found")))
}

fn name_is_free(state: &EnvironmentsState, name: &str, except: Option<u64>) -> Result<(), DomainError> {
    match state.named(name) {
        Some(other) if Some(other.id) != except => Err(DomainError::Conflict(format!(
            "an environment named {:?} already exists (environment {}); names are unique regardless of letter case",
            other.name, other.id
        ))),
        _ => Ok(()),
    }
}

fn list(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// Checks a policy's entries and returns them normalized (namespaces sorted, de-duplicated).
pub fn validate_policy(
    identity: &IdentityState,
    users: Vec<PolicyEntry>,
    teams: Vec<PolicyEntry>,
) -> Result<(Vec<PolicyEntry>, Vec<PolicyEntry>), DomainError> {
    if users.len() + teams.len() > MAX_POLICY_ENTRIES {
        return Err(DomainError::Invalid(format!("a policy has at most {MAX_POLICY_ENTRIES} entries")));
    }
    let unknown_users: Vec<u64> =
        users.iter().map(|e| e.id).filter(|id| !identity.users.contains_key(id)).collect();
    let unknown_teams: Vec<u64> =
        teams.iter().map(|e| e.id).filter(|id| !identity.teams.contains_key(id)).collect();
    let mut unknown = Vec::new();
    if !unknown_users.is_empty() {
        unknown.push(format!("unknown user ids: {}", list(&unknown_users)));
    }
    if !unknown_teams.is_empty() {
        unknown.push(format!("unknown team ids: {}", list(&unknown_teams)));
    }
    if !unknown.is_empty() {
        return Err(DomainError::UnknownIds(unknown.join("; ")));
    }
    let users = normalize_entries("user", users)?;
    let teams = normalize_entries("team", teams)?;
    Ok((users, teams))
}

fn normalize_entries(kind: &str, entries: Vec<PolicyEntry>) -> Result<Vec<PolicyEntry>, DomainError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for mut entry in entries {
        let id = entry.id;
        if !seen.insert(id) {
            return Err(DomainError::Invalid(format!("{kind} {id} is listed more than once")));
        }
        let role = entry.role;
        if role.is_namespace_scoped() {
            if entry.namespaces.is_empty() {
                return Err(DomainError::Invalid(format!(
                    "{kind} {id}: role {role} needs at least one namespace"
                )));
            }
            if entry.namespaces.len() > MAX_NAMESPACES_PER_ENTRY {
                return Err(DomainError::Invalid(format!(
                    "{kind} {id}: at most {MAX_NAMESPACES_PER_ENTRY} namespaces"
                )));
            }
            if let Some(bad) = entry.namespaces.iter().find(|n| !is_dns1123_label(n)) {
                return Err(DomainError::Invalid(format!(
                    "{kind} {id}: {bad:?} is not a valid namespace name (lower-case letters, digits and '-', \
                     starting and ending with a letter or digit, at most 63 characters)"
                )));
            }
            entry.namespaces.sort();
            entry.namespaces.dedup();
        } else if !entry.namespaces.is_empty() {
            return Err(DomainError::Invalid(format!(
                "{kind} {id}: role {role} takes no namespaces; only {} and {} are limited to namespaces",
                EnvironmentRole::Standard,
                EnvironmentRole::ReadOnly
            )));
        }
        out.push(entry);
    }
    Ok(out)
}

pub fn decide(
    state: &EnvironmentsState,
    identity: &IdentityState,
    command: Command,
) -> Result<Outcome, DomainError> {
    use EnvironmentEvent as E;
    match command {
        Command::RegisterEnvironment {
            name,
            url,
            ca_pem,
            insecure_skip_tls_verify,
            credential,
            credential_kind,
        } => {
            validate_name(&name)?;
            let url = validate_url(&url)?;
            let (ca_pem, insecure_skip_tls_verify) =
                resolve_trust(None, ca_pem.as_deref(), Some(insecure_skip_tls_verify))?;
            name_is_free(state, &name, None)?;
            let environment_id = state.last_environment_id + 1;
            let mut outcome = catalogue(
                state,
                vec![E::EnvironmentRegistered(EnvironmentRegistered {
                    environment_id,
                    name,
                    url,
                    ca_pem,
                    insecure_skip_tls_verify,
                    credential,
                    credential_kind,
                })],
            );
            outcome.created_id = Some(environment_id);
            Ok(outcome)
        }
        Command::UpdateEnvironment {
            environment_id,
            name,
            url,
            ca_pem,
            insecure_skip_tls_verify,
            credential,
        } => {
            let current = environment(state, environment_id)?;
            let mut events = Vec::new();
            if let Some(name) = name {
                validate_name(&name)?;
                name_is_free(state, &name, Some(environment_id))?;
                if name != current.name {
                    events.push(E::EnvironmentRenamed(EnvironmentRenamed { environment_id, name }));
                }
            }
            if url.is_some() || ca_pem.is_some() || insecure_skip_tls_verify.is_some() {
                let url = match url {
                    Some(u) => validate_url(&u)?,
                    None => current.url.clone(),
                };
                let (ca_pem, insecure_skip_tls_verify) = resolve_trust(
                    Some((&current.ca_pem, current.insecure_skip_tls_verify)),
                    ca_pem.as_deref(),
                    insecure_skip_tls_verify,
                )?;
                if url != current.url
                    || ca_pem != current.ca_pem
                    || insecure_skip_tls_verify != current.insecure_skip_tls_verify
                {
                    events.push(E::EnvironmentEndpointChanged(EnvironmentEndpointChanged {
                        environment_id,
                        url,
                        ca_pem,
                        insecure_skip_tls_verify,
                    }));
                }
            }
            if let Some((credential, credential_kind)) = credential {
                // Sealing is randomized: a new sealed value is always a rotation.
                events.push(E::EnvironmentCredentialRotated(EnvironmentCredentialRotated {
                    environment_id,
                    credential,
                    credential_kind,
                }));
            }
            Ok(catalogue(state, events))
        }
        Command::RemoveEnvironment { environment_id } => {
            environment(state, environment_id)?;
            Ok(catalogue(state, vec![E::EnvironmentRemoved(EnvironmentRemoved { environment_id })]))
        }
        Command::SetAccessPolicy { environment_id, users, teams } => {
            let current = environment(state, environment_id)?;
            let (users, teams) = validate_policy(identity, users, teams)?;
            let policy = AccessPolicySet { environment_id, users, teams };
            if policy == current.policy {
                return Ok(Outcome::default());
            }
            Ok(catalogue(state, vec![E::AccessPolicySet(policy)]))
        }
        Command::RecordDownload(downloaded) => {
            if downloaded.environment_ids.is_empty() {
                return Err(DomainError::Invalid("a download has at least one environment".into()));
            }
            Ok(Outcome {
                decisions: vec![Decision {
                    stream: streams::DOWNLOADS.to_string(),
                    expected: None,
                    events: vec![E::KubeconfigDownloaded(downloaded)],
                }],
                created_id: None,
            })
        }
    }
}
