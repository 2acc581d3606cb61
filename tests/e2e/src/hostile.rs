//! A hostile Kubernetes API server for the upgrade attacks: it answers upgrade requests by the
//! pod name — `refuse-400`, `refuse-403`, `ok-200` (a non-101 answer), `redirect` (302 to a
//! path of its own), `wrong-protocol` (101 with a subprotocol nobody offered) — and records, per
//! connection, every request head and every byte that arrives after its answer, so a test can
//! prove nothing smuggled reached it and whether its connections were closed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What one upstream connection saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Request lines (`GET /path HTTP/1.1`) in arrival order.
    pub requests: Vec<String>,
    /// Bytes received after the answer to an upgrade request was sent.
    pub after_answer: Vec<u8>,
    /// The proxy closed this connection.
    pub closed: bool,
}

pub struct Hostile {
    pub port: u16,
    pub ca_pem: String,
    seen: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    pub async fn start() -> Hostile {
        kubegate_tls::install_crypto_provider();
        let ca = kubegate_tls::DevCa::generate("hostile upstream CA").unwrap();
        let (cert, key) = ca.issue_server(&["127.0.0.1", "localhost"]).unwrap();
        let config = kubegate_tls::server_config(&cert, &key, &[b"http/1.1"]).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>> = Arc::default();
        let all = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let conn = Arc::new(Mutex::new(Seen::default()));
                all.lock().unwrap().push(conn.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, conn).await;
                    }
                });
            }
        });
        Hostile { port, ca_pem: ca.cert_pem().to_string(), seen, task }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Every connection so far.
    pub fn connections(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().map(|c| c.lock().unwrap().clone()).collect()
    }

    /// Connections whose first request line contains `needle`.
    pub fn connections_for(&self, needle: &str) -> Vec<Seen> {
        self.connections()
            .into_iter()
            .filter(|c| c.requests.first().is_some_and(|r| r.contains(needle)))
            .collect()
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S, seen: Arc<Mutex<Seen>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut answered = false;
    loop {
        if !answered && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            let line = head.lines().next().unwrap_or_default().to_string();
            seen.lock().unwrap().requests.push(line.clone());
            let upgrade = head.to_ascii_lowercase().contains("\nupgrade:");
            let answer = answer(&line, &head);
            if io.write_all(answer.as_bytes()).await.is_err() {
                break;
            }
            if upgrade {
                // Everything after this is what a proxy must never pass on.
                answered = true;
                seen.lock().unwrap().after_answer.extend_from_slice(&buf);
                buf.clear();
            }
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(120), io.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                if answered {
                    seen.lock().unwrap().after_answer.extend_from_slice(&chunk[..n]);
                } else {
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
            _ => break,
        }
    }
    seen.lock().unwrap().closed = true;
}

fn answer(line: &str, head: &str) -> String {
    let body = |status: &str, text: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
    };
    let status_json = |code: u16, reason: &str| {
        format!(
            r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"hostile {code}","reason":"{reason}","code":{code}}}"#
        )
    };
    if line.contains("/pods/refuse-400/") {
        body("400 Bad Request", &status_json(400, "BadRequest"))
    } else if line.contains("/pods/refuse-403/") {
        body("403 Forbidden", &status_json(403, "Forbidden"))
    } else if line.contains("/pods/ok-200/") {
        body("200 OK", r#"{"kind":"Pod"}"#)
    } else if line.contains("/pods/redirect/") {
        "HTTP/1.1 302 Found\r\nLocation: /api/v1/namespaces/kube-system/secrets\r\nContent-Length: 0\r\n\r\n"
            .to_string()
    } else if line.contains("/pods/wrong-protocol/") {
        let key = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key")))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: evil.example.com\r\n\r\n",
            websocket_accept(&key)
        )
    } else {
        body("200 OK", r#"{"major":"1","minor":"33","gitVersion":"v1.33.0-hostile"}"#)
    }
}

fn websocket_accept(key: &str) -> String {
    // SHA-1 is what RFC 6455 specifies; a tiny implementation keeps the dependency list short.
    use base64::Engine as _;
    let digest = sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([block[4 * i], block[4 * i + 1], block[4 * i + 2], block[4 * i + 3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn websocket_accept_matches_rfc_6455() {
        assert_eq!(super::websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
