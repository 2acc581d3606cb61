//! What kubegate's REST services (identity, kubeconfig) share: the JSON error answer, strict
//! JSON bodies, the client's address and scheme behind a trusted proxy, the correlation id, the
//! bearer token, and routers built from one route table (which the OpenAPI tests also read).

mod error;
mod extract;

use axum::Router;
use axum::routing::MethodRouter;

pub use error::ApiError;
pub use extract::{
    ApiJson, ClientAddr, Correlation, Https, MAX_BODY, TrustedProxies, arrived_over_tls, bearer, conn_info,
    without_values,
};

/// A service's routes: (path, methods, handler).
pub type Routes<S> = Vec<(&'static str, &'static [&'static str], MethodRouter<S>)>;

/// A router serving exactly `routes`, answering JSON errors for everything else.
pub fn router<S: Clone + Send + Sync + 'static>(routes: Routes<S>, state: S) -> Router {
    let mut router = Router::new();
    for (path, _, handler) in routes {
        router = router.route(path, handler);
    }
    router
        .layer(axum::middleware::from_fn(trace_request))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this route".into())
        })
        .with_state(state)
}

/// `(path, METHOD)` for every route, for comparison with the OpenAPI document.
pub fn operations<S>(routes: &Routes<S>) -> std::collections::BTreeSet<(String, String)> {
    routes
        .iter()
        .flat_map(|(path, methods, _)| methods.iter().map(move |m| (path.to_string(), m.to_string())))
        .collect()
}

/// Runs the request in a span that continues the caller's trace (when traces are exported).
async fn trace_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    match kubegate_telemetry::propagation::request_span(
        "rest",
        req.method().as_str(),
        req.uri().path(),
        req.headers(),
    ) {
        Some(span) => next.run(req).instrument(span).await,
        None => next.run(req).await,
    }
}
