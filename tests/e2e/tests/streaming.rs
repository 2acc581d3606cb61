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

fn token_of(kubeconfig: &std::path::Path) -> String {
    let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    doc["users"][0]["user"]["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_list_streams_with_flat_memory_and_every_request_is_audited() {
    let stack = Stack::start(Options { proxies: 1, environments: 1, load_balancer: false, ..Options::default() }).await;
    let env = stack.register(0, "one").await;
    let kc = stack.kubeconfig_file(&stack.admin, &[env], "admin").await;
    stack.wait_environment_everywhere(&kc).await;
    let token = token_of(&kc);
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
            let bytes_out = serde_json::from_str::<Value>(big.payload.get()).unwrap()["bytes_out"].as_u64().unwrap();
            assert!(bytes_out >= SIZE, "the audit record counts the bytes sent: {bytes_out}");
            break;
        }
        assert!(Instant::now() < deadline, "some forwarded requests have no audit record");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
