//! Request extractors: strict JSON bodies (unknown fields are errors; any content type, so that
//! `curl -d` works; messages never quote a value, which could be a secret in the wrong field),
//! the client's address and scheme as a trusted proxy reports them, the correlation id, and the
//! bearer token.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use kubegate_config::TrustedProxyArgs;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Largest JSON body accepted (a CA bundle plus a client certificate chain fit easily).
pub const MAX_BODY: usize = 256 * 1024;

/// A JSON body, refused with a clear 400 when it does not fit `T`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, MAX_BODY)));
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::BadRequest(format!("request body must be JSON of at most {MAX_BODY} bytes"))
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            ApiError::BadRequest(format!("invalid JSON body: {}", without_values(&e.to_string())))
        })
    }
}

/// serde quotes offending string values in double quotes (`invalid type: string "…"`); field and
/// variant names are in backticks. The value could be a token put in the wrong field, so
/// everything from the first to the last double quote goes.
pub fn without_values(message: &str) -> String {
    match (message.find('"'), message.rfind('"')) {
        (Some(first), Some(last)) if first <= last => {
            format!("{}[value not shown]{}", &message[..first], &message[last + 1..])
        }
        _ => message.to_string(),
    }
}

/// The bearer token of the `Authorization` header (never from the query string).
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A service state that knows which peers may speak for a client.
pub trait TrustedProxies {
    fn trusted_proxies(&self) -> &TrustedProxyArgs;
}

/// What the accept loop recorded about the connection.
pub fn conn_info(parts: &Parts) -> Result<kubegate_tls::ConnInfo, ApiError> {
    parts
        .extensions
        .get::<kubegate_tls::ConnInfo>()
        .copied()
        .ok_or_else(|| ApiError::Internal("connection info missing".into()))
}

/// The client's address: the connection's, or the one a trusted proxy forwarded.
pub struct ClientAddr(pub IpAddr);

impl<S: TrustedProxies + Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = conn_info(parts)?.remote.ip();
        if state.trusted_proxies().trusts(peer)
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

/// Proof that the request reached kubegate over TLS: on this listener, or through a trusted
/// proxy that says so with `X-Forwarded-Proto: https`. Refused with 403 (`message`) otherwise,
/// whatever the client claims.
pub struct Https;

/// Whether a request counts as HTTPS.
pub fn arrived_over_tls(info: &kubegate_tls::ConnInfo, trusted: bool, forwarded_proto: Option<&str>) -> bool {
    info.tls || (trusted && forwarded_proto.is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

impl Https {
    pub fn check<S: TrustedProxies>(parts: &Parts, state: &S, message: &str) -> Result<Https, ApiError> {
        let info = conn_info(parts)?;
        // One header only: several would mean someone upstream appended rather than replaced.
        let mut protos = parts.headers.get_all("x-forwarded-proto").iter();
        let proto = match (protos.next(), protos.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        };
        if arrived_over_tls(&info, state.trusted_proxies().trusts(info.remote.ip()), proto) {
            Ok(Https)
        } else {
            Err(ApiError::Forbidden(message.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_their_values() {
        assert_eq!(
            without_values("invalid type: string \"kg-secret\", expected u64 at line 1 column 20"),
            "invalid type: string [value not shown], expected u64 at line 1 column 20"
        );
        assert_eq!(
            without_values("invalid type: string \"a \\\"b\\\" c\", expected a boolean"),
            "invalid type: string [value not shown], expected a boolean"
        );
        assert_eq!(
            without_values("unknown field `colour`, expected one of `name`"),
            "unknown field `colour`, expected one of `name`"
        );
    }

    #[test]
    fn https_is_tls_or_a_trusted_proxy_saying_so() {
        let addr = "127.0.0.1:5000".parse().unwrap();
        let tls = kubegate_tls::ConnInfo { remote: addr, tls: true };
        let plain = kubegate_tls::ConnInfo { remote: addr, tls: false };
        assert!(arrived_over_tls(&tls, false, None));
        assert!(arrived_over_tls(&plain, true, Some("https")));
        assert!(arrived_over_tls(&plain, true, Some("HTTPS")));
        assert!(!arrived_over_tls(&plain, true, Some("http")));
        assert!(!arrived_over_tls(&plain, true, None));
        assert!(!arrived_over_tls(&plain, false, Some("https")), "an untrusted peer cannot claim TLS");
    }
}
