//! Request extractors: the signed-in session and admin (the shared ones — JSON bodies, client
//! address, correlation id — come from `kubegate_rest`).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use kubegate_rest::{ApiJson, ClientAddr, Correlation, bearer};

use super::AppState;
use super::error::ApiError;
pub use crate::domain::Session;

impl Session {
    /// Admins, or the user themselves.
    pub fn require_self_or_admin(&self, user_id: u64) -> Result<(), ApiError> {
        if self.is_admin() || self.user_id == user_id {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only an admin may do this for another user".into()))
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token =
            bearer(parts).ok_or_else(|| ApiError::Unauthorized("sign in first: no bearer token".into()))?;
        let token = token.to_string();
        let now = chrono::Utc::now().timestamp();
        let result = state.engine.read(move |s| s.session(&token, now)).await?;
        result.map_err(ApiError::Unauthorized)
    }
}

/// A session whose user is an admin.
pub struct Admin(pub Session);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        if !session.is_admin() {
            return Err(ApiError::Forbidden("this requires the admin role".into()));
        }
        Ok(Admin(session))
    }
}
