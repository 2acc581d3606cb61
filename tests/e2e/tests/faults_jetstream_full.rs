//! Fault: JetStream's disk full. A nats-server with a tiny `max_file_store` is filled to the
//! brim by another stream; meanwhile the proxy serves requests (their audit records cannot be
//! stored: they are spooled locally) and identity commits new users (its outbox cannot publish:
//! it keeps the events and retries with back-off). Once space is freed, every audit record
//! arrives exactly once with gap-free numbering, and the identity stream holds the whole log —
//! positions 1..=n, each once — so the proxy learns the new users.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{Config, StorageType};
use kubegate_e2e::*;

async fn get(stack: &Stack, env: u64, token: &str) -> String {
    let (status, id) = stack.kube_get(None, env, token, "/api/v1/namespaces/default/pods").await;
    assert_eq!(status, 200, "the proxy must keep serving while JetStream is full");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_jetstream_store_loses_no_audit_record_and_no_event() {
    let stack = Stack::start(Options {
        proxies: 1,
        environments: 1,
        load_balancer: false,
        nats_max_file_store: Some("8MB".into()),
        ..Options::default()
    })
    .await;
    let (env, _, token) = stack.admin_ready(0, "one").await;
    let mut ids = HashSet::new();
    ids.insert(get(&stack, env, &token).await);

    // Fill the store with another stream until JetStream refuses to store more.
    let bus = stack.bus().await;
    let js = bus.jetstream();
    js.create_stream(Config {
        name: "FILLER".into(),
        subjects: vec!["filler.>".into()],
        storage: StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let mut stored = 0usize;
    let full = loop {
        match js.publish("filler.data", chunk.clone()).await {
            Ok(ack) => match ack.await {
                Ok(_) => stored += 1,
                Err(e) => break e.to_string(),
            },
            Err(e) => break e.to_string(),
        }
        assert!(stored < 1024, "JetStream took 64 MB into an 8 MB store");
    };
    println!("JetStream full after {stored} filler messages: {full}");

    // Requests go on; identity commits new users.
    let full_at = Instant::now();
    while full_at.elapsed() < Duration::from_secs(3) {
        ids.insert(get(&stack, env, &token).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap();
    let mut new_users = Vec::new();
    for i in 0..5 {
        new_users.push(stack.create_user(&format!("late-{i}"), "late-password", "user").await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap(),
        before,
        "an event was stored into a full store"
    );

    // Space freed: the spool drains, the outbox delivers.
    js.delete_stream("FILLER").await.unwrap();
    let records = audit_covers(&stack, &ids, Duration::from_secs(60)).await;
    println!("{} requests, {} audit records after the store had room again", ids.len(), records.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap();
        let events = read_stream(&bus, "KUBEGATE_IDENTITY", last, Duration::from_secs(10)).await;
        let created = events
            .iter()
            .filter(|e| e.event_type == "UserCreated")
            .filter(|e| e.payload.get().contains("\"late-"))
            .count();
        if created == new_users.len() {
            let mut positions: Vec<u64> = events.iter().map(|e| e.position).collect();
            positions.sort_unstable();
            assert_eq!(positions, (1..=positions.len() as u64).collect::<Vec<_>>(), "lost or doubled events");
            break;
        }
        assert!(Instant::now() < deadline, "the outbox delivered {created} of {} new users", new_users.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The proxy learned them: a new user's session works through the proxy's passthrough and a
    // kubeconfig download is refused only for want of access, not for an unknown user.
    let session = stack.session("late-0", "late-password").await;
    let (status, body) =
        stack.api("GET", &format!("/api/kubernetes/config?ids=[{env}]"), Some(&session), None).await;
    assert_eq!(status, 403, "{body}");
}
