//! Route handlers, one module per resource.

pub mod access;
pub mod audit;
pub mod endpoints;
pub mod kubeconfig;

use crate::engine::Origin;
use crate::http::extract::Session;

/// The origin of a command made by a signed-in user in this request.
pub(crate) fn origin(session: &Session, correlation: String) -> Origin {
    Origin { actor: session.actor(), correlation_id: correlation }
}
