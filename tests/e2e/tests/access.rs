//! Who may do what: a standard user confined to a granted namespace, and every way a token
//! stops working (revoked, revoked wholesale, user disabled), on both replicas within a second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kubegate_e2e::*;
use serde_json::json;

/// Status of GET /version through each replica directly.
async fn statuses(stack: &Stack, env: u64, token: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for port in &stack.proxy_ports {
        let r = stack
            .client
            .get(format!("https://127.0.0.1:{port}/api/endpoints/{env}/kubernetes/version"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        out.push(r.status().as_u16());
    }
    out
}

/// Waits until every replica answers 401 to `token`; returns how long it took.
async fn refused_everywhere(stack: &Stack, env: u64, token: &str) -> Duration {
    let start = Instant::now();
    loop {
        if statuses(stack, env, token).await.iter().all(|s| *s == 401) {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "token still accepted after 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_user_stays_in_the_granted_namespace() {
    let stack = Stack::start(Options::default()).await;
    let one = stack.register(0, "one").await;
    let two = stack.register(1, "two").await;
    let alice = stack.create_user("alice", "alice-password", "user").await;
    stack
        .set_access(one, json!([{"userId": alice, "role": "standard", "namespaces": ["dev"]}]), json!([]))
        .await;
    let session = stack.session("alice", "alice-password").await;

    // Only the granted environment can be downloaded.
    let (status, body) =
        stack.api("GET", &format!("/api/kubernetes/config?ids=[{two}]"), Some(&session), None).await;
    assert_eq!(status, 403, "{body}");
    let kc = stack.kubeconfig_file(&session, &[one], "alice").await;
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(text.contains("namespace: \"dev\"") || text.contains("namespace: dev"), "{text}");
    stack.wait_environment_everywhere(&kc).await;

    // Allowed in dev (the context's namespace).
    assert!(ok(kubectl(33, &kc, &["get", "pods"])).contains("worker"));
    assert_eq!(ok(kubectl(33, &kc, &["exec", "api", "--", "echo", "in-dev"])).trim(), "in-dev");
    // Refused elsewhere, with a message a person can act on.
    fails_with(kubectl(33, &kc, &["get", "pods", "-n", "default"]), "Forbidden");
    let out = kubectl(33, &kc, &["get", "pods", "-n", "kube-system"]);
    assert!(stderr(&out).contains("kube-system"), "{}", stderr(&out));
    fails_with(kubectl(33, &kc, &["get", "pods", "-A"]), "Forbidden");
    fails_with(kubectl(33, &kc, &["exec", "-n", "default", "nginx", "--", "echo", "no"]), "Forbidden");
    // Namespaces: only theirs, as a list, as a Table, and in a watch.
    let ns = ok(kubectl(33, &kc, &["get", "ns", "-o", "name"]));
    assert_eq!(ns.trim(), "namespace/dev");
    let table = ok(kubectl(33, &kc, &["get", "ns"]));
    assert!(table.contains("dev") && !table.contains("kube-system") && !table.contains("default"), "{table}");
    let mut watch = Running::start(33, &kc, &["get", "ns", "-w", "-o", "name"], &[]);
    watch.wait_line("namespace/dev", Duration::from_secs(20)).await;
    stack.sims[0]
        .apply_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "secret-team"}}))
        .unwrap();
    stack.sims[0]
        .apply_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev", "labels": {"touched": "yes"}}}))
        .unwrap();
    watch.wait_line("namespace/dev", Duration::from_secs(20)).await;
    assert!(watch.seen.iter().all(|l| !l.contains("secret-team")), "{:?}", watch.seen);
    drop(watch);
    // The other environment is out of reach even with a valid token.
    let (status, body) = {
        let r = stack
            .client
            .get(stack.url(&format!("/api/endpoints/{two}/kubernetes/api/v1/namespaces/dev/pods")))
            .bearer_auth(token_of(&kc))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(&format!("no access to environment {two}")), "{body}");

    // The cluster saw alice with the standard role group.
    let last =
        stack.sims[0].requests().into_iter().rev().find(|r| r.path.contains("/namespaces/dev/pods")).unwrap();
    let groups: Vec<&str> =
        last.headers.iter().filter(|(k, _)| k == "impersonate-group").map(|(_, v)| v.as_str()).collect();
    assert_eq!(groups, vec!["kubegate:role:standard", "system:authenticated"]);
    assert_eq!(last.header("impersonate-user"), Some("kubegate:alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_and_disabled_users_are_refused_on_every_replica_within_a_second() {
    let stack = Stack::start(Options { environments: 1, ..Options::default() }).await;
    let env = stack.register(0, "one").await;
    let bob = stack.create_user("bob", "bob-password", "user").await;
    stack.set_access(env, json!([{"userId": bob, "role": "operator"}]), json!([])).await;
    let session = stack.session("bob", "bob-password").await;

    // One token revoked.
    let kc = stack.kubeconfig_file(&session, &[env], "bob-1").await;
    stack.wait_environment_everywhere(&kc).await;
    let token = token_of(&kc);
    assert_eq!(statuses(&stack, env, &token).await, vec![200, 200]);
    let (status, _) = stack
        .api("DELETE", &format!("/api/kubeconfig-tokens/{}", jti(&token)), Some(&stack.admin), None)
        .await;
    assert_eq!(status, 204);
    let took = refused_everywhere(&stack, env, &token).await;
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");
    let r = stack
        .client
        .get(stack.url(&format!("/api/endpoints/{env}/kubernetes/version")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("token revoked"));

    // All of a user's tokens.
    let kc2 = stack.kubeconfig_file(&session, &[env], "bob-2").await;
    let kc3 = stack.kubeconfig_file(&session, &[env], "bob-3").await;
    let (t2, t3) = (token_of(&kc2), token_of(&kc3));
    assert_eq!(statuses(&stack, env, &t2).await, vec![200, 200]);
    let (status, _) = stack
        .api("POST", &format!("/api/users/{bob}/kubeconfig-tokens/revoke"), Some(&stack.admin), None)
        .await;
    assert_eq!(status, 204);
    let took = refused_everywhere(&stack, env, &t2).await;
    assert!(took < Duration::from_secs(1), "revoke-all took {took:?}");
    refused_everywhere(&stack, env, &t3).await;

    // A disabled user (sign in again first: the revoke-all ended the session too).
    let session = stack.session("bob", "bob-password").await;
    let kc4 = stack.kubeconfig_file(&session, &[env], "bob-4").await;
    let t4 = token_of(&kc4);
    assert_eq!(statuses(&stack, env, &t4).await, vec![200, 200]);
    let (status, _) = stack
        .api("PUT", &format!("/api/users/{bob}"), Some(&stack.admin), Some(json!({"disabled": true})))
        .await;
    assert_eq!(status, 200);
    let took = refused_everywhere(&stack, env, &t4).await;
    assert!(took < Duration::from_secs(1), "disable took {took:?}");

    // A session token is refused by the proxy path; a token in ?token= is ignored.
    let r = stack
        .client
        .get(stack.url(&format!("/api/endpoints/{env}/kubernetes/version")))
        .bearer_auth(&stack.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().await.unwrap().contains("session tokens are not accepted here"));
    let admin_kc = stack.kubeconfig_file(&stack.admin, &[env], "admin").await;
    let admin_token = token_of(&admin_kc);
    let r = stack
        .client
        .get(stack.url(&format!("/api/endpoints/{env}/kubernetes/version?token={admin_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a query-string token must mean nothing");
    // A kubeconfig token is refused by the REST API.
    let (status, _) = stack.api("GET", "/api/users/me", Some(&admin_token), None).await;
    assert_eq!(status, 401);
    // And an open watch is closed when its token is revoked.
    let mut watch = Running::start(33, &admin_kc, &["get", "pods", "-w", "-n", "default"], &[]);
    watch.wait_line("nginx", Duration::from_secs(20)).await;
    let (status, _) = stack
        .api("DELETE", &format!("/api/kubeconfig-tokens/{}", jti(&admin_token)), Some(&stack.admin), None)
        .await;
    assert_eq!(status, 204);
    let exited = tokio::time::timeout(Duration::from_secs(5), watch.child.wait()).await;
    assert!(exited.is_ok(), "the watch stayed open after its token was revoked");
}
