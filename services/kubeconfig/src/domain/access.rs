//! Who reaches which environment, and which environments go into a download. Pure functions of
//! the service's state and the projection of identity's events.

use kubegate_events::access::{EnvironmentRole, Grant};
use kubegate_events::identity::GlobalRole;
use kubegate_identity::domain::IdentityState;

use super::decide::DomainError;
use super::state::{Environment, EnvironmentsState};

/// What `user_id` holds in `environment`: global admins are environment-admin everywhere;
/// everyone else gets what the environment's policy gives them, directly or through a team (the
/// most permissive wins). Unknown or disabled users hold nothing.
pub fn grant_for(identity: &IdentityState, user_id: u64, environment: &Environment) -> Option<Grant> {
    let user = identity.users.get(&user_id)?;
    if user.disabled {
        return None;
    }
    if user.role == GlobalRole::Admin {
        return Some(Grant { role: EnvironmentRole::EnvironmentAdmin, namespaces: Vec::new() });
    }
    let teams: Vec<u64> = identity.teams_of(user_id).iter().map(|t| t.id).collect();
    environment.policy.grant_for(user_id, &teams)
}

/// Every environment `user_id` may reach, by id, with their grant.
pub fn reachable<'a>(
    state: &'a EnvironmentsState,
    identity: &IdentityState,
    user_id: u64,
) -> Vec<(&'a Environment, Grant)> {
    state.environments.values().filter_map(|e| grant_for(identity, user_id, e).map(|g| (e, g))).collect()
}

/// The namespace a context opens in: the first granted one (sorted) for namespace-scoped roles.
pub fn default_namespace(grant: &Grant) -> Option<String> {
    if grant.role.is_namespace_scoped() { grant.namespaces.first().cloned() } else { None }
}

/// Which environments a download asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every environment the user may reach.
    All,
    /// These, in this order (the first becomes the current context).
    Only(Vec<u64>),
    /// Every reachable environment but these.
    Except(Vec<u64>),
}

/// One environment as it goes into a kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub id: u64,
    pub name: String,
    pub namespace: Option<String>,
}

fn ids_text(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

fn plural(ids: &[u64]) -> &'static str {
    if ids.len() == 1 { "environment" } else { "environments" }
}

/// The environments of a download, in kubeconfig order. Unknown ids (asked for or excluded) are
/// 404 naming them; ids the user may not reach are 403 naming them; an empty result is 400.
pub fn choose(
    state: &EnvironmentsState,
    identity: &IdentityState,
    user_id: u64,
    selection: &Selection,
) -> Result<Vec<Chosen>, DomainError> {
    let named = |ids: &[u64]| -> Result<(), DomainError> {
        let unknown: Vec<u64> = ids.iter().copied().filter(|id| state.get(*id).is_none()).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(DomainError::NotFound(format!("{} {} not found", plural(&unknown), ids_text(&unknown))))
        }
    };
    let chosen = |e: &Environment, g: &Grant| Chosen {
        id: e.id,
        name: e.name.clone(),
        namespace: default_namespace(g),
    };
    let out: Vec<Chosen> = match selection {
        Selection::All => reachable(state, identity, user_id).iter().map(|(e, g)| chosen(e, g)).collect(),
        Selection::Only(ids) => {
            named(ids)?;
            let mut out = Vec::with_capacity(ids.len());
            let mut refused = Vec::new();
            for id in ids {
                if out.iter().any(|c: &Chosen| c.id == *id) {
                    continue;
                }
                let Some(environment) = state.get(*id) else { continue };
                match grant_for(identity, user_id, environment) {
                    Some(g) => out.push(chosen(environment, &g)),
                    None if !refused.contains(id) => refused.push(*id),
                    None => {}
                }
            }
            if !refused.is_empty() {
                return Err(DomainError::Forbidden(format!(
                    "you have no access to {} {}",
                    plural(&refused),
                    ids_text(&refused)
                )));
            }
            out
        }
        Selection::Except(excluded) => {
            named(excluded)?;
            reachable(state, identity, user_id)
                .iter()
                .filter(|(e, _)| !excluded.contains(&e.id))
                .map(|(e, g)| chosen(e, g))
                .collect()
        }
    };
    if out.is_empty() {
        let message = match selection {
            Selection::All => "you have access to no environment yet; ask an admin to grant you one",
            _ => "no environment left to put in the kubeconfig",
        };
        return Err(DomainError::Invalid(message.into()));
    }
    Ok(out)
}
