//! The admin listener (plain HTTP, meant for the cluster network or loopback only): `/healthz`
//! (the process runs), `/readyz` (every readiness check passes; the body lists them) and
//! `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Named readiness checks; the service is ready when every one is true.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<&'static str, (bool, String)>>>,
}

impl Readiness {
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Sets check `name` with a short human explanation.
    pub fn set(&self, name: &'static str, ok: bool, detail: impl Into<String>) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.insert(name, (ok, detail.into()));
        }
    }

    pub fn is_ready(&self) -> bool {
        self.checks.lock().map(|c| !c.is_empty() && c.values().all(|(ok, _)| *ok)).unwrap_or(false)
    }

    /// `{"ready": bool, "checks": {name: {"ok": bool, "detail": "…"}}}`
    pub fn report(&self) -> serde_json::Value {
        let checks = self.checks.lock().map(|c| c.clone()).unwrap_or_default();
        let ready = !checks.is_empty() && checks.values().all(|(ok, _)| *ok);
        let map: serde_json::Map<String, serde_json::Value> = checks
            .into_iter()
            .map(|(k, (ok, detail))| (k.to_string(), serde_json::json!({"ok": ok, "detail": detail})))
            .collect();
        serde_json::json!({"ready": ready, "checks": map})
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    prometheus: PrometheusHandle,
}

/// The admin router, to serve or to extend (a service may add debug routes).
pub fn admin_router(readiness: Readiness, prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { readiness, prometheus })
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let code = if s.readiness.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(s.readiness.report()))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.prometheus.render())
}

/// Serves the admin router on `listener` (plain HTTP) until `shutdown`.
pub async fn serve_admin(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let mut opts = kubegate_tls::ServeOptions::plain();
    opts.max_connections = 64;
    opts.grace = std::time::Duration::from_secs(1);
    kubegate_tls::serve_router(listener, router, opts, shutdown).await;
}
