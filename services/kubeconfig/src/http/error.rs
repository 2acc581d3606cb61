//! The one place the kubeconfig service's errors become HTTP answers: JSON `{"message": …}` with
//! the status that fits. Messages never contain a credential or a token.

use kubegate_bus::RpcError;
pub use kubegate_rest::ApiError;

use crate::domain::DomainError;

/// What a download says when the request did not arrive over TLS.
pub const HTTPS_REQUIRED: &str = "kubeconfig download requires HTTPS";
/// What every route that needs identity's view says while it is not trusted.
pub const IDENTITY_NOT_READY: &str =
    "kubegate is still loading users from the identity service; try again in a moment";

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

/// The token request to identity failed: unreachable or slow is 503 (try again); a refusal keeps
/// identity's status and message (they never carry a token).
pub fn token_request_failed(e: RpcError) -> ApiError {
    {
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
