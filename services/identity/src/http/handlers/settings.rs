//! Settings: the kubeconfig expiry.

use axum::Json;
use axum::extract::State;
use kubegate_events::identity::KubeconfigExpiry;
use serde::Deserialize;

use super::origin;
use crate::domain::Command;
use crate::http::extract::{Admin, ApiJson, Correlation, Session};
use crate::http::{ApiError, AppState};

fn settings_json(expiry: KubeconfigExpiry) -> serde_json::Value {
    serde_json::json!({
        "kubeconfigExpiry": expiry.as_str(),
        "kubeconfigExpiryDescription": expiry.describe(),
    })
}

pub async fn get_settings(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let expiry = state.engine.read(|s| s.expiry).await?;
    Ok(Json(settings_json(expiry)))
}

/// What any signed-in user may know: the expiry a kubeconfig downloaded now would get.
pub async fn public(State(state): State<AppState>, _: Session) -> Result<Json<serde_json::Value>, ApiError> {
    let expiry = state.engine.read(|s| s.expiry).await?;
    Ok(Json(settings_json(expiry)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsChange {
    kubeconfig_expiry: String,
}

pub async fn put_settings(
    State(state): State<AppState>,
    Admin(session): Admin,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<SettingsChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let expiry = KubeconfigExpiry::parse(&body.kubeconfig_expiry).ok_or_else(|| {
        let allowed: Vec<&str> = KubeconfigExpiry::ALL.iter().map(|e| e.as_str()).collect();
        ApiError::BadRequest(format!(
            "kubeconfigExpiry {:?} is not allowed; use one of {}",
            body.kubeconfig_expiry,
            allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
        ))
    })?;
    state.engine.execute(Command::SetKubeconfigExpiry { expiry }, origin(&session, correlation)).await?;
    Ok(Json(settings_json(expiry)))
}
