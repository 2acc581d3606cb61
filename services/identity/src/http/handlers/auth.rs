//! `POST /api/auth`: sign in with user name and password, get a session token.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use kubegate_events::Actor;
use kubegate_events::identity::SignInFailure;
use serde::Deserialize;

use crate::crypto;
use crate::domain::Command;
use crate::engine::Origin;
use crate::http::extract::{ApiJson, ClientAddr, Correlation};
use crate::http::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    username: String,
    password: String,
}

pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    Correlation(correlation): Correlation,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let address = addr.to_string();
    let now = Instant::now();
    let anonymous = Origin {
        actor: Actor::Anonymous { address: Some(address.clone()) },
        correlation_id: correlation.clone(),
    };
    if let Err(retry_after) = state.throttle.check(&body.username, &address, now) {
        if state.throttle.should_record_refusal(&body.username, &address, now) {
            let _ = state
                .engine
                .execute(
                    Command::RecordSignInFailure {
                        username: body.username.clone(),
                        client_address: address.clone(),
                        reason: SignInFailure::Throttled,
                    },
                    anonymous,
                )
                .await;
        }
        return Err(ApiError::TooManyRequests {
            message: format!(
                "too many failed sign-ins; try again in {} seconds",
                retry_after.as_secs().max(1)
            ),
            retry_after,
        });
    }
    let wanted = body.username.clone();
    let found = state
        .engine
        .read(move |s| {
            s.user_by_name(&wanted).map(|u| (u.id, u.username.clone(), u.password.clone(), u.disabled))
        })
        .await?;
    let master = state.master.clone();
    let sealed = found.as_ref().map(|(_, _, p, _)| p.clone()).unwrap_or_else(|| (*state.decoy).clone());
    let password = body.password.clone();
    let ok = tokio::task::spawn_blocking(move || crypto::check_sealed_password(&master, &sealed, &password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (user_id, disabled) = match (&found, ok) {
        (Some((id, _, _, disabled)), true) => (*id, *disabled),
        _ => {
            state.throttle.record_failure(&body.username, &address, now);
            let _ = state
                .engine
                .execute(
                    Command::RecordSignInFailure {
                        username: body.username,
                        client_address: address,
                        reason: SignInFailure::BadCredentials,
                    },
                    anonymous,
                )
                .await;
            return Err(ApiError::Unauthorized("invalid username or password".into()));
        }
    };
    if disabled {
        let _ = state
            .engine
            .execute(
                Command::RecordSignInFailure {
                    username: body.username,
                    client_address: address,
                    reason: SignInFailure::Disabled,
                },
                anonymous,
            )
            .await;
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    state.throttle.clear_user(&body.username);
    let username = found.map(|(_, name, _, _)| name).unwrap_or_default();
    let expires_at =
        Utc::now() + chrono::Duration::from_std(state.session_ttl).unwrap_or(chrono::Duration::hours(8));
    let executed = state
        .engine
        .execute(
            Command::RecordSignIn {
                user_id,
                session_id: uuid::Uuid::now_v7().to_string(),
                client_address: address,
                expires_at,
            },
            Origin { actor: Actor::User { id: user_id, name: username }, correlation_id: correlation },
        )
        .await?;
    let jwt = executed.outcome.token.ok_or_else(|| ApiError::Internal("no session token minted".into()))?;
    Ok(Json(serde_json::json!({ "jwt": jwt })))
}
