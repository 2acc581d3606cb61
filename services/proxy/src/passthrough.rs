//! The rest of the public origin: every other `/api/*` route and the web page go to identity or
//! kubeconfig by a static prefix table, over TLS, with `X-Forwarded-Proto: https` and the
//! client's address set by the proxy (whatever the client sent in `X-Forwarded-*` is dropped).

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{BoxError, CountingBody, ProxyBody};
use crate::status::rest_error;
use crate::upstream::HttpClient;

/// Which service serves a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Identity,
    Kubeconfig,
}

const IDENTITY_PREFIXES: &[&str] = &[
    "/api/auth",
    "/api/users",
    "/api/teams",
    "/api/settings",
    "/api/kubeconfig-tokens",
    "/api/signing-keys",
];
const KUBECONFIG_PREFIXES: &[&str] = &["/api/endpoints", "/api/kubernetes", "/api/audit"];

fn has_prefix(path: &str, prefix: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).map(|rest| rest.starts_with('/')).unwrap_or(false)
}

/// The service for `path`, or `None` for an `/api` path nobody serves.
pub fn route(path: &str) -> Option<Target> {
    if IDENTITY_PREFIXES.iter().any(|p| has_prefix(path, p)) {
        return Some(Target::Identity);
    }
    if KUBECONFIG_PREFIXES.iter().any(|p| has_prefix(path, p)) {
        return Some(Target::Kubeconfig);
    }
    if has_prefix(path, "/api") {
        return None;
    }
    // The web page and its assets.
    Some(Target::Kubeconfig)
}

pub struct Services {
    pub identity: String,
    pub kubeconfig: String,
    pub client: HttpClient,
    pub max_body_bytes: usize,
}

const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "forwarded",
    "x-real-ip",
];

fn forward_headers(client: &HeaderMap, addr: SocketAddr, request_id: &str) -> HeaderMap {
    let named: Vec<String> = client
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(client.len() + 3);
    for (name, value) in client {
        let n = name.as_str();
        if DROPPED.contains(&n)
            || n.starts_with("x-forwarded-")
            || n.starts_with("proxy-")
            || named.iter().any(|t| t == n)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("https"));
    if let Ok(v) = HeaderValue::from_str(&addr.ip().to_string()) {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        out.insert(HeaderName::from_static("x-request-id"), v);
    }
    out
}

impl Services {
    pub async fn forward(
        &self,
        target: Target,
        req: Request<Incoming>,
        addr: SocketAddr,
        request_id: &str,
    ) -> Response<ProxyBody> {
        let base = match target {
            Target::Identity => &self.identity,
            Target::Kubeconfig => &self.kubeconfig,
        };
        let path_and_query = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let uri = match format!("{}{}", base.trim_end_matches('/'), path_and_query).parse::<http::Uri>() {
            Ok(u) => u,
            Err(_) => return rest_error(StatusCode::BAD_REQUEST, "invalid request path"),
        };
        let mut headers = forward_headers(req.headers(), addr, request_id);
        if kubegate_telemetry::tracing_enabled() {
            kubegate_telemetry::propagation::inject_http(&mut headers);
        }
        let (parts, body) = req.into_parts();
        let counted = CountingBody::new(body, Default::default());
        let body =
            http_body_util::Limited::new(counted, self.max_body_bytes).map_err(|e| -> BoxError { e }).boxed();
        let mut upstream = Request::builder().method(parts.method).uri(uri);
        if let Some(h) = upstream.headers_mut() {
            *h = headers;
        }
        let Ok(upstream) = upstream.body(body) else {
            return rest_error(StatusCode::BAD_REQUEST, "invalid request");
        };
        let name = match target {
            Target::Identity => "identity",
            Target::Kubeconfig => "kubeconfig",
        };
        match tokio::time::timeout(Duration::from_secs(60), self.client.request(upstream)).await {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                crate::headers::strip_response_hop_by_hop(parts.status, &mut parts.headers);
                // The correlation id of every event this call caused (`kubegate audit --correlation`).
                if let Ok(v) = HeaderValue::from_str(request_id) {
                    parts.headers.insert(HeaderName::from_static("x-kubegate-request-id"), v);
                }
                Response::from_parts(parts, ProxyBody::stream(body))
            }
            Ok(Err(e)) => {
                tracing::warn!(service = name, error = %e, "service unreachable");
                rest_error(
                    StatusCode::BAD_GATEWAY,
                    &format!("the {name} service is unreachable; try again shortly"),
                )
            }
            Err(_) => {
                rest_error(StatusCode::GATEWAY_TIMEOUT, &format!("the {name} service did not answer in time"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_table() {
        for (path, target) in [
            ("/api/auth", Some(Target::Identity)),
            ("/api/users/3", Some(Target::Identity)),
            ("/api/settings/public", Some(Target::Identity)),
            ("/api/kubeconfig-tokens/abc", Some(Target::Identity)),
            ("/api/endpoints", Some(Target::Kubeconfig)),
            ("/api/endpoints/2/access", Some(Target::Kubeconfig)),
            ("/api/kubernetes/config", Some(Target::Kubeconfig)),
            ("/", Some(Target::Kubeconfig)),
            ("/assets/app.js", Some(Target::Kubeconfig)),
            ("/api/usersx", None),
            ("/api", None),
            ("/api/nothing", None),
        ] {
            assert_eq!(route(path), target, "{path}");
        }
    }

    #[test]
    fn client_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert("authorization", HeaderValue::from_static("Bearer s"));
        h.insert("connection", HeaderValue::from_static("x-keep"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let out = forward_headers(&h, "127.0.0.9:5000".parse().unwrap_or_else(|_| unreachable!()), "r1");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-forwarded-for"], "127.0.0.9");
        assert_eq!(out["x-request-id"], "r1");
        assert_eq!(out["authorization"], "Bearer s");
        assert!(
            out.get("forwarded").is_none() && out.get("x-keep").is_none() && out.get("connection").is_none()
        );
        assert_eq!(out.get_all("x-forwarded-for").iter().count(), 1);
    }
}
