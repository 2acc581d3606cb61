//! Identity's domain: state evolved by events, and decisions without I/O.

pub mod decide;
pub mod state;

pub use decide::{Command, Decision, DomainError, Outcome, decide};
pub use state::{IdentityState, Session};

#[cfg(test)]
mod tests;
