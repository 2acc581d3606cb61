//! The kubeconfig service's domain: environments and access policies evolved by events,
//! decisions without I/O, and who reaches what.

pub mod access;
pub mod decide;
pub mod state;

pub use access::{Chosen, Selection, choose, grant_for, reachable};
pub use decide::{Command, Decision, DomainError, Outcome, decide};
pub use state::{Environment, EnvironmentsState};

#[cfg(test)]
mod tests;
