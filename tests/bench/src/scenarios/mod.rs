//! One module per measured item.

pub mod cold;
pub mod downloads;
pub mod micro;
pub mod revocation;
pub mod throughput;
pub mod watch;
