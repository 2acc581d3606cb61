//! SPDY/3.1 as Kubernetes uses it for exec, attach and port-forward: framing, zlib header blocks
//! with the SPDY/3 dictionary, and the server side of a connection.

pub mod conn;
pub mod frame;
pub mod zlib;
