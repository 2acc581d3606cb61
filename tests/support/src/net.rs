//! Free loopback ports.

use std::net::{SocketAddr, TcpListener};

/// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release it).
/// Prefer binding port 0 directly where the program under test allows it.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
