//! Talking to kubegate below the client libraries: hand-written HTTP/1.1 bytes over TLS (for
//! requests a library refuses to send: smuggling framings, control bytes, raw paths), raw h2
//! frames (floods the h2 crate's client will not produce), and a latency probe for "other
//! clients stay unaffected".

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A TLS connection to a kubegate listener, speaking whatever bytes the test writes.
pub struct Raw {
    pub stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

pub fn connector(ca_pem: &str, alpn: &[&[u8]]) -> TlsConnector {
    TlsConnector::from(Arc::new(kubegate_tls::client_config(ca_pem, None, alpn).unwrap()))
}

/// A client connection of the h2 crate to 127.0.0.1:`port`, driven in the background.
pub async fn h2_client(port: u16, ca_pem: &str) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let io = connector(ca_pem, &[b"h2"]).connect(server, tcp).await.unwrap();
    // Large windows: the h2 crate cuts off a peer whose small DATA frames wait unread beyond a
    // budget derived from the connection window, and a test's readers may lag under load.
    let (h2, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(64 << 20)
        .handshake(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    h2
}

impl Raw {
    /// Connects with TLS to 127.0.0.1:`port` offering `alpn` (empty: none, as kubectl's
    /// upgrades do).
    pub async fn connect(port: u16, ca_pem: &str, alpn: &[&[u8]]) -> Raw {
        Self::connect_with(&connector(ca_pem, alpn), port).await
    }

    pub async fn connect_with(connector: &TlsConnector, port: u16) -> Raw {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        Raw { stream, buf: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    async fn fill(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 16384];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// Reads one response (head, then a body framed by Content-Length or chunked); `None` when
    /// the connection ends or `timeout` passes first.
    pub async fn response(&mut self, timeout: Duration) -> Option<RawResponse> {
        self.read_response(timeout, false).await
    }

    /// The response to a HEAD request: a head only, whatever its Content-Length says.
    pub async fn head_response(&mut self, timeout: Duration) -> Option<RawResponse> {
        self.read_response(timeout, true).await
    }

    async fn read_response(&mut self, timeout: Duration, head_only: bool) -> Option<RawResponse> {
        let deadline = Instant::now() + timeout;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill(deadline).await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        self.buf.drain(..head_end);
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let mut response = RawResponse { status, head, body: Vec::new() };
        if head_only || status == 101 || status == 204 || status == 304 {
            return Some(response);
        }
        if let Some(len) = response.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                if !self.fill(deadline).await {
                    return None;
                }
            }
            response.body = self.buf.drain(..len).collect();
        } else if response.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                if let Some(i) = self.buf.windows(5).position(|w| w == b"0\r\n\r\n") {
                    response.body = self.buf.drain(..i + 5).collect();
                    break;
                }
                if !self.fill(deadline).await {
                    return None;
                }
            }
        }
        Some(response)
    }

    /// Whether the peer closes the connection (EOF, reset or TLS close) within `timeout`;
    /// whatever it sends meanwhile is kept for [`Raw::response`].
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }
}

/// An HTTP/1.1 request with `Host`, the bearer token and `extra` header lines, no body.
pub fn request(method: &str, target: &str, token: &str, extra: &[&str]) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n");
    for line in extra {
        s.push_str(line);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// h2: the client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub mod h2frame {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;
}

/// One h2 frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// HPACK "literal header field without indexing, new name" (no Huffman): a header block
/// fragment any h2 server must accept, whatever the bytes.
pub fn hpack_literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    hpack_int(&mut out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(&mut out, 0, 7, value.len());
    out.extend_from_slice(value);
    out
}

/// The header block of a request: pseudo-headers, then `extra`.
pub fn h2_request_block(method: &str, path: &str, authority: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in [(":method", method), (":scheme", "https"), (":path", path), (":authority", authority)] {
        block.extend(hpack_literal(n.as_bytes(), v.as_bytes()));
    }
    for (n, v) in extra {
        block.extend(hpack_literal(n.as_bytes(), v.as_bytes()));
    }
    block
}

/// A raw h2 connection (ALPN h2) after the preface and an empty SETTINGS frame.
pub async fn h2_raw(port: u16, ca_pem: &str) -> Raw {
    let mut raw = Raw::connect(port, ca_pem, &[b"h2"]).await;
    assert_eq!(raw.stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server did not pick h2");
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(frame(h2frame::SETTINGS, 0, 0, &[]));
    raw.send(&hello).await.unwrap();
    raw
}

/// What the server sent on a raw h2 connection until it closed it or `timeout` passed.
#[derive(Debug, Default)]
pub struct H2Seen {
    /// The GOAWAY error code, if one came.
    pub goaway: Option<u32>,
    pub rst_streams: usize,
    pub headers: usize,
    pub closed: bool,
}

/// Reads frames (while `keep_writing` bytes are written, if any) until GOAWAY plus close, or
/// `timeout`. Writing stops at the first write error (the server closed).
pub async fn h2_watch(raw: &mut Raw, timeout: Duration) -> H2Seen {
    let deadline = Instant::now() + timeout;
    let mut seen = H2Seen::default();
    loop {
        while raw.buf.len() >= 9 {
            let len = u32::from_be_bytes([0, raw.buf[0], raw.buf[1], raw.buf[2]]) as usize;
            if raw.buf.len() < 9 + len {
                break;
            }
            let kind = raw.buf[3];
            let payload: Vec<u8> = raw.buf[9..9 + len].to_vec();
            raw.buf.drain(..9 + len);
            match kind {
                h2frame::GOAWAY if payload.len() >= 8 => {
                    seen.goaway = Some(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]));
                }
                h2frame::RST_STREAM => seen.rst_streams += 1,
                h2frame::HEADERS => seen.headers += 1,
                _ => {}
            }
        }
        let mut chunk = [0u8; 16384];
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return seen;
        }
        match tokio::time::timeout(left, raw.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Ok(Ok(n)) => raw.buf.extend_from_slice(&chunk[..n]),
            Err(_) => return seen,
        }
    }
}

/// Latencies of a well-behaved client's requests, for "other clients are unaffected".
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    pub samples: Vec<Duration>,
    pub failures: usize,
}

impl Latencies {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort_unstable();
        if s.is_empty() {
            return Duration::MAX;
        }
        let i = ((s.len() as f64 - 1.0) * p).round() as usize;
        s[i]
    }

    pub fn p50(&self) -> Duration {
        self.percentile(0.50)
    }

    pub fn p99(&self) -> Duration {
        self.percentile(0.99)
    }
}

/// Sends GET `url` with `token` every `every` until `stop` is set, from a thread and runtime
/// of its own (so the load a test generates in its own process does not delay the probe) and
/// a client of its own (its own connections); returns the latencies.
pub fn probe(
    ca_pem: &str,
    url: String,
    token: String,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Latencies> {
    let tls = kubegate_tls::client_config(ca_pem, None, &[b"h2", b"http/1.1"]).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(async move {
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut out = Latencies::default();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let start = Instant::now();
                match client.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        out.samples.push(start.elapsed());
                    }
                    _ => out.failures += 1,
                }
                tokio::time::sleep(every).await;
            }
            out
        });
        let _ = tx.send(out);
    });
    tokio::spawn(async move { rx.await.unwrap_or_default() })
}
