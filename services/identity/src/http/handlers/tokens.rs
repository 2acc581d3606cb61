//! Kubeconfig tokens: list, revoke one, revoke all of a user's.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::origin;
use crate::domain::Command;
use crate::domain::state::TokenRecord;
use crate::http::extract::{Correlation, Session};
use crate::http::{ApiError, AppState};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    id: String,
    user_id: u64,
    username: String,
    environment_ids: Vec<u64>,
    issued_at: chrono::DateTime<chrono::Utc>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    revoked: bool,
    expired: bool,
}

fn view(t: &TokenRecord, now: chrono::DateTime<chrono::Utc>) -> TokenView {
    TokenView {
        id: t.token_id.clone(),
        user_id: t.user_id,
        username: t.username.clone(),
        environment_ids: t.environment_ids.clone(),
        issued_at: t.issued_at,
        expires_at: t.expires_at,
        revoked: t.revoked,
        expired: t.expires_at.map(|e| e <= now).unwrap_or(false),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Filter {
    user_id: Option<u64>,
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let user = match (session.is_admin(), filter.user_id) {
        (true, f) => f,
        (false, None) => Some(session.user_id),
        (false, Some(u)) if u == session.user_id => Some(u),
        (false, Some(_)) => {
            return Err(ApiError::Forbidden("only an admin may list another user's tokens".into()));
        }
    };
    let now = chrono::Utc::now();
    let mut tokens: Vec<TokenView> = state
        .engine
        .read(move |s| {
            s.tokens.values().filter(|t| user.is_none_or(|u| t.user_id == u)).map(|t| view(t, now)).collect()
        })
        .await?;
    tokens.sort_by(|a, b| b.issued_at.cmp(&a.issued_at).then_with(|| b.id.cmp(&a.id)));
    Ok(Json(tokens))
}

pub async fn revoke_one(
    State(state): State<AppState>,
    session: Session,
    Correlation(correlation): Correlation,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let wanted = id.clone();
    let owner = state.engine.read(move |s| s.tokens.get(&wanted).map(|t| t.user_id)).await?;
    let owner = owner.ok_or_else(|| ApiError::NotFound(format!("kubeconfig token {id} not found")))?;
    session.require_self_or_admin(owner)?;
    state.engine.execute(Command::RevokeToken { token_id: id }, origin(&session, correlation)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn revoke_user(
    State(state): State<AppState>,
    session: Session,
    Correlation(correlation): Correlation,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    session.require_self_or_admin(id)?;
    state.engine.execute(Command::RevokeUserTokens { user_id: id }, origin(&session, correlation)).await?;
    Ok(StatusCode::NO_CONTENT)
}
