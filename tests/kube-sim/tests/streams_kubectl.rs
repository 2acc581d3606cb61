//! Real kubectl (1.27–1.33) against the streaming subresources: `exec`
//! (output, stderr, exit codes, stdin, a pty), `cp` both ways, `port-forward` and `attach`, over
//! every transport each version speaks: SPDY, WebSocket, and SPDY tunnelled in WebSocket. Each
//! test also checks which transport and subprotocol were negotiated (so a silent fallback from
//! WebSocket to SPDY cannot pass unnoticed) and that nothing outlives the sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "streams_harness.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WEBSOCKETS_OFF: &[(&str, &str)] =
    &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"), ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")];

const SPDY_V4: (&str, &str) = ("spdy", "v4.channel.k8s.io");
const SPDY_V5: (&str, &str) = ("spdy", "v5.channel.k8s.io");
const WS_V5: (&str, &str) = ("websocket", "v5.channel.k8s.io");
const SPDY_PF: (&str, &str) = ("spdy", "portforward.k8s.io");
const WS_TUNNEL_PF: (&str, &str) = ("websocket", "SPDY/3.1+portforward.k8s.io");

/// Which scenarios to run: all of them, or exec and port-forward only.
#[derive(Clone, Copy, PartialEq)]
enum Depth {
    Full,
    Quick,
}

struct Case {
    minor: u32,
    env: &'static [(&'static str, &'static str)],
    exec: (&'static str, &'static str),
    port_forward: (&'static str, &'static str),
    depth: Depth,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut resp = String::new();
    tokio::time::timeout(Duration::from_secs(20), c.read_to_string(&mut resp)).await.unwrap().unwrap();
    resp
}

async fn echo_round_trip(addr: std::net::SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let c = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut back)).await.unwrap().unwrap();
    writer.await.unwrap();
    back
}

/// Runs `stty size` until the remote terminal reports 30 rows and 100 columns (kubectl sends its
/// terminal size right after connecting, possibly just after the first keystrokes).
async fn expect_terminal_size(t: &mut PtyKubectl) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let from = t.seen.len();
        t.send("stty size\r").await;
        let end = t.expect_from(from, "stty size", Duration::from_secs(20)).await;
        // The answer is the next line that looks like "ROWS COLS".
        let answer_end = t.expect_from(end, "\n", Duration::from_secs(20)).await;
        let answer_end = t.expect_from(answer_end, "\n", Duration::from_secs(20)).await;
        let answer = text(&t.seen[end..answer_end]);
        if answer.contains("30 100") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "terminal never became 100x30: {answer:?}");
    }
}

