//! Security catalogue, "Upgrades", end to end: a hostile API server (`kubegate_e2e::hostile`)
//! answers exec, attach and port-forward upgrades (WebSocket and SPDY) with 400, 403, 200, a
//! redirect, or a 101 with a
//! subprotocol the client never offered; the client then writes raw bytes and a second request
//! on the same socket. Nothing of that reaches the upstream, both connections are closed, the
//! redirect is not followed, the bad 101 is not passed as success — and each attempt has exactly
//! one audit record naming the user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kubegate_e2e::hostile::Hostile;
use kubegate_e2e::wire::Raw;
use kubegate_e2e::*;
use serde_json::json;

const SMUGGLED: &[u8] =
    b"GET /api/v1/namespaces/kube-system/secrets HTTP/1.1\r\nHost: upstream\r\n\r\n\x82\x85raw-websocket-bytes";

fn upgrade_request(env: u64, token: &str, pod: &str, subresource: &str, spdy: bool) -> Vec<u8> {
    let query = match subresource {
        "portforward" => "ports=8080",
        _ => "command=sh&stdin=true&stdout=true",
    };
    let target =
        format!("/api/endpoints/{env}/kubernetes/api/v1/namespaces/dev/pods/{pod}/{subresource}?{query}");
    let head = if spdy {
        format!(
            "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
        )
    } else {
        format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
        )
    };
    head.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_upgrades_close_both_connections_and_pass_nothing_on() {
    let stack =
        Stack::start(Options { proxies: 1, environments: 0, load_balancer: false, ..Options::default() })
            .await;
    let hostile = Hostile::start().await;
    let (code, body) = stack
        .api(
            "POST",
            "/api/endpoints",
            Some(&stack.admin),
            Some(json!({"name": "hostile", "url": hostile.url(), "caCert": hostile.ca_pem, "token": "hostile-token"})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let env = body["id"].as_u64().unwrap();
    let kc = stack.kubeconfig_file(&stack.admin, &[env], "admin").await;
    stack.wait_environment_everywhere(&kc).await;
    let token = token_of(&kc);
    let mut ids = HashSet::new();
    let mut subresources = std::collections::HashMap::new();

    for (pod, subresource, spdy, want) in [
        ("refuse-400", "exec", false, 400),
        ("refuse-403", "exec", false, 403),
        ("ok-200", "exec", false, 200),
        ("refuse-400", "exec", true, 400),
        ("ok-200", "exec", true, 200),
        ("redirect", "exec", false, 302),
        ("wrong-protocol", "exec", false, 502),
        ("refuse-403", "attach", false, 403),
        ("ok-200", "attach", true, 200),
        ("refuse-400", "portforward", true, 400),
        ("ok-200", "portforward", false, 200),
        ("redirect", "portforward", true, 302),
        ("wrong-protocol", "attach", false, 502),
    ] {
        let what = format!("{pod} {subresource} ({})", if spdy { "SPDY" } else { "WebSocket" });
        let before = hostile.connections_for(&format!("/pods/{pod}/")).len();
        let mut raw = Raw::connect(stack.public_port, &stack.ca_pem, &[]).await;
        raw.send(&upgrade_request(env, &token, pod, subresource, spdy)).await.unwrap();
        let r = raw.response(Duration::from_secs(20)).await.unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(r.status, want, "{what}: {}", r.head);
        assert_ne!(r.status, 101, "{what}: passed as a successful upgrade");
        assert_eq!(
            r.header("connection").map(|v| v.to_ascii_lowercase()),
            Some("close".into()),
            "{what}: {}",
            r.head
        );
        let id = r.header("x-kubegate-request-id").unwrap();
        subresources.insert(id.clone(), subresource);
        ids.insert(id);
        // The client goes on writing as if upgraded: raw frames and a second request.
        let _ = raw.send(SMUGGLED).await;
        assert!(
            raw.closed_within(Duration::from_secs(10)).await,
            "{what}: the client connection stayed open"
        );
        if pod == "redirect" {
            assert_eq!(r.header("location").as_deref(), Some("/api/v1/namespaces/kube-system/secrets"));
        }
        // Upstream: exactly the one request, nothing after the answer, and closed by the proxy.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let conns = hostile.connections_for(&format!("/pods/{pod}/"));
            assert_eq!(conns.len(), before + 1, "{what}: {conns:?}");
            let c = conns.last().unwrap();
            assert_eq!(c.requests.len(), 1, "{what}: a second request reached the upstream: {c:?}");
            assert!(c.after_answer.is_empty(), "{what}: bytes reached the upstream after its answer: {c:?}");
            if c.closed {
                break;
            }
            assert!(Instant::now() < deadline, "{what}: the upstream connection stayed open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The redirect was not followed: nobody asked the upstream for its target.
    assert!(
        hostile.connections().iter().flat_map(|c| c.requests.clone()).all(|r| !r.contains("secrets")),
        "{:?}",
        hostile.connections()
    );

    // One audit record each, naming the real user and the impersonated identity.
    let records = audit_covers(&stack, &ids, Duration::from_secs(30)).await;
    for id in &ids {
        let r = audited(&records, id);
        assert_eq!(r["subject"]["username"], "admin", "{r}");
        assert_eq!(r["subject"]["impersonated_user"], "kubegate:admin", "{r}");
        assert_eq!(r["target"]["subresource"], subresources[id], "{r}");
    }
}
