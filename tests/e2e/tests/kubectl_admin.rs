//! The whole kubectl command list through kubegate (two replicas behind HAProxy) as an
//! environment-admin, with kubectl 1.27 (SPDY), 1.30 and 1.33 (WebSocket): get, -A, -w,
//! logs -f, apply, delete, exec (exit code, -it), cp, port-forward, can-i, whoami.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use kubegate_e2e::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

async fn suite(stack: &Stack, kc: &Path, minor: u32) {
    let tag = format!("v{minor}");
    // get, -A, ns
    assert!(ok(kubectl(minor, kc, &["get", "pods"])).contains("nginx"), "{tag}");
    let all = ok(kubectl(minor, kc, &["get", "pods", "-A"]));
    assert!(all.contains("coredns") && all.contains("worker"), "{tag}: {all}");
    assert!(ok(kubectl(minor, kc, &["get", "ns"])).contains("kube-system"));

    // get -w: an object created during the watch shows up.
    let mut watch = Running::start(minor, kc, &["get", "pods", "-w", "-n", "default"], &[]);
    watch.wait_line("nginx", T).await;
    let name = format!("watched-{minor}");
    stack.sims[0]
        .apply_object(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .unwrap();
    watch.wait_line(&name, T).await;
    drop(watch);

    // logs -f: new lines keep coming.
    let mut logs = Running::start(minor, kc, &["logs", "-f", "nginx", "-n", "default", "--tail=1"], &[]);
    let first = logs.next_line(T).await.expect("a first log line");
    let mut later = None;
    for _ in 0..10 {
        if let Some(l) = logs.next_line(T).await
            && l != first
        {
            later = Some(l);
            break;
        }
    }
    assert!(later.is_some(), "{tag}: logs -f delivered no new line after {first:?}");
    drop(logs);

    // apply (create, then update with validation on), delete.
    let manifest = stack.dir.path().join(format!("pod-{minor}.yaml"));
    let pod = format!("applied-{minor}");
    std::fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: default\n  labels:\n    v: one\nspec:\n  containers:\n  - name: c\n    image: busybox\n"),
    )
    .unwrap();
    assert!(ok(kubectl(minor, kc, &["apply", "-f", manifest.to_str().unwrap()])).contains("created"));
    std::fs::write(&manifest, std::fs::read_to_string(&manifest).unwrap().replace("v: one", "v: two"))
        .unwrap();
    assert!(ok(kubectl(minor, kc, &["apply", "-f", manifest.to_str().unwrap()])).contains("configured"));
    let labels = ok(kubectl(minor, kc, &["get", "pod", &pod, "-o", "jsonpath={.metadata.labels.v}"]));
    assert_eq!(labels, "two");
    assert!(ok(kubectl(minor, kc, &["delete", "pod", &pod, "--wait=false"])).contains("deleted"));

    // exec: output and exit code.
    assert_eq!(
        ok(kubectl(minor, kc, &["exec", "nginx", "--", "echo", "hello from exec"])).trim(),
        "hello from exec"
    );
    let out = kubectl(minor, kc, &["exec", "nginx", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{tag}: {}", stderr(&out));

    // exec -it under a terminal.
    let mut term = Terminal::start(minor, kc, &["exec", "-it", "busybox", "--", "sh"]);
    term.send("echo tty-$((40+2))\r").await;
    term.expect("tty-42", T).await;
    term.send("exit 5\r").await;
    let status = tokio::time::timeout(T, term.child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(5), "{tag}: exec -it exit code");

    // cp both ways.
    let local = stack.dir.path().join(format!("cp-{minor}.txt"));
    let content = format!("copied through kubegate by kubectl 1.{minor}\n").repeat(200);
    std::fs::write(&local, &content).unwrap();
    ok(kubectl(minor, kc, &["cp", local.to_str().unwrap(), "default/busybox:/tmp/cp.txt"]));
    let back = stack.dir.path().join(format!("cp-back-{minor}.txt"));
    ok(kubectl(minor, kc, &["cp", "default/busybox:/tmp/cp.txt", back.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&back).unwrap(), content);

    // port-forward: bytes round-trip through the forwarded port.
    let mut pf = Running::start(minor, kc, &["port-forward", "pod/nginx", ":80", "-n", "default"], &[]);
    let line = pf.wait_line("Forwarding from 127.0.0.1:", T).await;
    let port: u16 =
        line.split("127.0.0.1:").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let body = http_get(port).await;
    assert!(body.contains("hello from pod default/nginx"), "{tag}: {body}");
    drop(pf);

    // can-i and whoami.
    assert_eq!(
        ok(kubectl(minor, kc, &["auth", "can-i", "delete", "pods", "-n", "kube-system"])).trim(),
        "yes"
    );
    if minor >= 28 {
        let who = ok(kubectl(minor, kc, &["auth", "whoami"]));
        assert!(who.contains("kubegate:admin"), "{tag}: {who}");
    }
}

/// A plain HTTP GET on loopback, without a client library.
async fn http_get(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubectl_command_list_works_through_kubegate() {
    let stack = Stack::start(Options { environments: 1, ..Options::default() }).await;
    let env = stack.register(0, "demo").await;
    let kc = stack.kubeconfig_file(&stack.admin, &[env], "admin").await;
    stack.wait_environment_everywhere(&kc).await;
    for minor in [27, 30, 33] {
        suite(&stack, &kc, minor).await;
    }
    // Both transports were used, and every upgrade went upstream as HTTP/1.1 with kubegate's
    // credential and the user's identity only.
    let upgrades: Vec<_> = stack.sims[0]
        .requests()
        .into_iter()
        .filter(|r| r.headers.iter().any(|(k, _)| k == "upgrade"))
        .collect();
    let spdy = upgrades.iter().filter(|r| r.header("upgrade").unwrap_or("").starts_with("SPDY")).count();
    let ws = upgrades
        .iter()
        .filter(|r| r.header("upgrade").unwrap_or("").eq_ignore_ascii_case("websocket"))
        .count();
    assert!(spdy >= 3 && ws >= 3, "spdy {spdy}, websocket {ws}");
    for r in upgrades {
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.header("impersonate-user"), Some("kubegate:admin"));
    }
}
