//! What listens on a pod's ports: one local TCP service on 127.0.0.1 per (pod, declared port),
//! started on first use. Ports 80 and 8080 answer any HTTP request with a short text body naming
//! the pod and port; every other port echoes what it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::PodTarget;

pub struct Backends {
    map: tokio::sync::Mutex<HashMap<(String, String, u16), SocketAddr>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// The body the HTTP backend of `namespace/pod` answers on `port`.
pub fn http_body(namespace: &str, pod: &str, port: u16) -> String {
    format!("hello from pod {namespace}/{pod} port {port}\n")
}

/// Whether a port is served by the HTTP backend (otherwise it echoes).
pub fn is_http_port(port: u16) -> bool {
    matches!(port, 80 | 8080)
}

impl Backends {
    pub fn new(shutdown: CancellationToken, tracker: TaskTracker) -> Backends {
        Backends { map: tokio::sync::Mutex::new(HashMap::new()), shutdown, tracker }
    }

    /// The local address standing for `port` of the target pod, or `None` when the pod does not
    /// declare that port (nothing listens there, as in a real pod).
    pub async fn addr(&self, target: &PodTarget, port: u16) -> std::io::Result<Option<SocketAddr>> {
        if !target.ports.contains(&port) {
            return Ok(None);
        }
        let key = (target.namespace.clone(), target.pod.clone(), port);
        let mut map = self.map.lock().await;
        if let Some(addr) = map.get(&key) {
            return Ok(Some(*addr));
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let body = http_body(&target.namespace, &target.pod, port);
        let shutdown = self.shutdown.clone();
        let tracker = self.tracker.clone();
        self.tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = shutdown.cancelled() => return,
                };
                let Ok((conn, _)) = accepted else { continue };
                let body = body.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        _ = serve(conn, port, body) => {}
                        _ = shutdown.cancelled() => {}
                    }
                });
            }
        });
        map.insert(key, addr);
        Ok(Some(addr))
    }
}

async fn serve(mut conn: TcpStream, port: u16, body: String) {
    if is_http_port(port) {
        // Read the request head (bounded in size and time), answer, close.
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let read_head = async {
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            true
        };
        if !matches!(tokio::time::timeout(Duration::from_secs(30), read_head).await, Ok(true)) {
            return;
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(response.as_bytes()).await;
        let _ = conn.shutdown().await;
    } else {
        let (mut r, mut w) = conn.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn target() -> PodTarget {
        PodTarget {
            namespace: "default".into(),
            pod: "nginx".into(),
            container: "nginx".into(),
            container_names: vec!["nginx".into()],
            ports: vec![80, 9000],
        }
    }

    #[tokio::test]
    async fn http_and_echo_ports() {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let b = Backends::new(shutdown.clone(), tracker.clone());
        let t = target();
        assert_eq!(b.addr(&t, 81).await.unwrap(), None, "undeclared ports have no listener");

        let http = b.addr(&t, 80).await.unwrap().unwrap();
        assert_eq!(b.addr(&t, 80).await.unwrap(), Some(http), "one listener per pod port");
        let mut c = TcpStream::connect(http).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(resp.ends_with(&http_body("default", "nginx", 80)));

        let echo = b.addr(&t, 9000).await.unwrap().unwrap();
        let mut c = TcpStream::connect(echo).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ping");

        shutdown.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await.unwrap();
    }
}
