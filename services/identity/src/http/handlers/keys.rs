//! Signing keys: list (public parts), rotate, retire.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::origin;
use crate::domain::Command;
use crate::http::extract::{Admin, Correlation};
use crate::http::{ApiError, AppState};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    kid: String,
    public_key: String,
    /// Signs new tokens now.
    active: bool,
    /// Newer than the active key: published, and signing once it has warmed up.
    pending: bool,
    retired: bool,
    added_at: chrono::DateTime<chrono::Utc>,
}

pub async fn list(State(state): State<AppState>, _: Admin) -> Result<Json<Vec<KeyView>>, ApiError> {
    let keys = state
        .engine
        .read(|s| {
            let active = s.active_key(chrono::Utc::now()).map(|k| (k.kid.clone(), k.added_at));
            s.keys
                .iter()
                .map(|k| KeyView {
                    kid: k.kid.clone(),
                    public_key: k.public_key.clone(),
                    active: active.as_ref().is_some_and(|(kid, _)| *kid == k.kid),
                    pending: !k.retired && active.as_ref().is_some_and(|(_, at)| k.added_at > *at),
                    retired: k.retired,
                    added_at: k.added_at,
                })
                .collect()
        })
        .await?;
    Ok(Json(keys))
}

pub async fn rotate(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
) -> Result<Json<serde_json::Value>, ApiError> {
    let command =
        crate::new_signing_key_command(&state.master).map_err(|e| ApiError::Internal(e.to_string()))?;
    let kid = match &command {
        Command::AddSigningKey { kid, .. } => kid.clone(),
        _ => String::new(),
    };
    let executed = state.engine.execute(command, origin(&session, correlation)).await?;
    // It signs once verifiers have had time to learn it (while older keys stay in force); the
    // stored event's time is the key's `added_at`.
    let signs_from = executed.stored.first().map(|e| e.occurred_at + crate::domain::state::KEY_WARM_UP);
    Ok(Json(serde_json::json!({ "kid": kid, "signsFrom": signs_from })))
}

pub async fn retire(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.execute(Command::RetireSigningKey { kid }, origin(&session, correlation)).await?;
    Ok(StatusCode::NO_CONTENT)
}