async fn run_case(case: Case) {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().unwrap();
    let k = Kubectl::new(case.minor, sim.kubeconfig(), case.env);
    let v = case.minor;

    // exec: output.
    let out = k.run(&["exec", POD, "--", "echo", "hi"], b"").await;
    assert_success("exec echo", &out);
    assert_eq!(text(&out.stdout), "hi\n");

    // exec: stderr and a non-zero exit code propagate.
    let out = k.run(&["exec", POD, "--", "sh", "-c", "echo out; echo err >&2; exit 3"], b"").await;
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("command terminated with exit code 3"), "{}", text(&out.stderr));

    if case.depth == Depth::Full {
        let out = k.run(&["exec", POD, "--", "false"], b"").await;
        assert_eq!(out.status.code(), Some(1));

        // exec -i: stdin round trip, larger than any flow-control window.
        let data = payload(256 * 1024, v);
        let out = k.run(&["exec", "-i", POD, "--", "cat"], &data).await;
        assert_success("exec -i cat", &out);
        assert!(out.stdout == data, "cat returned {} of {} bytes", out.stdout.len(), data.len());

        // cp to the pod lands in the sandbox, not on the host; cp back returns the same bytes.
        let upload = dir.path().join("upload.bin");
        let content = payload(300 * 1024, v + 100);
        std::fs::write(&upload, &content).unwrap();
        let remote = format!("/tmp/kube-sim-cp-{}-{v}.bin", std::process::id());
        let out = k.run(&["cp", upload.to_str().unwrap(), &format!("{POD}:{remote}")], b"").await;
        assert_success("cp to pod", &out);
        let in_sandbox = sim.container_root(CONTAINER).join(remote.trim_start_matches('/'));
        assert!(std::fs::read(&in_sandbox).unwrap() == content, "uploaded file differs");
        assert!(!std::path::Path::new(&remote).exists(), "cp must not write to the host's {remote}");
        let download = dir.path().join("download.bin");
        let out = k.run(&["cp", &format!("{POD}:{remote}"), download.to_str().unwrap()], b"").await;
        assert_success("cp from pod", &out);
        assert!(std::fs::read(&download).unwrap() == content, "downloaded file differs");

        // exec -it under a pty: the terminal size, a command's output, the exit code.
        let mut t = k.spawn_pty(&["exec", "-it", POD, "--", "sh"]);
        expect_terminal_size(&mut t).await;
        t.send("echo $((6*7))-done\r").await;
        t.expect("42-done").await;
        t.send("exit 3\r").await;
        assert_eq!(t.exit_code().await, 3);
    }

    // port-forward: an HTTP port (twice: one stream pair per connection) and an echo port.
    let pf = PortForward::start(&k, &[HTTP_PORT, ECHO_PORT]).await;
    for path in ["/hello", "/again"] {
        let resp = http_get(pf.addr(HTTP_PORT), path).await;
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        assert!(resp.ends_with("hello from pod default/nginx port 80\n"), "{resp}");
    }
    let data = payload(200 * 1024, v + 200);
    let back = echo_round_trip(pf.addr(ECHO_PORT), data.clone()).await;
    assert!(back == data, "echo returned {} of {} bytes", back.len(), data.len());
    pf.stop().await;

    // Exactly the expected transports were used, and nothing was refused along the way.
    let records = upgrades_since(sim.streams(), 0);
    for r in &records {
        assert_eq!(r.status, 101, "an upgrade was refused: {records:#?}");
        let (transport, protocol) =
            if r.subresource == "portforward" { case.port_forward } else { case.exec };
        assert_eq!((r.transport, r.protocol.as_str()), (transport, protocol), "{records:#?}");
    }
    assert!(records.iter().any(|r| r.subresource == "exec"));
    assert!(records.iter().any(|r| r.subresource == "portforward"));

    assert_torn_down(&sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_27_spdy() {
    run_case(Case { minor: 27, env: &[], exec: SPDY_V4, port_forward: SPDY_PF, depth: Depth::Full }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_28_spdy() {
    run_case(Case { minor: 28, env: &[], exec: SPDY_V4, port_forward: SPDY_PF, depth: Depth::Quick }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_29_spdy() {
    run_case(Case { minor: 29, env: &[], exec: SPDY_V5, port_forward: SPDY_PF, depth: Depth::Full }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_29_websocket_opt_in() {
    let env = &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true")];
    run_case(Case { minor: 29, env, exec: WS_V5, port_forward: SPDY_PF, depth: Depth::Quick }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_30_default() {
    run_case(Case { minor: 30, env: &[], exec: WS_V5, port_forward: SPDY_PF, depth: Depth::Full }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_30_port_forward_websocket_opt_in() {
    let env = &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "true")];
    run_case(Case { minor: 30, env, exec: WS_V5, port_forward: WS_TUNNEL_PF, depth: Depth::Quick }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_30_spdy_forced() {
    run_case(Case {
        minor: 30,
        env: WEBSOCKETS_OFF,
        exec: SPDY_V5,
        port_forward: SPDY_PF,
        depth: Depth::Full,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_31_websocket() {
    run_case(Case { minor: 31, env: &[], exec: WS_V5, port_forward: WS_TUNNEL_PF, depth: Depth::Full }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_31_spdy_forced() {
    run_case(Case {
        minor: 31,
        env: WEBSOCKETS_OFF,
        exec: SPDY_V5,
        port_forward: SPDY_PF,
        depth: Depth::Full,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_32_websocket() {
    run_case(Case { minor: 32, env: &[], exec: WS_V5, port_forward: WS_TUNNEL_PF, depth: Depth::Quick })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_33_websocket() {
    run_case(Case { minor: 33, env: &[], exec: WS_V5, port_forward: WS_TUNNEL_PF, depth: Depth::Full }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_1_33_spdy_forced() {
    run_case(Case {
        minor: 33,
        env: WEBSOCKETS_OFF,
        exec: SPDY_V5,
        port_forward: SPDY_PF,
        depth: Depth::Full,
    })
    .await;
}

/// `attach` reaches the container's main shell; the shell outlives the session (a second
/// attach sees the first one's variable) and its exit ends the session.
async fn attach_case(minor: u32, env: &'static [(&'static str, &'static str)], expect: (&str, &str)) {
    let sim = Sim::start().await;
    let k = Kubectl::new(minor, sim.kubeconfig(), env);

    let mut first = k.spawn_pty(&["attach", "-it", POD, "-c", CONTAINER]);
    first.send("X=attached-$((40+2)); echo $X\r").await;
    first.expect("attached-42").await;
    drop(first); // kills kubectl: the client goes away, the main shell stays

    let mut second = k.spawn_pty(&["attach", "-it", POD, "-c", CONTAINER]);
    second.send("echo again-$X\r").await;
    second.expect("again-attached-42").await;
    second.send("exit\r").await;
    assert_eq!(second.exit_code().await, 0);

    let records = upgrades_since(sim.streams(), 0);
    assert_eq!(records.len(), 2, "{records:#?}");
    for r in &records {
        assert_eq!(
            (r.subresource, r.transport, r.protocol.as_str(), r.status),
            ("attach", expect.0, expect.1, 101)
        );
    }
    assert_torn_down(&sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_attach_1_27_spdy() {
    attach_case(27, &[], SPDY_V4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_kubectl_attach_1_33_websocket() {
    attach_case(33, &[], WS_V5).await;
}
