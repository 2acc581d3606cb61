//! Faults: NATS away for 20 s (replicas keep serving; a revocation made meanwhile applies soon
//! after NATS returns; audit records made meanwhile all arrive), and a replica killed under load
//! (the other keeps serving; the restarted one is ready only once caught up). Every request has
//! exactly one audit record, numbered without gaps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kubegate_e2e::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_loses_nothing() {
    let mut stack = Stack::start(Options { environments: 1, ..Options::default() }).await;
    let env = stack.register(0, "one").await;
    let carol = stack.create_user("carol", "carol-password", "user").await;
    stack.set_access(env, json!([{"userId": carol, "role": "operator"}]), json!([])).await;
    let session = stack.session("carol", "carol-password").await;
    let kc = stack.kubeconfig_file(&session, &[env], "carol").await;
    stack.wait_environment_everywhere(&kc).await;
    let token = token_of(&kc);
    let mut ids = HashSet::new();
    for port in stack.proxy_ports.clone() {
        let (status, id) = stack.kube_get(Some(port), env, &token, "/api/v1/namespaces/default/pods").await;
        assert_eq!(status, 200);
        ids.insert(id);
    }

    stack.nats.stop();
    let outage = Instant::now();
    // Replicas keep serving from what they know; every request is audited (spooled).
    let mut during = 0;
    while outage.elapsed() < Duration::from_secs(20) {
        for port in stack.proxy_ports.clone() {
            let (status, id) = stack.kube_get(Some(port), env, &token, "/api/v1/namespaces/dev/pods").await;
            assert_eq!(status, 200, "a replica stopped serving during the outage");
            ids.insert(id);
            during += 1;
        }
        if outage.elapsed() > Duration::from_secs(5) && outage.elapsed() < Duration::from_secs(6) {
            // Identity still works (it keeps events in its outbox): revoke carol's tokens now.
            let (status, _) = stack
                .api(
                    "POST",
                    &format!("/api/users/{carol}/kubeconfig-tokens/revoke"),
                    Some(&stack.admin),
                    None,
                )
                .await;
            assert_eq!(status, 204);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(during > 50);
    // The revocation was made but cannot be known yet: the token still works.
    let (status, _) = stack.kube_get(Some(stack.proxy_ports[0]), env, &token, "/version").await;
    assert_eq!(status, 200, "nothing could have told the replica");

    stack.nats.start();
    let back = Instant::now();
    loop {
        let mut refused = 0;
        for port in stack.proxy_ports.clone() {
            let (status, id) = stack.kube_get(Some(port), env, &token, "/version").await;
            ids.insert(id);
            if status == 401 {
                refused += 1;
            }
        }
        if refused == stack.proxy_ports.len() {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "revocation not applied 10 s after NATS returned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = back.elapsed();
    assert!(took < Duration::from_secs(2), "the revocation applied {took:?} after NATS returned");

    // Every audit record made during the outage arrives.
    audit_covers(&stack, &ids, Duration::from_secs(30)).await;
    stack.reconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_survived_and_catches_up_before_serving() {
    let mut stack = Stack::start(Options { environments: 1, ..Options::default() }).await;
    let (env, _, token) = stack.admin_ready(0, "one").await;

    // Load through the load balancer while replica 0 dies.
    let url = stack.url(&format!("/api/endpoints/{env}/kubernetes/api/v1/namespaces/default/pods"));
    let client = stack.client.clone();
    let load_token = token.clone();
    let load = tokio::spawn(async move {
        let mut ok = 0u32;
        let mut failed_after_grace = 0u32;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(6) {
            match client.get(&url).bearer_auth(&load_token).send().await {
                Ok(r) if r.status().is_success() => ok += 1,
                // The health check needs up to ~1 s to notice a dead replica.
                _ if start.elapsed() > Duration::from_secs(3) => failed_after_grace += 1,
                _ => {}
            }
        }
        (ok, failed_after_grace)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.proxies[0].kill();
    let (ok, failed_after_grace) = load.await.unwrap();
    assert!(ok > 20, "only {ok} requests succeeded");
    assert_eq!(failed_after_grace, 0, "the surviving replica must carry the load");

    // While it is down, a new user and environment appear; restarted, it must know them
    // before it says it is ready.
    let dave = stack.create_user("dave", "dave-password", "user").await;
    stack
        .set_access(env, json!([{"userId": dave, "role": "read-only", "namespaces": ["dev"]}]), json!([]))
        .await;
    let dave_session = stack.session("dave", "dave-password").await;
    let dave_kc = stack.kubeconfig_file(&dave_session, &[env], "dave").await;
    let dave_token = token_of(&dave_kc);
    stack.proxies[0].start();
    let start = Instant::now();
    while !stack.proxies[0].is_ready() {
        assert!(start.elapsed() < Duration::from_secs(30), "restarted replica never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.reconnect();
    let (status, _) =
        stack.kube_get(Some(stack.proxy_ports[0]), env, &dave_token, "/api/v1/namespaces/dev/pods").await;
    assert_eq!(status, 200, "ready means caught up: the new user and grant are known");
    let (status, _) =
        stack.kube_get(Some(stack.proxy_ports[0]), env, &dave_token, "/api/v1/namespaces/default/pods").await;
    assert_eq!(status, 403);
}
