//! The one place the proxy path turns errors into answers: Kubernetes `Status` objects, so
//! kubectl prints them well ("Error from server (Forbidden): …").

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::ProxyBody;

/// Why the proxy answers itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("{0}")]
    Internal(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Kubernetes `reason` for this status.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) | Refusal::HeadersTooLarge(_) => "BadRequest",
            Refusal::Unauthorized(_) => "Unauthorized",
            Refusal::Forbidden(_) => "Forbidden",
            Refusal::NotFound(_) => "NotFound",
            Refusal::MethodNotAllowed(_) => "MethodNotAllowed",
            Refusal::TooManyRequests(_) => "TooManyRequests",
            Refusal::BadGateway(_) | Refusal::Internal(_) => "InternalError",
            Refusal::Unavailable(_) => "ServiceUnavailable",
            Refusal::GatewayTimeout(_) => "Timeout",
        }
    }

    /// The `Status` document.
    pub fn body(&self) -> Bytes {
        let status = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.status().as_u16(),
        });
        Bytes::from(serde_json::to_vec(&status).unwrap_or_default())
    }

    /// The whole answer. Every refusal closes nothing by itself; callers that must not let the
    /// client go on (a failed upgrade) add `Connection: close`.
    pub fn response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(ProxyBody::full(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, Refusal::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"kubegate\""));
        }
        if matches!(self, Refusal::TooManyRequests(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// JSON `{"message": …}` for the REST side of the origin (routes not served by a service).
pub fn rest_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::to_vec(&serde_json::json!({ "message": message })).unwrap_or_default();
    let mut response = Response::new(ProxyBody::full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
