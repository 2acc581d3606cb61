//! Fault: the audit stream deleted under a running proxy. The replica keeps serving (its cache
//! does not come from that stream), spools the records it cannot publish, recreates
//! `KUBEGATE_AUDIT` and delivers them: every request made after the deletion has exactly one
//! record, and the replica's numbering in the new stream has no gap. (Records already in the
//! deleted stream went with it: deleting a stream is an operator's act the bus permissions deny
//! to every service.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kubegate_e2e::*;

async fn get(stack: &Stack, env: u64, token: &str) -> String {
    let (status, id) = stack.kube_get(None, env, token, "/api/v1/namespaces/default/pods").await;
    assert_eq!(status, 200);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_audit_stream_is_recreated_and_no_record_is_lost() {
    let stack =
        Stack::start(Options { proxies: 1, environments: 1, load_balancer: false, ..Options::default() })
            .await;
    let (env, _, token) = stack.admin_ready(0, "one").await;
    let mut before = HashSet::new();
    for _ in 0..20 {
        before.insert(get(&stack, env, &token).await);
    }
    audit_covers(&stack, &before, Duration::from_secs(20)).await;

    let bus = stack.bus().await;
    bus.jetstream().delete_stream("KUBEGATE_AUDIT").await.unwrap();
    let deleted = Instant::now();
    let mut after = HashSet::new();
    while deleted.elapsed() < Duration::from_secs(3) {
        after.insert(get(&stack, env, &token).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let records = audit_covers(&stack, &after, Duration::from_secs(30)).await;
    println!(
        "{} requests after the deletion, all audited once; the new stream holds {} records",
        after.len(),
        records.len()
    );
    assert!(records.iter().all(|r| r.event_type != "RequestAudited" || !before.contains(&r.correlation_id)));
}
