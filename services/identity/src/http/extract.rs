//! Request extractors: JSON bodies (strict: unknown fields are errors; any content type, so that
//! `curl -d` works), the signed-in session, and the client's address.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use kubegate_events::identity::GlobalRole;
use kubegate_token::Scope;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// Largest JSON body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON body, refused with a clear 400 when it does not fit `T`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let req = req.map(|b| axum::body::Body::new(http_body_util_limited(b)));
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::BadRequest(format!("request body must be JSON of at most {MAX_BODY} bytes"))
        })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

fn http_body_util_limited(body: axum::body::Body) -> axum::body::Body {
    axum::body::Body::new(http_body_util::Limited::new(body, MAX_BODY))
}

/// The signed-in user behind a session token.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: u64,
    pub username: String,
    pub role: GlobalRole,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == GlobalRole::Admin
    }

    pub fn actor(&self) -> kubegate_events::Actor {
        kubegate_events::Actor::User { id: self.user_id, name: self.username.clone() }
    }

    /// Admins, or the user themselves.
    pub fn require_self_or_admin(&self, user_id: u64) -> Result<(), ApiError> {
        if self.is_admin() || self.user_id == user_id {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only an admin may do this for another user".into()))
        }
    }
}

/// The bearer token of the `Authorization` header (never from the query string).
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token =
            bearer(parts).ok_or_else(|| ApiError::Unauthorized("sign in first: no bearer token".into()))?;
        let token = token.to_string();
        let now = chrono::Utc::now().timestamp();
        let result = state
            .engine
            .read(move |s| {
                s.authenticate(&token, Scope::Session, now).map(|(user, _)| Session {
                    user_id: user.id,
                    username: user.username.clone(),
                    role: user.role,
                })
            })
            .await?;
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

/// The client's address: the connection's, or the one a trusted proxy forwarded.
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let info = parts
            .extensions
            .get::<kubegate_tls::ConnInfo>()
            .copied()
            .ok_or_else(|| ApiError::Internal("connection info missing".into()))?;
        let peer = info.remote.ip();
        if state.trusted.trusts(peer)
            && let Some(forwarded) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Ok(ClientAddr(forwarded));
        }
        Ok(ClientAddr(peer))
    }
}

/// The request's correlation id (`X-Request-Id` from the proxy), or a new one.
pub struct Correlation(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Correlation {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        Ok(Correlation(id))
    }
}
