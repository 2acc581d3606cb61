//! The one place identity's errors become HTTP answers (the shared JSON `{"message": …}`
//! answer, with the status that fits). Messages never contain a password or a token.

pub use kubegate_rest::ApiError;

use crate::domain::DomainError;
use crate::engine::ModelError;

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) => ApiError::BadRequest(m),
            DomainError::NotFound(m) => ApiError::NotFound(m),
            DomainError::Conflict(m) => ApiError::Conflict(m),
        }
    }
}
impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Domain(d) => d.into(),
            ModelError::Key(m) => ApiError::Internal(m),
        }
    }
}
