//! The streaming subresources on the wire, with hand-made clients where kubectl cannot reach:
//! refused upgrades answer like Kubernetes, the base64 and pre-v5 WebSocket protocols, the
//! WebSocket channel port-forward protocol (what the Python client speaks), and teardown when
//! the client vanishes mid-command (over WebSocket, SPDY and tunnelled port-forward).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "streams_harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

async fn tls(sim: &Sim) -> TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(sim.sim.ca_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = TcpStream::connect(sim.sim.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Opens a WebSocket to `path_and_query` offering `protocols`; the upgrade's response or error.
async fn websocket(
    sim: &Sim,
    path_and_query: &str,
    protocols: &str,
) -> Result<(Ws, tokio_tungstenite::tungstenite::handshake::client::Response), WsError> {
    let mut req = format!("wss://{}{path_and_query}", sim.sim.addr()).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    if !protocols.is_empty() {
        req.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    tokio_tungstenite::client_async(req, tls(sim).await).await
}

fn exec_path(command: &[&str], flags: &str) -> String {
    let cmd: String = command
        .iter()
        .map(|c| {
            let enc: String = c
                .bytes()
                .map(
                    |b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") },
                )
                .collect();
            format!("command={enc}&")
        })
        .collect();
    format!("/api/v1/namespaces/{NAMESPACE}/pods/{POD}/exec?{cmd}container={CONTAINER}&{flags}")
}

/// Reads raw HTTP/1.1 response head and body (by Content-Length) after sending `request`.
async fn raw_http(sim: &Sim, request: &str) -> (u16, String, String) {
    let mut s = tls(sim).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    (status, head, String::from_utf8_lossy(&buf[head_end..]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wire_refused_upgrades_answer_like_kubernetes() {
    let sim = Sim::start().await;

    // A WebSocket offering only unknown subprotocols: 403 with a Status (kubectl then falls back
    // to SPDY), never a 101 with a protocol it did not offer.
    match websocket(&sim, &exec_path(&["true"], "stdout=true"), "v9.channel.k8s.io").await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 403);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["kind"], "Status");
            assert_eq!(body["code"], 403);
        }
        other => panic!("expected a 403, got {:?}", other.map(|(_, r)| r.status())),
    }

    // SPDY with no version in common: 403 naming what the server accepts.
    let path = exec_path(&["true"], "stdout=true");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    let (status, head, body) = raw_http(&sim, &req).await;
    assert_eq!(status, 403, "{head}{body}");
    assert!(
        head.to_ascii_lowercase().contains("x-accepted-stream-protocol-versions: v5.channel.k8s.io"),
        "{head}"
    );
    assert!(body.contains("unable to negotiate protocol"), "{body}");

    // No upgrade at all: 400 "Upgrade request required".
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n"
    );
    let (status, _, body) = raw_http(&sim, &req).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Upgrade request required"), "{body}");

    let refused: Vec<_> = sim.streams().upgrades().into_iter().filter(|u| u.status != 101).collect();
    assert_eq!(refused.len(), 3, "{refused:#?}");
}

/// Collects the channel messages of a WebSocket exec until the server closes.
async fn collect_channels(ws: &mut Ws, base64: bool) -> Vec<(u8, Vec<u8>)> {
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.unwrap();
        match msg {
            Some(Ok(Message::Binary(b))) if !base64 && !b.is_empty() => got.push((b[0], b[1..].to_vec())),
            Some(Ok(Message::Text(t))) if base64 && !t.is_empty() => {
                let raw = t.as_bytes();
                let data = base64::engine::general_purpose::STANDARD.decode(&raw[1..]).unwrap();
                got.push((raw[0] - b'0', data));
            }
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                // Reading on answers the close, completing the closing handshake.
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {}
                return got;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
            None => return got,
        }
    }
}

