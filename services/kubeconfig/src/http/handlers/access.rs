//! An environment's access policy: who (user or team) holds which role, and in which namespaces.
//! `PUT` replaces the whole policy; `GET` returns it in the same shape, so it round-trips.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use kubegate_events::access::EnvironmentRole;
use kubegate_events::environments::PolicyEntry;
use serde::{Deserialize, Serialize};

use super::origin;
use crate::domain::{Command, DomainError};
use crate::engine::EngineError;
use crate::http::extract::{Admin, ApiJson, Correlation, EnvId};
use crate::http::{ApiError, AppState};

/// How long a policy naming unknown ids waits for identity's events before it is refused.
const IDENTITY_LAG: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserEntry {
    user_id: u64,
    role: EnvironmentRole,
    #[serde(default)]
    namespaces: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamEntry {
    team_id: u64,
    role: EnvironmentRole,
    #[serde(default)]
    namespaces: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    users: Vec<UserEntry>,
    teams: Vec<TeamEntry>,
}

async fn current(state: &AppState, id: u64) -> Result<Policy, ApiError> {
    state
        .engine
        .read(move |m| {
            let e = m
                .environments
                .get(id)
                .ok_or_else(|| ApiError::NotFound(format!("environment {id} not found")))?;
            let identity = &m.identity.state;
            // Entries of users or teams deleted since give nothing (ids are never reused): not shown.
            Ok(Policy {
                users: e
                    .policy
                    .users
                    .iter()
                    .filter(|p| identity.users.contains_key(&p.id))
                    .map(|p| UserEntry { user_id: p.id, role: p.role, namespaces: p.namespaces.clone() })
                    .collect(),
                teams: e
                    .policy
                    .teams
                    .iter()
                    .filter(|p| identity.teams.contains_key(&p.id))
                    .map(|p| TeamEntry { team_id: p.id, role: p.role, namespaces: p.namespaces.clone() })
                    .collect(),
            })
        })
        .await?
}

pub async fn get_policy(
    State(state): State<AppState>,
    _: Admin,
    EnvId(id): EnvId,
) -> Result<Json<Policy>, ApiError> {
    current(&state, id).await.map(Json)
}

pub async fn put_policy(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    EnvId(id): EnvId,
    ApiJson(body): ApiJson<Policy>,
) -> Result<Json<Policy>, ApiError> {
    let command = Command::SetAccessPolicy {
        environment_id: id,
        users: body
            .users
            .into_iter()
            .map(|u| PolicyEntry { id: u.user_id, role: u.role, namespaces: u.namespaces })
            .collect(),
        teams: body
            .teams
            .into_iter()
            .map(|t| PolicyEntry { id: t.team_id, role: t.role, namespaces: t.namespaces })
            .collect(),
    };
    // A user or team created a moment ago may not have reached this service yet: when ids are
    // unknown, wait a little for identity's next events before refusing.
    let mut changes = state.engine.identity_changes();
    let deadline = Instant::now() + IDENTITY_LAG;
    loop {
        changes.mark_unchanged();
        match state.engine.execute(command.clone(), origin(&session, correlation.clone())).await {
            Err(EngineError::Domain(DomainError::UnknownIds(message))) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let moved = tokio::time::timeout(left, changes.changed()).await;
                if !matches!(moved, Ok(Ok(()))) {
                    return Err(ApiError::BadRequest(message));
                }
            }
            result => {
                result?;
                break;
            }
        }
    }
    current(&state, id).await.map(Json)
}
