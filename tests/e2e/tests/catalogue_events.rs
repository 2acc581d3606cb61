//! Security catalogue, "Events and outbox", the consumer side, end to end against a running
//! replica (strict staleness on), with events written straight into its streams:
//! - a re-publish of an old event after the de-duplication window (simulated by a new
//!   `Nats-Msg-Id`, so JetStream stores it again) is skipped: positions already applied are
//!   never applied twice;
//! - an event ahead of a gap is held back, not applied; when the gap does not close the replica
//!   fails closed (503), and when it closes both events apply in order;
//! - the stream deleted under the replica, or reset (recreated empty: its sequence goes
//!   backwards): detected, 503 instead of an empty cache, until the
//!   stream is rebuilt from the log;
//! - NATS away longer than `KUBEGATE_MAX_STALENESS`: 503 after the limit, served again on return.
//!
//! The outbox side (NATS bounced, JetStream full, PostgreSQL restarted) is in `faults_*.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use kubegate_bus::{Bus, StreamDef};
use kubegate_e2e::*;
use kubegate_events::access::EnvironmentRole;
use kubegate_events::environments::{AccessPolicySet, EnvironmentEvent, PolicyEntry};
use kubegate_events::{Actor, Envelope, RawEnvelope};
use serde_json::json;

const STREAM: &str = "KUBEGATE_ENVIRONMENTS";
const STALENESS: Duration = Duration::from_secs(3);

async fn get(stack: &Stack, env: u64, token: &str) -> u16 {
    let url = format!(
        "https://127.0.0.1:{}/api/endpoints/{env}/kubernetes/api/v1/namespaces/dev/pods",
        stack.proxy_ports[0]
    );
    match stack.client.get(url).bearer_auth(token).send().await {
        Ok(r) => r.status().as_u16(),
        Err(e) => panic!("request failed: {e}"),
    }
}