fn channel(got: &[(u8, Vec<u8>)], ch: u8) -> String {
    got.iter().filter(|(c, _)| *c == ch).map(|(_, d)| String::from_utf8_lossy(d).into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wire_websocket_v4_binary_and_base64() {
    let sim = Sim::start().await;
    let path = exec_path(&["sh", "-c", "echo out; echo err >&2; exit 7"], "stdout=true&stderr=true");

    // v4 binary (what the Python client falls back to): JSON status with the exit code.
    let (mut ws, resp) = websocket(&sim, &path, "v4.channel.k8s.io").await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v4.channel.k8s.io");
    let got = collect_channels(&mut ws, false).await;
    assert_eq!(got.first(), Some(&(1, Vec::new())), "the kubelet greets on stdout first");
    assert_eq!(channel(&got, 1), "out\n");
    assert_eq!(channel(&got, 2), "err\n");
    let status: serde_json::Value = serde_json::from_str(&channel(&got, 3)).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "7");

    // v4 base64: text frames, an ASCII channel digit and base64 payloads.
    let (mut ws, resp) = websocket(&sim, &path, "v4.base64.channel.k8s.io").await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v4.base64.channel.k8s.io");
    let got = collect_channels(&mut ws, true).await;
    assert_eq!(channel(&got, 1), "out\n");
    assert!(channel(&got, 3).contains("NonZeroExitCode"));

    // The Python client's offer list gets v5, and v5 stdin ends with the close signal.
    let path = exec_path(&["cat"], "stdin=true&stdout=true&stderr=true");
    let (mut ws, resp) = websocket(&sim, &path, "v5.channel.k8s.io,v4.channel.k8s.io").await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
    ws.send(Message::Binary(Bytes::from_static(b"\x00from stdin\n"))).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"\xff\x00"))).await.unwrap();
    let got = collect_channels(&mut ws, false).await;
    assert_eq!(channel(&got, 1), "from stdin\n");
    assert_eq!(channel(&got, 3), r#"{"metadata":{},"status":"Success"}"#);

    assert_torn_down(&sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wire_websocket_channel_port_forward() {
    let sim = Sim::start().await;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods/{POD}/portforward?ports={ECHO_PORT}&ports=81");
    let (mut ws, resp) = websocket(&sim, &path, "v4.channel.k8s.io").await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v4.channel.k8s.io");

    // Each channel first names its port (little-endian); port 81 is not declared, so its error
    // channel says the connection was refused.
    let mut announced = Vec::new();
    let mut refused = String::new();
    while announced.len() < 4 || refused.is_empty() {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Binary(b) if b.len() == 3 && announced.len() < 4 => {
                announced.push((b[0], u16::from_le_bytes([b[1], b[2]])))
            }
            Message::Binary(b) if b[0] == 3 => refused = String::from_utf8_lossy(&b[1..]).into_owned(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(announced, vec![(0, ECHO_PORT), (1, ECHO_PORT), (2, 81), (3, 81)]);
    assert!(refused.contains("connection refused"), "{refused}");

    let data = payload(100 * 1024, 5);
    for chunk in data.chunks(16 * 1024) {
        let mut msg = vec![0u8];
        msg.extend_from_slice(chunk);
        ws.send(Message::Binary(msg.into())).await.unwrap();
    }
    let mut back = Vec::new();
    while back.len() < data.len() {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Binary(b) if b[0] == 0 => back.extend_from_slice(&b[1..]),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(back == data, "echoed {} of {} bytes", back.len(), data.len());
    drop(ws);
    assert_torn_down(&sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wire_vanishing_websocket_client_kills_the_command() {
    let sim = Sim::start().await;
    let path = exec_path(&["sh", "-c", "sleep 300 & echo started; exec sleep 300"], "stdout=true");
    let (mut ws, _) = websocket(&sim, &path, "v5.channel.k8s.io").await.unwrap();
    let mut out = String::new();
    while !out.contains("started") {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Binary(b) if b[0] == 1 => out.push_str(&String::from_utf8_lossy(&b[1..])),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!processes_under(sim.streams().exec_root()).is_empty());
    drop(ws);
    assert_torn_down(&sim).await;
}

/// kubectl killed mid-command (SPDY on 1.27, WebSocket on 1.33): the command and its
/// background children go too.
async fn killed_kubectl(minor: u32) {
    let sim = Sim::start().await;
    let k = Kubectl::new(minor, sim.kubeconfig(), &[]);
    let (mut cmd, _cache) =
        k.command(&["exec", POD, "--", "sh", "-c", "sleep 300 & echo started; exec sleep 300"]);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while find(&out, b"started").is_none() {
        let n = tokio::time::timeout(Duration::from_secs(20), stdout.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "kubectl ended early");
        out.extend_from_slice(&buf[..n]);
    }
    assert!(
        processes_under(sim.streams().exec_root()).len() >= 2,
        "the command and its background child run"
    );
    child.kill().await.unwrap();
    assert_torn_down(&sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wire_killed_kubectl_spdy() {
    killed_kubectl(27).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wire_killed_kubectl_websocket() {
    killed_kubectl(33).await;
}

/// A port-forward whose kubectl dies while a forwarded connection is open ends that forward
/// and its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wire_killed_port_forward_tunnel() {
    let sim = Sim::start().await;
    let k = Kubectl::new(33, sim.kubeconfig(), &[]);
    let pf = PortForward::start(&k, &[ECHO_PORT]).await;
    let mut c = TcpStream::connect(pf.addr(ECHO_PORT)).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut back)).await.unwrap().unwrap();
    assert_eq!(&back, b"ping");
    assert_eq!(sim.streams().active_sessions(), 1);
    pf.stop().await;
    assert_torn_down(&sim).await;
}

/// Input-only commands work (the only channel written is the error channel), and the server
/// answers WebSocket pings while a command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_wire_stdin_only_exec_and_pings() {
    let sim = Sim::start().await;
    let path = exec_path(&["sh", "-c", "cat > /tmp/stdin-only.txt"], "stdin=true");
    let (mut ws, _) = websocket(&sim, &path, "v5.channel.k8s.io").await.unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"are-you-there"))).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"are-you-there");
                break;
            }
            Message::Binary(b) => assert_eq!(&b[..], b"\x03", "only the error channel's greeting"),
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.send(Message::Binary(Bytes::from_static(b"\x00written by stdin\n"))).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"\xff\x00"))).await.unwrap();
    let got = collect_channels(&mut ws, false).await;
    assert_eq!(channel(&got, 3), r#"{"metadata":{},"status":"Success"}"#);
    let written = std::fs::read_to_string(sim.container_root(CONTAINER).join("tmp/stdin-only.txt")).unwrap();
    assert_eq!(written, "written by stdin\n");
    assert_torn_down(&sim).await;
}
