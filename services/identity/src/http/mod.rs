//! Identity's REST API. Handlers only parse, call the engine, and shape the answer; every rule
//! lives in the domain.

mod error;
mod extract;
mod handlers;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use kubegate_events::SealedSecret;

pub use error::ApiError;

use crate::crypto::MasterKey;
use crate::engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub master: MasterKey,
    pub session_ttl: Duration,
    pub throttle: Arc<throttle::Throttle>,
    pub trusted: Arc<kubegate_config::TrustedProxyArgs>,
    /// A sealed hash of a random password: checked when a user name is unknown, so a failed
    /// sign-in takes as long whether or not the user exists.
    pub decoy: Arc<SealedSecret>,
}

/// Every route identity serves: (path, methods, handler). The router is built from this list and
/// the OpenAPI test compares it with `schemas/openapi.yaml`.
pub fn routes() -> kubegate_rest::Routes<AppState> {
    use handlers::*;
    vec![
        ("/api/auth", &["POST"], post(auth::sign_in)),
        ("/api/users", &["GET", "POST"], get(users::list).post(users::create)),
        ("/api/users/me", &["GET"], get(users::me)),
        (
            "/api/users/{id}",
            &["GET", "PUT", "DELETE"],
            get(users::get_one).put(users::update).delete(users::remove),
        ),
        ("/api/users/{id}/kubeconfig-tokens/revoke", &["POST"], post(tokens::revoke_user)),
        ("/api/teams", &["GET", "POST"], get(teams::list).post(teams::create)),
        (
            "/api/teams/{id}",
            &["GET", "PUT", "DELETE"],
            get(teams::get_one).put(teams::rename).delete(teams::remove),
        ),
        ("/api/teams/{id}/members", &["POST"], post(teams::add_member)),
        ("/api/teams/{id}/members/{user_id}", &["DELETE"], delete(teams::remove_member)),
        ("/api/settings", &["GET", "PUT"], get(settings::get_settings).put(settings::put_settings)),
        ("/api/settings/public", &["GET"], get(settings::public)),
        ("/api/kubeconfig-tokens", &["GET"], get(tokens::list)),
        ("/api/kubeconfig-tokens/{id}", &["DELETE"], delete(tokens::revoke_one)),
        ("/api/signing-keys", &["GET"], get(keys::list)),
        ("/api/signing-keys/rotate", &["POST"], post(keys::rotate)),
        ("/api/signing-keys/{kid}", &["DELETE"], delete(keys::retire)),
    ]
}

pub fn router(state: AppState) -> Router {
    kubegate_rest::router(routes(), state)
}

impl kubegate_rest::TrustedProxies for AppState {
    fn trusted_proxies(&self) -> &kubegate_config::TrustedProxyArgs {
        &self.trusted
    }
}
