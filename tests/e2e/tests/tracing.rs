//! Trace context crosses the proxy: with OpenTelemetry export on, a request's `traceparent`
//! reaches the cluster as a child in the same trace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubegate_e2e::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_trace_continues_upstream() {
    // Export goes to a port nobody listens on: spans are made and carried, their export fails
    // quietly in the background.
    let closed = kubegate_testsupport::net::free_port();
    let options = Options {
        proxies: 1,
        environments: 1,
        load_balancer: false,
        proxy_env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://127.0.0.1:{closed}"))],
        ..Options::default()
    };
    let stack = Stack::start(options).await;
    let env = stack.register(0, "one").await;
    let kc = stack.kubeconfig_file(&stack.admin, &[env], "admin").await;
    stack.wait_environment_everywhere(&kc).await;
    let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&kc).unwrap()).unwrap();
    let token = doc["users"][0]["user"]["token"].as_str().unwrap().to_string();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let r = stack
        .client
        .get(stack.url(&format!("/api/endpoints/{env}/kubernetes/api/v1/namespaces/default/pods")))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let seen = stack.sims[0]
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/api/v1/namespaces/default/pods")
        .and_then(|r| r.header("traceparent").map(str::to_string))
        .expect("the upstream request carries a traceparent");
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "{seen}");
    assert_eq!(parts[1], trace_id, "same trace");
    assert_ne!(parts[2], parent, "a child span of the proxy, not the caller's span");
}
