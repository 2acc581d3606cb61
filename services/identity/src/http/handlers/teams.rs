//! Teams and their members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::origin;
use crate::domain::Command;
use crate::domain::state::Team;
use crate::http::extract::{Admin, ApiJson, Correlation, Session};
use crate::http::{ApiError, AppState};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    id: u64,
    name: String,
    member_ids: Vec<u64>,
}

fn view(t: &Team) -> TeamView {
    TeamView { id: t.id, name: t.name.clone(), member_ids: t.members.iter().copied().collect() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamName {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Member {
    user_id: u64,
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Json<Vec<TeamView>>, ApiError> {
    let teams = state
        .engine
        .read(move |s| {
            s.teams
                .values()
                .filter(|t| session.is_admin() || t.members.contains(&session.user_id))
                .map(view)
                .collect()
        })
        .await?;
    Ok(Json(teams))
}

pub async fn get_one(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<u64>,
) -> Result<Json<TeamView>, ApiError> {
    let team = state.engine.read(move |s| s.teams.get(&id).map(view)).await?;
    match team {
        Some(t) if session.is_admin() || t.member_ids.contains(&session.user_id) => Ok(Json(t)),
        Some(_) => Err(ApiError::Forbidden(format!("you are not a member of team {id}"))),
        None => Err(ApiError::NotFound(format!("team {id} not found"))),
    }
}

pub async fn create(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<TeamName>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let executed = state
        .engine
        .execute(Command::CreateTeam { name: body.name.clone() }, origin(&session, correlation))
        .await?;
    let id = executed.outcome.created_id.ok_or_else(|| ApiError::Internal("no id allocated".into()))?;
    Ok(Json(serde_json::json!({ "id": id, "name": body.name })))
}

pub async fn rename(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    Path(id): Path<u64>,
    ApiJson(body): ApiJson<TeamName>,
) -> Result<Json<TeamView>, ApiError> {
    state
        .engine
        .execute(Command::RenameTeam { team_id: id, name: body.name }, origin(&session, correlation))
        .await?;
    get_one(State(state), session, Path(id)).await
}

pub async fn remove(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    state.engine.execute(Command::DeleteTeam { team_id: id }, origin(&session, correlation)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_member(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    Path(id): Path<u64>,
    ApiJson(body): ApiJson<Member>,
) -> Result<Json<TeamView>, ApiError> {
    state
        .engine
        .execute(Command::AddTeamMember { team_id: id, user_id: body.user_id }, origin(&session, correlation))
        .await?;
    get_one(State(state), session, Path(id)).await
}

pub async fn remove_member(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    Path((id, user_id)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .execute(Command::RemoveTeamMember { team_id: id, user_id }, origin(&session, correlation))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