/// Polls until `token` gets `want`, or panics after `timeout`.
async fn until(stack: &Stack, env: u64, token: &str, want: u16, timeout: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let got = get(stack, env, token).await;
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{what}: still {got} after {timeout:?}, expected {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts `token` keeps getting `want` for `period`.
async fn stays(stack: &Stack, env: u64, token: &str, want: u16, period: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < period {
        assert_eq!(get(stack, env, token).await, want, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn all_events(bus: &Bus) -> Vec<RawEnvelope> {
    let n = bus.last_sequence(STREAM).await.unwrap();
    read_stream(bus, STREAM, n, Duration::from_secs(10)).await
}

/// Publishes `raw` with a fresh de-duplication id, as a re-publish after the window would.
async fn publish_as_new(bus: &Bus, raw: &RawEnvelope) {
    let subject = kubegate_events::envelope::subject_of::<EnvironmentEvent>(&raw.event_type).unwrap();
    let msg =
        PublishMessage::build().payload(raw.to_vec().into()).message_id(uuid::Uuid::new_v4().to_string());
    bus.jetstream().send_publish(subject, msg).await.unwrap().await.unwrap();
}

fn policy(env: u64, position: u64, users: Vec<PolicyEntry>) -> RawEnvelope {
    let mut e = Envelope::new(
        format!("environment-{env}"),
        Actor::system("e2e"),
        "e2e",
        EnvironmentEvent::AccessPolicySet(AccessPolicySet { environment_id: env, users, teams: vec![] }),
    );
    e.sequence = 1000 + position;
    e.position = position;
    e.to_raw().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_applies_each_event_once_in_order_and_fails_closed_when_it_cannot_trust_itself() {
    let mut stack = Stack::start(Options {
        proxies: 1,
        environments: 1,
        load_balancer: false,
        proxy_env: vec![("KUBEGATE_MAX_STALENESS".into(), format!("{}s", STALENESS.as_secs()))],
        ..Options::default()
    })
    .await;
    let env = stack.register(0, "one").await;
    let alice = stack.create_user("alice", "alice-password", "user").await;
    let bob = stack.create_user("bob", "bob-password", "user").await;
    let bob_only = json!([{"userId": bob, "role": "standard", "namespaces": ["dev"]}]);
    stack
        .set_access(
            env,
            json!([{"userId": alice, "role": "standard", "namespaces": ["dev"]},
                                 {"userId": bob, "role": "standard", "namespaces": ["dev"]}]),
            json!([]),
        )
        .await;
    let alice_kc =
        stack.kubeconfig_file(&stack.session("alice", "alice-password").await, &[env], "alice").await;
    let bob_kc = stack.kubeconfig_file(&stack.session("bob", "bob-password").await, &[env], "bob").await;
    stack.wait_environment_everywhere(&alice_kc).await;
    let (alice_token, bob_token) = (token_of(&alice_kc), token_of(&bob_kc));
    assert_eq!(get(&stack, env, &alice_token).await, 200);
    let bus = stack.bus().await;
    let granting = all_events(&bus).await.into_iter().rfind(|e| e.event_type == "AccessPolicySet").unwrap();

    // Alice's access is taken away; the old grant re-published (outside the de-duplication
    // window) is stored again by JetStream but never applied again.
    stack.set_access(env, bob_only.clone(), json!([])).await;
    until(&stack, env, &alice_token, 403, Duration::from_secs(5), "access removed").await;
    let before = bus.last_sequence(STREAM).await.unwrap();
    publish_as_new(&bus, &granting).await;
    assert_eq!(bus.last_sequence(STREAM).await.unwrap(), before + 1, "the re-publish was stored");
    stays(
        &stack,
        env,
        &alice_token,
        403,
        Duration::from_secs(2),
        "a re-published old grant was applied again",
    )
    .await;

    // An event ahead of a gap: held back, never applied; the gap stays open → 503 for everyone.
    let last = all_events(&bus).await.iter().map(|e| e.position).max().unwrap();
    let alice_back = vec![
        PolicyEntry { id: alice, role: EnvironmentRole::Standard, namespaces: vec!["dev".into()] },
        PolicyEntry { id: bob, role: EnvironmentRole::Standard, namespaces: vec!["dev".into()] },
    ];
    let held = policy(env, last + 2, alice_back.clone());
    publish_as_new(&bus, &held).await;
    let gap_opened = Instant::now();
    stays(&stack, env, &alice_token, 403, Duration::from_secs(2), "an event ahead of a gap was applied")
        .await;
    until(&stack, env, &bob_token, 503, Duration::from_secs(20), "a gap that does not close").await;
    let failed_closed = gap_opened.elapsed();
    println!("gap open: failed closed after {failed_closed:?}");
    assert!(
        failed_closed >= Duration::from_secs(10),
        "failed closed before the gap deadline: {failed_closed:?}"
    );
    assert_eq!(get(&stack, env, &alice_token).await, 503);
    // The missing event arrives: both apply, in order (alice's grant is the later one).
    let missing = policy(
        env,
        last + 1,
        vec![PolicyEntry { id: bob, role: EnvironmentRole::Standard, namespaces: vec!["dev".into()] }],
    );
    publish_as_new(&bus, &missing).await;
    until(&stack, env, &alice_token, 200, Duration::from_secs(10), "the gap closed").await;
    assert_eq!(get(&stack, env, &bob_token).await, 200);

    // The stream deleted under the replica: 503 rather than an empty cache, until rebuilt.
    let log = all_events(&bus).await;
    bus.jetstream().delete_stream(STREAM).await.unwrap();
    let took = until(&stack, env, &bob_token, 503, Duration::from_secs(10), "stream deleted").await;
    println!("stream deleted: failing closed after {took:?}");
    stays(&stack, env, &bob_token, 503, Duration::from_secs(2), "served from a deleted stream").await;
    bus.ensure_stream(&StreamDef::environments()).await.unwrap();
    for raw in &log {
        let subject = kubegate_events::envelope::subject_of::<EnvironmentEvent>(&raw.event_type).unwrap();
        bus.publish_events(&[(subject, raw)]).await.unwrap();
    }
    until(&stack, env, &bob_token, 200, Duration::from_secs(15), "the stream rebuilt").await;
    assert_eq!(get(&stack, env, &alice_token).await, 200);

    // The stream reset: deleted and at once recreated empty, so its sequence goes backwards (a
    // restore from an old backup looks the same) → detected, 503, until rebuilt.
    bus.jetstream().delete_stream(STREAM).await.unwrap();
    bus.ensure_stream(&StreamDef::environments()).await.unwrap();
    let took = until(&stack, env, &bob_token, 503, Duration::from_secs(10), "stream reset").await;
    println!("stream reset: failing closed after {took:?}");
    stays(&stack, env, &bob_token, 503, Duration::from_secs(2), "served from a reset stream").await;
    for raw in &log {
        let subject = kubegate_events::envelope::subject_of::<EnvironmentEvent>(&raw.event_type).unwrap();
        bus.publish_events(&[(subject, raw)]).await.unwrap();
    }
    until(&stack, env, &bob_token, 200, Duration::from_secs(15), "the reset stream rebuilt").await;

    // Strict staleness: NATS away longer than the limit → 503; back → served again.
    // From before the stop: the replica's clock starts when its connection drops, which can be
    // before `stop` returns (it waits for the server's process to end).
    let away = Instant::now();
    stack.nats.stop();
    until(&stack, env, &bob_token, 503, Duration::from_secs(20), "NATS away past the staleness limit").await;
    let refused_after = away.elapsed();
    println!("NATS away: 503 after {refused_after:?} (limit {STALENESS:?})");
    assert!(refused_after >= STALENESS, "refused before the staleness limit: {refused_after:?}");
    stack.nats.start();
    until(&stack, env, &bob_token, 200, Duration::from_secs(20), "NATS back").await;
}
