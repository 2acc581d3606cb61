//! Users: create, list, read, change (role, password, disabled), delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kubegate_events::identity::GlobalRole;
use serde::{Deserialize, Serialize};

use super::origin;
use crate::crypto;
use crate::domain::decide::{validate_password, validate_username};
use crate::domain::state::{IdentityState, User};
use crate::domain::{Command, DomainError};
use crate::http::extract::{Admin, ApiJson, Correlation, Session};
use crate::http::{ApiError, AppState};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    id: u64,
    username: String,
    role: GlobalRole,
    disabled: bool,
    created_at: chrono::DateTime<chrono::Utc>,
    team_ids: Vec<u64>,
}

pub(crate) fn view(state: &IdentityState, u: &User) -> UserView {
    UserView {
        id: u.id,
        username: u.username.clone(),
        role: u.role,
        disabled: u.disabled,
        created_at: u.created_at,
        team_ids: state.teams_of(u.id).iter().map(|t| t.id).collect(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    #[serde(default = "default_role")]
    role: GlobalRole,
}

fn default_role() -> GlobalRole {
    GlobalRole::User
}

pub async fn create(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    validate_username(&body.username)?;
    validate_password(&body.password)?;
    let sealed = seal(&state, body.password).await?;
    let executed = state
        .engine
        .execute(
            Command::CreateUser { username: body.username.clone(), role: body.role, password: sealed },
            origin(&session, correlation),
        )
        .await?;
    let id = executed.outcome.created_id.ok_or_else(|| ApiError::Internal("no id allocated".into()))?;
    Ok((StatusCode::OK, Json(serde_json::json!({ "id": id, "username": body.username, "role": body.role }))))
}

async fn seal(state: &AppState, password: String) -> Result<kubegate_events::SealedSecret, ApiError> {
    let master = state.master.clone();
    tokio::task::spawn_blocking(move || crypto::seal_password(&master, &password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Json<Vec<UserView>>, ApiError> {
    let users = state
        .engine
        .read(move |s| {
            s.users
                .values()
                .filter(|u| session.is_admin() || u.id == session.user_id)
                .map(|u| view(s, u))
                .collect()
        })
        .await?;
    Ok(Json(users))
}

pub async fn me(State(state): State<AppState>, session: Session) -> Result<Json<UserView>, ApiError> {
    get_user(&state, session.user_id).await
}

pub async fn get_one(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<u64>,
) -> Result<Json<UserView>, ApiError> {
    session.require_self_or_admin(id)?;
    get_user(&state, id).await
}

async fn get_user(state: &AppState, id: u64) -> Result<Json<UserView>, ApiError> {
    state
        .engine
        .read(move |s| s.users.get(&id).map(|u| view(s, u)))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserChange {
    role: Option<GlobalRole>,
    password: Option<String>,
    disabled: Option<bool>,
    /// Required when users change their own password.
    current_password: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Correlation(correlation): Correlation,
    Path(id): Path<u64>,
    ApiJson(body): ApiJson<UserChange>,
) -> Result<Json<UserView>, ApiError> {
    session.require_self_or_admin(id)?;
    if !session.is_admin() && (body.role.is_some() || body.disabled.is_some()) {
        return Err(ApiError::Forbidden("only an admin may change roles or disable users".into()));
    }
    if body.role.is_none() && body.password.is_none() && body.disabled.is_none() {
        return Err(ApiError::BadRequest("nothing to change: give role, password or disabled".into()));
    }
    // Everything is checked before anything is changed.
    if let Some(p) = &body.password {
        validate_password(p)?;
    }
    let target = state.engine.read(move |s| s.users.get(&id).cloned()).await?;
    let target = target.ok_or_else(|| ApiError::NotFound(format!("user {id} not found")))?;
    if !session.is_admin() {
        let current = body.current_password.clone().ok_or_else(|| {
            ApiError::BadRequest("currentPassword is required to change your password".into())
        })?;
        let master = state.master.clone();
        let sealed = target.password.clone();
        let ok =
            tokio::task::spawn_blocking(move || crypto::check_sealed_password(&master, &sealed, &current))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        if !ok {
            return Err(ApiError::Forbidden("current password is wrong".into()));
        }
    }
    if let Some(role) = body.role {
        state
            .engine
            .execute(Command::ChangeRole { user_id: id, role }, origin(&session, correlation.clone()))
            .await?;
    }
    if let Some(disabled) = body.disabled {
        let command =
            if disabled { Command::DisableUser { user_id: id } } else { Command::EnableUser { user_id: id } };
        state.engine.execute(command, origin(&session, correlation.clone())).await?;
    }
    if let Some(password) = body.password {
        let sealed = seal(&state, password).await?;
        state
            .engine
            .execute(Command::ChangePassword { user_id: id, password: sealed }, origin(&session, correlation))
            .await?;
    }
    get_user(&state, id).await
}

pub async fn remove(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    if id == session.user_id {
        return Err(DomainError::Conflict("you cannot delete yourself".into()).into());
    }
    state.engine.execute(Command::DeleteUser { user_id: id }, origin(&session, correlation)).await?;
    Ok(StatusCode::NO_CONTENT)
}
