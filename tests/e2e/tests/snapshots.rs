//! A replica that starts from the identity service's directory snapshot knows what one that
//! replayed the whole identity stream knows: revocations before and after the snapshot, users,
//! keys. The same for the kubeconfig service's environments snapshot: environments and policies
//! before and after it. A snapshot of another history is refused, and the replica replays that
//! stream from the start. NATS runs with the deployed per-service users, so the permissions are
//! the real ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kubegate_bus::Bus;
use kubegate_directory::environments::{DOWNLOADED, EnvironmentLog};
use kubegate_directory::snapshot;
use kubegate_e2e::{Options, Stack, jti, token_of};
use kubegate_testsupport::process::Service;
use serde_json::json;

async fn revoke(stack: &Stack, token: &str) {
    let (status, body) = stack
        .api("DELETE", &format!("/api/kubeconfig-tokens/{}", jti(token)), Some(&stack.admin), None)
        .await;
    assert_eq!(status, 204, "{body}");
}

/// Restarts replica 0 and waits until it is ready; returns its log.
async fn restart_replica(stack: &mut Stack) -> String {
    stack.proxies[0].kill();
    stack.proxies[0].start();
    stack.proxies[0].wait_ready(Duration::from_secs(30));
    stack.reconnect();
    stack.proxies[0].logs()
}

async fn status(stack: &Stack, env: u64, token: &str) -> u16 {
    stack.kube_get(Some(stack.proxy_ports[0]), env, token, "/api/v1/namespaces/default/pods").await.0
}

async fn snapshot_at_end(bus: &Bus) -> snapshot::Mark {
    let last = bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap();
    kubegate_testsupport::wait::until(
        "a snapshot at the identity stream's end",
        Duration::from_secs(30),
        || async { snapshot::latest_mark(bus).await.ok().flatten().filter(|m| m.stream_sequence == last) },
    )
    .await
}

