//! Security catalogue, "Audit", end to end through the load balancer and two replicas: an
//! ordinary request, a denial, an unauthenticated request, a successful upgrade (kubectl exec
//! over WebSocket and over SPDY) and a failed one each leave exactly one `RequestAudited`
//! record naming the real user and the impersonated identity (sessions also a start and an end
//! record), and every replica's numbering is gap-free, which proves none is missing.
//!
//! Not applicable: a request the HTTP layer itself rejects before it is a request (431 for
//! oversized headers, 400 for a broken framing) reaches no handler and so has no user to name;
//! those are covered by `catalogue_tokens.rs` and `catalogue_headers.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use kubegate_e2e::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_denial_and_upgrade_has_exactly_one_record() {
    let stack = Stack::start(Options { environments: 1, ..Options::default() }).await;
    let env = stack.register(0, "one").await;
    let una = stack.create_user("una", "una-password", "user").await;
    stack
        .set_access(env, json!([{"userId": una, "role": "standard", "namespaces": ["dev"]}]), json!([]))
        .await;
    let kc = stack.kubeconfig_file(&stack.session("una", "una-password").await, &[env], "una").await;
    stack.wait_environment_everywhere(&kc).await;
    let token = token_of(&kc);
    let mut ids: HashSet<String> = HashSet::new();
    let mut expect: Vec<(String, u16, &str)> = Vec::new();
    let base = stack.url(&format!("/api/endpoints/{env}/kubernetes"));

    for (path, status, decision) in [
        ("/api/v1/namespaces/dev/pods", 200, "allowed"),
        ("/api/v1/namespaces/kube-system/secrets", 403, "denied"),
        ("/api/v1/namespaces/dev/pods/no-such-pod", 404, "allowed"),
    ] {
        let r = stack.client.get(format!("{base}{path}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let id = request_id(r.headers());
        ids.insert(id.clone());
        expect.push((id, status, decision));
    }
    // Unauthenticated: recorded too, with no user to name.
    let r = stack.client.get(format!("{base}/version")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let anonymous = request_id(r.headers());
    ids.insert(anonymous.clone());

    // Upgrades: kubectl exec over WebSocket (1.33) and SPDY (1.27), and one that fails (no pod).
    assert_eq!(ok(kubectl(33, &kc, &["exec", "api", "--", "echo", "ws"])).trim(), "ws");
    assert_eq!(ok(kubectl(27, &kc, &["exec", "api", "--", "echo", "spdy"])).trim(), "spdy");
    // (kubectl looks the pod up first, so the failing upgrade is sent by hand.)
    let mut raw = kubegate_e2e::wire::Raw::connect(stack.public_port, &stack.ca_pem, &[]).await;
    raw.send(
        format!(
            "GET /api/endpoints/{env}/kubernetes/api/v1/namespaces/dev/pods/no-such-pod/exec?command=true&stdout=true HTTP/1.1\r\n\
             Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let failed = raw.response(Duration::from_secs(20)).await.unwrap();
    assert_eq!(failed.status, 404, "{}", failed.head);
    let failed_id = failed.header("x-kubegate-request-id").unwrap();
    ids.insert(failed_id.clone());
    expect.push((failed_id, 404, "allowed"));

    let records = audit_covers(&stack, &ids, Duration::from_secs(30)).await;
    for (id, status, decision) in &expect {
        let r = audited(&records, id);
        assert_eq!(r["status"], *status, "{r}");
        assert_eq!(r["decision"], *decision, "{r}");
        assert_eq!(r["subject"]["username"], "una", "{r}");
        assert_eq!(r["subject"]["impersonated_user"], "kubegate:una", "{r}");
        assert!(
            r["subject"]["impersonated_groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "kubegate:role:standard"),
            "{r}"
        );
    }
    let r = audited(&records, &anonymous);
    assert_eq!(r["decision"], "denied");
    assert!(r["subject"].get("username").is_none(), "{r}");

    // The exec sessions: one request record each (101 twice; the failed one once, not 101),
    // and a start and an end record per session.
    let payloads: Vec<(String, Value)> = records
        .iter()
        .map(|e| (e.event_type.clone(), serde_json::from_str(e.payload.get()).unwrap()))
        .collect();
    let execs: Vec<&Value> = payloads
        .iter()
        .filter(|(t, p)| t == "RequestAudited" && p["target"]["subresource"] == "exec")
        .map(|(_, p)| p)
        .collect();
    let upgraded: Vec<&&Value> = execs.iter().filter(|p| p["status"] == 101).collect();
    assert_eq!(upgraded.len(), 2, "{execs:?}");
    let failed: Vec<&&Value> = execs.iter().filter(|p| p["status"] != 101).collect();
    assert_eq!(failed.len(), 1, "the failed upgrade has no record, or several: {execs:?}");
    for p in &execs {
        assert_eq!(p["subject"]["username"], "una", "{p}");
        assert_eq!(p["subject"]["impersonated_user"], "kubegate:una", "{p}");
    }
    let request_ids: HashSet<&str> = execs.iter().map(|p| p["request_id"].as_str().unwrap()).collect();
    assert_eq!(request_ids.len(), execs.len(), "an exec request has two records");
    let started = payloads.iter().filter(|(t, _)| t == "SessionStarted").count();
    let ended = payloads.iter().filter(|(t, _)| t == "SessionEnded").count();
    assert_eq!((started, ended), (2, 2), "one start and one end record per session");
}
