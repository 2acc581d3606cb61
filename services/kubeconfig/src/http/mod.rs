//! The kubeconfig service's REST API. Handlers only parse, seal, call the engine and shape the
//! answer; every rule lives in the domain.

pub mod download;
mod error;
mod extract;
mod handlers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use kubegate_bus::Bus;
use kubegate_seal::FleetPublicKey;

pub use error::{ApiError, HTTPS_REQUIRED};

use crate::engine::Engine;
use crate::kubeconfig_file::PublicEndpoint;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub bus: Bus,
    /// What upstream credentials are sealed to.
    pub fleet: FleetPublicKey,
    /// The public origin and its CA, written into every kubeconfig.
    pub endpoint: Arc<PublicEndpoint>,
    pub trusted: Arc<kubegate_config::TrustedProxyArgs>,
    /// How long a download waits for identity to issue the token.
    pub token_timeout: Duration,
}

/// Every route the service serves: (path, methods, handler). The router is built from this list
/// and the OpenAPI test compares it with `schemas/openapi.yaml`.
pub fn routes() -> kubegate_rest::Routes<AppState> {
    use handlers::*;
    vec![
        ("/api/endpoints", &["GET", "POST"], get(endpoints::list).post(endpoints::create)),
        (
            "/api/endpoints/{id}",
            &["GET", "PUT", "DELETE"],
            get(endpoints::get_one).put(endpoints::update).delete(endpoints::remove),
        ),
        ("/api/endpoints/{id}/access", &["GET", "PUT"], get(access::get_policy).put(access::put_policy)),
        ("/api/kubernetes/config", &["GET"], get(kubeconfig::download)),
        ("/api/audit", &["GET"], get(audit::list)),
    ]
}

/// The REST routes, and the web page (`crate::web`) for everything outside `/api`.
pub fn router(state: AppState) -> Router {
    crate::web::install(kubegate_rest::router(routes(), state))
}

impl kubegate_rest::TrustedProxies for AppState {
    fn trusted_proxies(&self) -> &kubegate_config::TrustedProxyArgs {
        &self.trusted
    }
}