/// Restarts a service (identity or kubeconfig) with its snapshot writer writing after `every`
/// events (0: off).
fn restart_writer(service: &mut Service, every: u64) {
    service.terminate(Duration::from_secs(10));
    service.set_env("KUBEGATE_SNAPSHOT_EVERY", every.to_string());
    service.start();
    service.wait_ready(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_from_the_snapshot_knows_what_a_full_replay_knows() {
    let mut stack = Stack::start(Options {
        proxies: 1,
        environments: 1,
        nats_users: true,
        identity_env: vec![("KUBEGATE_SNAPSHOT_EVERY".into(), "0".into())],
        ..Options::default()
    })
    .await;
    let (env, _, _) = stack.admin_ready(0, "prod").await;
    let bob = stack.create_user("bob", "bob-password-123", "user").await;
    stack.set_access(env, json!([{"userId": bob, "role": "operator"}]), json!([])).await;
    let session = stack.session("bob", "bob-password-123").await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        tokens.push(token_of(&stack.kubeconfig_file(&session, &[env], &format!("bob-{i}")).await));
    }
    revoke(&stack, &tokens[0]).await;

    // A snapshot of that, written with the identity user's rights; then the writer is off again,
    // so what follows is only in the stream's tail.
    restart_writer(&mut stack.identity, 1);
    let reader = stack.bus_as(Some("kubegate-proxy")).await;
    let snapshotted = snapshot_at_end(&reader).await;
    restart_writer(&mut stack.identity, 0);
    revoke(&stack, &tokens[1]).await;
    let carol = stack.create_user("carol", "carol-password-123", "user").await;
    stack
        .set_access(
            env,
            json!([{"userId": bob, "role": "operator"}, {"userId": carol, "role": "operator"}]),
            json!([]),
        )
        .await;
    let carol_session = stack.session("carol", "carol-password-123").await;
    let carol_token = token_of(&stack.kubeconfig_file(&carol_session, &[env], "carol").await);
    assert!(reader.last_sequence("KUBEGATE_IDENTITY").await.unwrap() > snapshotted.stream_sequence);

    let log = restart_replica(&mut stack).await;
    assert!(log.contains("directory restored from a snapshot"), "{log}");
    assert!(!log.contains("does not match"), "{log}");
    assert_eq!(snapshot::latest_mark(&reader).await.unwrap(), Some(snapshotted), "no newer snapshot");
    assert_eq!(status(&stack, env, &tokens[0]).await, 401, "revoked before the snapshot");
    assert_eq!(status(&stack, env, &tokens[1]).await, 401, "revoked after the snapshot");
    assert_eq!(status(&stack, env, &tokens[2]).await, 200);
    assert_eq!(status(&stack, env, &carol_token).await, 200, "a user created after the snapshot");

    // A snapshot that claims another history (its message's id is not the stream's) and drops
    // the revocations: refused; the replica replays the stream from its start.
    let writer = stack.bus_as(Some("kubegate-identity")).await;
    let real = snapshot::load(&writer).await.unwrap().unwrap();
    let mut forged = real.clone();
    forged.mark.event_id = uuid::Uuid::now_v7();
    forged.state.revoked.clear();
    snapshot::write(&writer, &forged).await.unwrap();
    let log = restart_replica(&mut stack).await;
    assert!(log.contains("the snapshot does not match the stream"), "{log}");
    assert_eq!(status(&stack, env, &tokens[0]).await, 401, "the revocation the forged snapshot dropped");
    assert_eq!(status(&stack, env, &tokens[2]).await, 200);
    assert_eq!(status(&stack, env, &carol_token).await, 200);

    // The proxy user may read snapshots, not write them.
    assert!(snapshot::write(&reader, &real).await.is_err());
    assert_eq!(snapshot::latest_mark(&reader).await.unwrap(), Some(forged.mark));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_from_the_environments_snapshot_knows_what_a_full_replay_knows() {
    let mut stack =
        Stack::start(Options { proxies: 1, environments: 2, nats_users: true, ..Options::default() }).await;
    let (prod, _, prod_admin) = stack.admin_ready(0, "prod").await;
    let bob = stack.create_user("bob", "bob-password-123", "user").await;
    stack.set_access(prod, json!([{"userId": bob, "role": "operator"}]), json!([])).await;
    let session = stack.session("bob", "bob-password-123").await;
    let bob_token = token_of(&stack.kubeconfig_file(&session, &[prod], "bob").await);
    assert_eq!(status(&stack, prod, &bob_token).await, 200);

    // A snapshot of that, written with the kubeconfig user's rights; then the writer is off
    // again, so what follows is only in the stream's tail.
    restart_writer(&mut stack.kubeconfig, 1);
    let reader = stack.bus_as(Some("kubegate-proxy")).await;
    let last = reader.last_sequence("KUBEGATE_ENVIRONMENTS").await.unwrap();
    let snapshotted = kubegate_testsupport::wait::until(
        "an environments snapshot at the stream's end",
        Duration::from_secs(30),
        || async {
            snapshot::latest_mark_of::<EnvironmentLog>(&reader)
                .await
                .ok()
                .flatten()
                .filter(|m| m.stream_sequence == last)
        },
    )
    .await;
    restart_writer(&mut stack.kubeconfig, 0);
    let real = snapshot::load_of::<EnvironmentLog>(&reader).await.unwrap().unwrap();
    assert!(real.state.events.iter().all(|e| e.event_type != DOWNLOADED), "downloads are not kept");
    assert!(real.state.events.iter().any(|e| e.event_type == "AccessPolicySet"));
    // After the snapshot: a second environment, and bob's access withdrawn.
    let (staging, _, staging_admin) = stack.admin_ready(1, "staging").await;
    stack.set_access(prod, json!([]), json!([])).await;
    assert!(reader.last_sequence("KUBEGATE_ENVIRONMENTS").await.unwrap() > snapshotted.stream_sequence);

    let log = restart_replica(&mut stack).await;
    assert!(log.contains("environments restored from a snapshot"), "{log}");
    assert!(!log.contains("does not match"), "{log}");
    assert_eq!(status(&stack, prod, &prod_admin).await, 200, "registered before the snapshot");
    assert_eq!(status(&stack, staging, &staging_admin).await, 200, "registered after the snapshot");
    assert_eq!(status(&stack, prod, &bob_token).await, 403, "access withdrawn after the snapshot");

    // A snapshot that claims another history and drops the policies: refused; the replica
    // replays the environments stream from its start.
    let writer = stack.bus_as(Some("kubegate-kubeconfig")).await;
    let mut forged = real.clone();
    forged.mark.event_id = uuid::Uuid::now_v7();
    forged.state.events.retain(|e| e.event_type != "AccessPolicySet");
    snapshot::write(&writer, &forged).await.unwrap();
    let log = restart_replica(&mut stack).await;
    assert!(log.contains("the snapshot does not match the stream"), "{log}");
    assert_eq!(status(&stack, prod, &prod_admin).await, 200);
    assert_eq!(status(&stack, staging, &staging_admin).await, 200);
    assert_eq!(status(&stack, prod, &bob_token).await, 403);

    // The proxy user may read it, not write it; kubeconfig may not write identity's.
    assert!(snapshot::write(&reader, &real).await.is_err());
    let directory = snapshot::Snapshot::new(forged.mark.clone(), kubegate_directory::State::default());
    assert!(snapshot::write(&writer, &directory).await.is_err());
    assert_eq!(snapshot::latest_mark_of::<EnvironmentLog>(&reader).await.unwrap(), Some(forged.mark));
}
