//! Free loopback ports.
//!
//! A port found by binding port 0 and releasing it lies in the kernel's ephemeral range, where
//! any outgoing connection (to PostgreSQL, to NATS) may take it as its local port before the
//! program under test binds it ("Address already in use"). So ports handed out here come from
//! below that range, which the kernel never assigns on its own, and each is reserved across the
//! test processes running in parallel by a file created exclusively in a shared directory.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Ports handed out: below Linux's default ephemeral range (32768–60999).
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;
/// A reservation older than this is stale (its test has long bound or given up the port).
const RESERVATION: Duration = Duration::from_secs(600);

/// A port on 127.0.0.1 that is free, outside the ephemeral range, and reserved for this caller
/// for ten minutes. Prefer binding port 0 directly where the program under test allows it.
pub fn free_port() -> u16 {
    let dir = reservations();
    std::fs::create_dir_all(&dir).expect("port reservation directory");
    let span = u32::from(LAST - FIRST);
    let start = uuid::Uuid::new_v4().as_u128() as u32 % span;
    for i in 0..span {
        let port = FIRST + ((start + i) % span) as u16;
        if reserve(&dir, port) && TcpListener::bind(loopback(port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {LAST}");
}

fn reservations() -> PathBuf {
    std::env::temp_dir().join("kubegate-test-ports")
}

/// Creates the port's reservation file; true when this caller now holds it.
fn reserve(dir: &std::path::Path, port: u16) -> bool {
    let path = dir.join(port.to_string());
    let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&path).is_ok();
    if create() {
        return true;
    }
    let stale = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > RESERVATION)
        .unwrap_or(false);
    stale && std::fs::remove_file(&path).is_ok() && create()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice: {ports:?}");
        assert!(ports.iter().all(|p| (FIRST..LAST).contains(p)), "{ports:?}");
    }
}
