//! Security catalogue, "Paths and authorization", end to end against the real proxy: encoded
//! and malformed paths (sent as raw bytes, since HTTP client libraries normalize them), the
//! namespaced-path trick for cluster-scoped resources, the API server's verb rules (checked in
//! the audit record the proxy wrote for each request), subresources, query parameters that
//! must mean nothing, environment confinement and non-resource paths. The exhaustive tables
//! are unit tests in `services/proxy/src/request_info/tests.rs` and `src/authz/tests.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use kubegate_e2e::wire::{self, Raw};
use kubegate_e2e::*;
use serde_json::json;

struct Client<'a> {
    stack: &'a Stack,
    env: u64,
    token: String,
}

impl Client<'_> {
    /// Sends `method path` as raw HTTP/1.1 bytes (the path exactly as given); status and the
    /// audit record id.
    async fn raw(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut raw = Raw::connect(self.stack.public_port, &self.stack.ca_pem, &[b"http/1.1"]).await;
        let target = format!("/api/endpoints/{}/kubernetes{path}", self.env);
        let mut bytes = match body {
            Some(b) => {
                let cl = format!("Content-Length: {}", b.len());
                wire::request(method, &target, &self.token, &["Content-Type: application/json", &cl])
            }
            None => wire::request(method, &target, &self.token, &[]),
        };
        if let Some(b) = body {
            bytes.extend_from_slice(b.as_bytes());
        }
        raw.send(&bytes).await.unwrap();
        let r = if method == "HEAD" {
            raw.head_response(Duration::from_secs(20)).await
        } else {
            raw.response(Duration::from_secs(20)).await
        };
        let r = r.unwrap_or_else(|| panic!("no answer to {method} {path}"));
        (r.status, r.header("x-kubegate-request-id").unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_verbs_subresources_and_environments_are_authorized_as_the_api_server_would() {
    let stack =
        Stack::start(Options { proxies: 1, environments: 2, load_balancer: false, ..Options::default() })
            .await;
    let a = stack.register(0, "a").await;
    let b = stack.register(1, "b").await;
    let ron = stack.create_user("ron", "ron-password", "user").await;
    let sam = stack.create_user("sam", "sam-password", "user").await;
    stack
        .set_access(
            a,
            json!([{"userId": ron, "role": "read-only", "namespaces": ["dev"]},
                   {"userId": sam, "role": "standard", "namespaces": ["dev"]}]),
            json!([]),
        )
        .await;
    let ron_kc = stack.kubeconfig_file(&stack.session("ron", "ron-password").await, &[a], "ron").await;
    let sam_kc = stack.kubeconfig_file(&stack.session("sam", "sam-password").await, &[a], "sam").await;
    let admin_kc = stack.kubeconfig_file(&stack.admin, &[a], "admin").await;
    stack.wait_environment_everywhere(&ron_kc).await;
    let ron = Client { stack: &stack, env: a, token: token_of(&ron_kc) };
    let sam = Client { stack: &stack, env: a, token: token_of(&sam_kc) };
    let admin = Client { stack: &stack, env: a, token: token_of(&admin_kc) };
    let mut ids = HashSet::new();

    // Encoded and malformed paths: refused (never authorized as one path, forwarded as another).
    stack.sims[0].clear_requests();
    for path in [
        "/api/v1/namespaces/dev/pods/../../kube-system/secrets",
        "/api/v1/namespaces/dev/pods/./api",
        "/api/v1/namespaces/dev/pods/%2e%2e/%2e%2e/kube-system/secrets",
        "/api/v1/namespaces/dev/pods/%2E%2E",
        "/api/v1/namespaces/dev%2Fpods",
        "/api/v1/namespaces/kube-system%2Fsecrets",
        "/api/v1/namespaces/dev/pods;param",
        "/api/v1/namespaces/dev/pods/api;x=../../secrets",
        "/api/v1/namespaces/dev/pods/api%00",
        "//api/v1/namespaces/kube-system/secrets",
    ] {
        let (status, id) = sam.raw("GET", path, None).await;
        assert_eq!(status, 400, "{path}");
        ids.insert(id);
    }
    assert!(
        stack.sims[0].requests().is_empty(),
        "a refused path reached the cluster: {:?}",
        stack.sims[0].requests()
    );
    // A fragment is dropped by the HTTP layer before anything looks at the path: what is
    // authorized (list pods in dev) is what is forwarded, and no part of it reaches the cluster.
    let (status, id) = sam.raw("GET", "/api/v1/namespaces/dev/pods#/../../kube-system/secrets", None).await;
    assert_eq!(status, 200);
    ids.insert(id.clone());
    let fragment_id = id;
    assert!(
        stack.sims[0].requests().iter().all(|r| !r.path.contains("kube-system") && !r.path.contains("..")),
        "a refused path reached the cluster: {:?}",
        stack.sims[0].requests()
    );
    // Double-encoded (%252F, %252e%252e): refused too — one decoding would give a name with
    // '%' in it, which no Kubernetes object can have.
    stack.sims[0].clear_requests();
    for path in ["/api/v1/namespaces/dev/pods/api%252Fx", "/api/v1/namespaces/dev/pods/%252e%252e/secrets"] {
        let (status, id) = sam.raw("GET", path, None).await;
        assert_eq!(status, 400, "{path}");
        ids.insert(id);
    }
    assert!(stack.sims[0].requests().is_empty(), "{:?}", stack.sims[0].requests());

    // A cluster-scoped resource reached through /namespaces/x/ (CVE-2019-11247): denied.
    for (method, path) in [
        ("GET", "/api/v1/namespaces/dev/nodes"),
        ("DELETE", "/api/v1/namespaces/dev/nodes/node-1"),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterroles"),
        ("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterrolebindings"),
        ("DELETE", "/api/v1/namespaces/dev/persistentvolumes/pv-1"),
        ("GET", "/apis/apiextensions.k8s.io/v1/namespaces/dev/customresourcedefinitions"),
    ] {
        let body = (method == "POST").then_some("{}");
        let (status, id) = sam.raw(method, path, body).await;
        assert_eq!(status, 403, "{method} {path}");
        ids.insert(id);
    }

    // The verb rules, as the audit record shows them.
    let mut verbs = Vec::new();
    for (method, path, want, status) in [
        ("DELETE", "/api/v1/namespaces/dev/pods", "deletecollection", 403),
        ("DELETE", "/api/v1/namespaces/dev/pods/api", "delete", 403),
        ("GET", "/api/v1/namespaces/dev/pods?watch=1&timeoutSeconds=1", "watch", 200),
        ("GET", "/api/v1/namespaces/dev/pods?watch=true&timeoutSeconds=1", "watch", 200),
        ("GET", "/api/v1/namespaces/dev/pods?watch=false", "list", 200),
        ("GET", "/api/v1/watch/namespaces/dev/pods?timeoutSeconds=1", "watch", 200),
        ("GET", "/api/v1/watch/namespaces/dev/pods/api?timeoutSeconds=1", "watch", 200),
        ("HEAD", "/api/v1/namespaces/dev/pods/api", "get", 200),
        ("GET", "/api/v1/namespaces/dev/pods/api", "get", 200),
        ("GET", "/api/v1/namespaces/dev/pods", "list", 200),
    ] {
        let (got, id) = ron.raw(method, path, None).await;
        assert_eq!(got, status, "{method} {path}");
        verbs.push((method, path, want, id.clone()));
        ids.insert(id);
    }

    // Subresources, each on its own; proxy subresources need an explicit permission.
    for (client, method, path, status) in [
        (&ron, "POST", "/api/v1/namespaces/dev/pods/api/exec?command=sh&stdout=true", 403),
        (&ron, "POST", "/api/v1/namespaces/dev/pods/api/attach?stdout=true", 403),
        (&ron, "POST", "/api/v1/namespaces/dev/pods/api/portforward?ports=80", 403),
        (&ron, "GET", "/api/v1/namespaces/dev/pods/api/log", 200),
        (&ron, "PATCH", "/api/v1/namespaces/dev/pods/api/ephemeralcontainers", 403),
        (&sam, "GET", "/api/v1/namespaces/dev/pods/api/proxy/", 403),
        (&sam, "GET", "/api/v1/namespaces/dev/services/web/proxy/", 403),
        (&sam, "GET", "/api/v1/namespaces/dev/services/https:web:443/proxy/metrics", 403),
        (&sam, "GET", "/api/v1/nodes/node-1/proxy/metrics", 403),
        (&sam, "GET", "/api/v1/namespaces/dev/pods/api/log", 200),
    ] {
        let body = (method == "PATCH").then_some("{}");
        let (got, id) = client.raw(method, path, body).await;
        assert_eq!(got, status, "{method} {path}");
        ids.insert(id);
    }
    let (got, _) = admin.raw("GET", "/api/v1/nodes/node-1/proxy/metrics", None).await;
    assert_ne!(got, 403, "the admin has the explicit permission");

    // dryRun lowers no check; ?as= and ?impersonate-user= mean nothing.
    stack.sims[0].clear_requests();
    for (method, path) in [
        ("POST", "/api/v1/namespaces/dev/configmaps?dryRun=All"),
        ("POST", "/api/v1/namespaces/dev/configmaps?as=admin"),
        ("POST", "/api/v1/namespaces/dev/configmaps?impersonate-user=admin&impersonate-group=system:masters"),
        ("GET", "/api/v1/namespaces/kube-system/secrets?as=system:admin"),
        ("GET", "/api/v1/namespaces/default/pods?dryRun=All&impersonate-user=admin"),
    ] {
        let body =
            (method == "POST").then_some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#);
        let (got, id) = ron.raw(method, path, body).await;
        assert_eq!(got, 403, "{method} {path}");
        ids.insert(id);
    }
    assert!(stack.sims[0].requests().is_empty(), "a refused request reached the cluster");
    let (got, id) = ron.raw("GET", "/api/v1/namespaces/dev/pods?as=admin", None).await;
    assert_eq!(got, 200);
    ids.insert(id);
    let r = stack.sims[0].requests();
    assert_eq!(r.last().unwrap().header_all("impersonate-user"), vec!["kubegate:ron"]);

    // A token of environment a used at environment b's route, without access there: 403.
    let other = Client { stack: &stack, env: b, token: sam.token.clone() };
    let (got, id) = other.raw("GET", "/api/v1/namespaces/dev/pods", None).await;
    assert_eq!(got, 403);
    ids.insert(id);
    assert!(stack.sims[1].requests().is_empty(), "environment b was reached");

    // Non-resource paths: an explicit list; the rest is denied for non-admins.
    for (path, status) in [
        ("/version", 200),
        ("/api", 200),
        ("/apis", 200),
        ("/openapi/v2", 200),
        ("/metrics", 403),
        ("/logs/", 403),
        ("/debug/pprof/", 403),
        ("/unknown/path", 403),
        ("/livez", 200),
        ("/livez/etcd", 403),
    ] {
        let (got, id) = ron.raw("GET", path, None).await;
        assert_eq!(got, status, "{path}");
        ids.insert(id);
    }
    let (got, _) = admin.raw("GET", "/metrics", None).await;
    assert_ne!(got, 403, "admins may reach any non-resource path");

    let records = audit_covers(&stack, &ids, Duration::from_secs(30)).await;
    let fragment = audited(&records, &fragment_id);
    assert!(
        fragment["target"]["path"].as_str().unwrap().ends_with("/kubernetes/api/v1/namespaces/dev/pods"),
        "{fragment}"
    );
    assert_eq!(fragment["target"]["verb"], "list", "{fragment}");
    for (method, path, want, id) in verbs {
        let record = audited(&records, &id);
        assert_eq!(record["target"]["verb"], want, "{method} {path}: {record}");
    }
}
