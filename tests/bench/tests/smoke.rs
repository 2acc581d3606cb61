//! Every benchmark scenario in a tiny configuration (seconds, debug binaries): each must run
//! and produce numbers. Speeds are never asserted here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubegate_bench::scenarios::throughput::{NGINX_IMPERSONATING, TARGETS};
use kubegate_bench::{Plan, report, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_produces_numbers() {
    let mut plan = Plan::smoke();
    // Settings reach every service (a bad value would keep it from starting) and are reported.
    plan.service_env =
        ["proxy:KUBEGATE_PROXY_SERVE_SPIN=0s", "identity:KUBEGATE_LOG=info", "kubeconfig:KUBEGATE_LOG=info"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
    let results = run(plan.clone(), &[]).await;
    assert!(results.failures.is_empty(), "scenarios failed: {:#?}", results.failures);

    let micro = results.micro.as_ref().expect("micro-benchmarks ran");
    for name in ["token/check_cached", "token/check_uncached", "authz/list_pods"] {
        let m = micro.get(name).unwrap_or_else(|| panic!("no estimate for {name}: {micro:?}"));
        assert!(m.median_ns > 0.0, "{name}: {m:?}");
    }

    let t = results.throughput.as_ref().expect("throughput ran");
    assert_eq!(t.cells.len(), TARGETS.len() * 2 * plan.protos.len() * plan.connections.len());
    for cell in &t.cells {
        assert!(cell.rps > 0.0 && cell.p50_us > 0.0, "{cell:?}");
        assert_eq!(cell.bad_answers, 0, "every answer is a 200: {cell:?}");
        // Every path ends at kube-sim; only its own path charges the replica or nginx.
        assert!(cell.cpu.kube_sim_us > 0.0, "{cell:?}");
        match cell.target.as_str() {
            "kubegate" => assert!(cell.cpu.replica_us > 0.0 && cell.cpu.nats_us > 0.0, "{cell:?}"),
            "nginx" | NGINX_IMPERSONATING => assert!(cell.cpu.nginx_us > 0.0, "{cell:?}"),
            "direct" => {}
            other => panic!("unknown target {other}"),
        }
    }
    assert!(t.payload_bytes.iter().all(|(_, b)| *b > 1000), "{:?}", t.payload_bytes);

    let d = results.downloads.as_ref().expect("downloads ran");
    assert!(d.per_second > 0.0);
    let r = results.revocation.as_ref().expect("revocation ran");
    assert_eq!(r.revocations, plan.revocations);
    assert!(r.propagation_ms.max >= r.propagation_ms.p50);
    let w = results.watch.as_ref().expect("watch ran");
    assert_eq!(w.events.len(), plan.watch_events);
    assert!(w.rss_open_mib > 0.0);
    let c = results.cold_start.as_ref().expect("cold start ran");
    assert!(c.ready_s > 0.0 && c.rss_mib > 0.0 && c.full_replay_ready_s > 0.0);
    assert!(c.snapshot_mib > 0.0, "the identity service wrote no snapshot");
    let a = results.audit.as_ref().expect("audit replay ran");
    assert_eq!(a.records, plan.audit_records as u64);
    assert!(a.replay_s > 0.0);

    let md = report::markdown(&results);
    assert!(md.contains("`proxy:KUBEGATE_PROXY_SERVE_SPIN=0s`"), "the report names the run's settings");
    for heading in [
        "## Targets",
        "## 1. Throughput",
        "#### CPU time per request",
        "## 4. Cold start",
        "## 8. Micro",
        "## What was changed",
    ] {
        assert!(md.contains(heading), "report lacks {heading}");
    }
    assert_eq!(report::verdicts(&results).len(), 8);
}
