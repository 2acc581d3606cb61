//! Request extractors: JSON bodies (strict: unknown fields are errors; any content type, so that
//! `curl -d` works; error messages never quote a value, which could be a credential), the
//! signed-in session, the client's address, the correlation id, and the HTTPS check.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use kubegate_identity::domain::Session;
pub use kubegate_rest::{ApiJson, ClientAddr, Correlation, Https, bearer};

use super::AppState;
use super::error::{ApiError, HTTPS_REQUIRED, IDENTITY_NOT_READY};
use crate::engine::Model;

/// Who `token` belongs to, in identity's view as `model` holds it (not trusted: no answer).
pub fn session_of(model: &Model, token: &SessionToken, now: i64) -> Result<Session, ApiError> {
    if !model.identity_health().is_ready() {
        return Err(ApiError::Unavailable(IDENTITY_NOT_READY.into()));
    }
    model.identity.state.session(&token.0, now).map_err(ApiError::Unauthorized)
}

/// The bearer token of a request, not yet checked: for a handler that checks it in the same
/// read of the model as the rest of its work (`Session::of`).
pub struct SessionToken(String);

impl<S: Send + Sync> FromRequestParts<S> for SessionToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        bearer(parts)
            .map(|t| SessionToken(t.to_string()))
            .ok_or_else(|| ApiError::Unauthorized("sign in first: no bearer token".into()))
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = SessionToken::from_request_parts(parts, state).await?;
        let now = chrono::Utc::now().timestamp();
        state.engine.read(move |m| session_of(m, &token, now)).await?
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

/// An environment id in the path: a positive integer, else a JSON 400.
pub struct EnvId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for EnvId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = || ApiError::BadRequest("environment ids are positive integers".into());
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await.map_err(|_| bad())?;
        raw.parse::<u64>().ok().filter(|id| *id > 0).map(EnvId).ok_or_else(bad)
    }
}

/// Proof that the request reached kubegate over TLS (see `kubegate_rest::Https`).
impl FromRequestParts<AppState> for Https {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Https::check(parts, state, HTTPS_REQUIRED)
    }
}
