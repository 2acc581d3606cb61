//! Bodies stream through the proxy: a 100 MB list passes while the replica's memory stays flat,
//! and every request the cluster saw has exactly one audit record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kubegate_e2e::*;
use serde_json::Value;

/// Resident and peak resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_list_streams_with_flat_memory_and_every_request_is_audited() {
    let stack =
        Stack::start(Options { proxies: 1, environments: 1, load_balancer: false, ..Options::default() })
            .await;
    let (env, kc, token) = stack.admin_ready(0, "one").await;
    let pid = stack.proxies[0].pid().unwrap();

    // Warm up the path so connection pools and caches exist before measuring.
    ok(kubectl(33, &kc, &["get", "pods", "-A"]));
    let (_, peak_before) = memory_kib(pid);

    const SIZE: u64 = 100 * 1024 * 1024;
    stack.sims[0].knobs().set_large_list_bytes(SIZE);
    let url = stack.url(&format!("/api/endpoints/{env}/kubernetes/api/v1/namespaces/large/pods"));
    let mut resp = stack.client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut received: u64 = 0;
    let start = Instant::now();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        received += chunk.len() as u64;
        assert!(start.elapsed() < Duration::from_secs(120), "the list took too long to arrive");
    }
    assert!(received >= SIZE, "received {received} bytes");
    let (_, peak_after) = memory_kib(pid);
    let grew_mib = peak_after.saturating_sub(peak_before) / 1024;
    assert!(grew_mib < 40, "the proxy's peak memory grew by {grew_mib} MiB for a 100 MiB list: it buffered");
    stack.sims[0].knobs().clear_large_list();

    // Every request kube-sim received came through the proxy with a request id, and each id has
    // exactly one audit record.
    let ids: Vec<String> = stack.sims[0]
        .requests()
        .into_iter()
        .filter_map(|r| r.header("x-kubegate-request-id").map(str::to_string))
        .collect();
    assert!(ids.len() >= 5, "{ids:?}");
    let bus = stack.bus().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = bus.last_sequence("KUBEGATE_AUDIT").await.unwrap_or(0);
        let records = read_stream(&bus, "KUBEGATE_AUDIT", n.max(1), Duration::from_secs(10)).await;
        let mut count: HashMap<&str, usize> = HashMap::new();
        for r in records.iter().filter(|r| r.event_type == "RequestAudited") {
            *count.entry(r.correlation_id.as_str()).or_default() += 1;
        }
        if ids.iter().all(|id| count.contains_key(id.as_str())) {
            for id in &ids {
                assert_eq!(count[id.as_str()], 1, "request {id}");
            }
            let big = records.iter().find(|r| r.payload.get().contains("/namespaces/large/pods")).unwrap();
            let bytes_out =
                serde_json::from_str::<Value>(big.payload.get()).unwrap()["bytes_out"].as_u64().unwrap();
            assert!(bytes_out >= SIZE, "the audit record counts the bytes sent: {bytes_out}");
            break;
        }
        assert!(Instant::now() < deadline, "some forwarded requests have no audit record");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// More watches than one upstream h2 connection carries (kube-sim, like kube-apiserver, allows
/// 1,000 concurrent streams per connection): every one is answered, and every one sees an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_beyond_one_upstream_connection_limit_all_see_events() {
    const WATCHES: usize = 1_200;
    const PER_CONNECTION: usize = 200;
    let stack = Stack::start(Options {
        proxies: 1,
        environments: 1,
        load_balancer: false,
        proxy_env: vec![("KUBEGATE_MAX_WATCHES_PER_USER".into(), "5000".into())],
        ..Options::default()
    })
    .await;
    let (env, _, token) = stack.admin_ready(0, "one").await;
    let port = stack.proxy_ports[0];
    let authority = format!("127.0.0.1:{port}");
    let uri = format!(
        "https://{authority}/api/endpoints/{env}/kubernetes/api/v1/namespaces/default/configmaps?watch=true"
    );

    let mut conns = Vec::new();
    for _ in 0..WATCHES / PER_CONNECTION {
        let h2 = kubegate_e2e::wire::h2_client(port, &stack.ca_pem).await;
        let (uri, auth) = (uri.clone(), format!("Bearer {token}"));
        conns.push(tokio::spawn(async move {
            let mut h2 = h2.ready().await.unwrap();
            let mut pending = Vec::new();
            for _ in 0..PER_CONNECTION {
                let req = http::Request::get(&uri).header("authorization", &auth).body(()).unwrap();
                h2 = h2.ready().await.unwrap();
                pending.push(h2.send_request(req, true).unwrap().0);
            }
            // Each body is read from the moment its watch is answered (a client that leaves
            // small frames unread is cut off by its own h2 library).
            let mut readers = Vec::new();
            for resp in pending {
                let resp = resp.await.unwrap();
                assert_eq!(resp.status(), 200);
                let mut body = resp.into_body();
                readers.push(tokio::spawn(async move {
                    let mut text = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let Ok(chunk) = chunk else { return false };
                        let _ = body.flow_control().release_capacity(chunk.len());
                        text.extend_from_slice(&chunk);
                        if String::from_utf8_lossy(&text).contains("fan-out-marker") {
                            return true;
                        }
                    }
                    false
                }));
            }
            (readers, h2)
        }));
    }
    let mut readers = Vec::new();
    let mut keep = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(120), async {
        for c in conns {
            let (r, h2) = c.await.unwrap();
            readers.extend(r);
            keep.push(h2);
        }
    })
    .await;
    assert!(answered.is_ok(), "only {} of {WATCHES} watches were answered", readers.len());

    let created = stack
        .client
        .post(stack.url(&format!("/api/endpoints/{env}/kubernetes/api/v1/namespaces/default/configmaps")))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fan-out-marker"}, "data": {}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201, "{}", created.text().await.unwrap());

    let start = Instant::now();
    let all = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(readers)).await;
    let all = all.expect("not every watch saw the event within 60 s");
    let got = all.into_iter().filter(|r| matches!(r, Ok(true))).count();
    println!("{got} of {WATCHES} watches saw the event, the last after {:?}", start.elapsed());
    assert_eq!(got, WATCHES);
    drop(keep);
}
