//! Launchers for the real things tests need: a nats-server per test on a free port, a fresh
//! PostgreSQL database per test, the versioned kubectl binaries, and polling with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bins;
pub mod kubectl;
pub mod nats;
pub mod net;
pub mod openapi;
pub mod pgcluster;
pub mod postgres;
pub mod process;
pub mod python;
pub mod wait;
