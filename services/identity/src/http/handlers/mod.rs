//! Route handlers, one module per resource.

pub mod auth;
pub mod keys;
pub mod settings;
pub mod teams;
pub mod tokens;
pub mod users;

use crate::engine::Origin;
use crate::http::extract::Session;

/// The origin of a command made by a signed-in user in this request.
pub(crate) fn origin(session: &Session, correlation: String) -> Origin {
    Origin { actor: session.actor(), correlation_id: correlation }
}
