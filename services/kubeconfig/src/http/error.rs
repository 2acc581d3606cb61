//! The one place the kubeconfig service's errors become HTTP answers: JSON `{"message": …}` with
//! the status that fits. Messages never contain a credential or a token.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kubegate_bus::RpcError;

use crate::domain::DomainError;
use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// What a download says when the request did not arrive over TLS.
pub const HTTPS_REQUIRED: &str = "kubeconfig download requires HTTPS";
/// What every route that needs identity's view says while it is not trusted.
pub const IDENTITY_NOT_READY: &str =
    "kubegate is still loading users from the identity service; try again in a moment";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let ApiError::Internal(m) = &self {
            tracing::error!(error = %m, "internal error");
        }
        let mut response = (status, Json(serde_json::json!({ "message": self.to_string() }))).into_response();
        if let ApiError::Unauthorized(_) = &self {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::Unavailable(_) = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) | DomainError::UnknownIds(m) => ApiError::BadRequest(m),
            DomainError::Forbidden(m) => ApiError::Forbidden(m),
            DomainError::NotFound(m) => ApiError::NotFound(m),
            DomainError::Conflict(m) => ApiError::Conflict(m),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Domain(d) => d.into(),
            EngineError::Unavailable(m) => ApiError::Unavailable(m),
            EngineError::Contended => ApiError::Conflict(e.to_string()),
            EngineError::Stopped => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// The token request to identity failed: unreachable or slow is 503 (try again); a refusal keeps
/// identity's status and message (they never carry a token).
impl From<RpcError> for ApiError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::NoResponders(_) | RpcError::Timeout { .. } | RpcError::Transport { .. } => {
                tracing::warn!(error = %e, "token request to identity failed");
                ApiError::Unavailable("the identity service did not answer; try again".into())
            }
            RpcError::BadReply { .. } => {
                ApiError::Internal(format!("the identity service's answer was not understood: {e}"))
            }
            RpcError::Remote(f) => match f.status {
                400 => ApiError::BadRequest(f.message),
                401 => ApiError::Unauthorized(f.message),
                403 => ApiError::Forbidden(f.message),
                404 => ApiError::NotFound(f.message),
                409 => ApiError::Conflict(f.message),
                _ => ApiError::Unavailable(format!(
                    "the identity service could not issue a token: {}",
                    f.message
                )),
            },
        }
    }
}
