//! The snapshot writer and reader against a nats-server of the test's own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use kubegate_bus::{Bus, NatsConfig, StreamDef};
use kubegate_directory::snapshot::{self, SnapshotError};
use kubegate_directory::writer::{self, WriterConfig};
use kubegate_directory::{Directory, State};
use kubegate_events::identity::{
    GlobalRole, IdentityEvent, KubeconfigTokenIssued, KubeconfigTokenRevoked, UserCreated,
};
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope, SealedSecret};
use kubegate_testsupport::nats::NatsServer;
use tokio_util::sync::CancellationToken;

/// Position p of a made-up identity log: five users, then issued tokens with every seventh
/// position a revocation.
fn event(p: u64) -> IdentityEvent {
    let user = 1 + p % 5;
    if p <= 5 {
        IdentityEvent::UserCreated(UserCreated {
            user_id: p,
            username: format!("user-{p}"),
            role: GlobalRole::User,
            password: SealedSecret("x".into()),
        })
    } else if p.is_multiple_of(7) {
        IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
            token_id: format!("t-{p}"),
            user_id: user,
            expires_at: None,
        })
    } else {
        IdentityEvent::KubeconfigTokenIssued(KubeconfigTokenIssued {
            token_id: format!("t-{p}"),
            user_id: user,
            username: format!("user-{user}"),
            environment_ids: vec![1],
            issued_at: Utc::now(),
            expires_at: None,
        })
    }
}

fn raw(p: u64) -> (&'static str, RawEnvelope) {
    let e = event(p);
    let subject = e.subject();
    let mut env = Envelope::new(format!("s-{p}"), Actor::system("identity"), "test", e);
    env.position = p;
    env.sequence = 1;
    (subject, env.to_raw().unwrap())
}

async fn publish(bus: &Bus, positions: std::ops::RangeInclusive<u64>) -> Vec<RawEnvelope> {
    let events: Vec<_> = positions.map(raw).collect();
    let refs: Vec<(&str, &RawEnvelope)> = events.iter().map(|(s, e)| (*s, e)).collect();
    bus.publish_events(&refs).await.unwrap();
    events.into_iter().map(|(_, e)| e).collect()
}

fn fold(upto: u64) -> State {
    let d = Directory::new();
    for p in 1..=upto {
        d.apply(&event(p), Utc::now().timestamp());
    }
    d.state()
}

async fn connect(nats: &NatsServer) -> Bus {
    let bus = Bus::connect(&NatsConfig::new(nats.url(), "directory-test")).await.unwrap();
    assert!(bus.wait_connected(Duration::from_secs(10)).await);
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    bus
}

async fn wait_for_mark(bus: &Bus, sequence: u64) -> snapshot::Mark {
    kubegate_testsupport::wait::until("a snapshot at the stream's end", Duration::from_secs(20), || async {
        snapshot::latest_mark(bus).await.ok().flatten().filter(|m| m.stream_sequence == sequence)
    })
    .await
}

#[tokio::test]
async fn the_writer_snapshots_the_fold_and_a_reader_loads_it() {
    let nats = NatsServer::start_new();
    let bus = connect(&nats).await;
    let events = publish(&bus, 1..=40).await;
    // Nothing yet, not even the stream: no snapshot (and not an error).
    assert!(snapshot::load(&bus).await.unwrap().is_none());
    snapshot::ensure_stream(&bus).await.unwrap();
    assert!(snapshot::load(&bus).await.unwrap().is_none());

    let stop = CancellationToken::new();
    let config =
        WriterConfig { every: 25, max_age: Duration::from_secs(3600), check: Duration::from_millis(50) };
    let task = tokio::spawn(writer::run::<Directory>(bus.clone(), config, || true, stop.clone()));
    let mark = wait_for_mark(&bus, 40).await;
    assert_eq!((mark.position, mark.event_id), (40, events[39].id));
    let loaded = snapshot::load(&bus).await.unwrap().expect("a snapshot");
    assert_eq!(loaded.mark, mark);
    assert_eq!(loaded.state, fold(40));
    assert_eq!(loaded.state.revoked.len(), 5, "t-7 … t-35");

    // Fewer than `every` more: still the old one; then enough for a new one.
    publish(&bus, 41..=60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(snapshot::latest_mark(&bus).await.unwrap().unwrap().stream_sequence, 40);
    // Due at the 25th message after the last snapshot's: 65.
    let events = publish(&bus, 61..=70).await;
    let mark = wait_for_mark(&bus, 65).await;
    assert_eq!(mark.event_id, events[4].id);
    assert_eq!(snapshot::load(&bus).await.unwrap().unwrap().state, fold(65));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_large_state_spans_chunks_and_a_damaged_one_is_refused() {
    let nats = NatsServer::start_new();
    let bus = connect(&nats).await;
    snapshot::ensure_stream(&bus).await.unwrap();
    // ~30,000 revocations: about 2 MiB of JSON, eight chunks or more.
    let d = Directory::new();
    for i in 0..30_000u64 {
        d.apply(
            &IdentityEvent::KubeconfigTokenRevoked(KubeconfigTokenRevoked {
                token_id: format!("0190a5c3-0000-7000-8000-{i:012x}"),
                user_id: 1,
                expires_at: None,
            }),
            0,
        );
    }
    let mark = snapshot::Mark {
        stream_sequence: 30_000,
        event_id: uuid::Uuid::now_v7(),
        position: 30_000,
        written_at: Utc::now(),
    };
    snapshot::write(&bus, &snapshot::Snapshot::new(mark.clone(), d.state())).await.unwrap();
    let loaded = snapshot::load(&bus).await.unwrap().unwrap();
    assert_eq!((loaded.mark, loaded.state.revoked.len()), (mark, 30_000));
    let (_, manifest) = bus
        .last_message_on(snapshot::STREAM, "kubegate.snapshots.identity.manifest", 100)
        .await
        .unwrap()
        .unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert!(manifest["chunks"].as_array().unwrap().len() >= 8, "{}", manifest["chunks"]);

    // The chunks listed out of order: refused, not loaded.
    manifest["chunks"].as_array_mut().unwrap().swap(0, 1);
    bus.publish_acked(
        "kubegate.snapshots.identity.manifest".into(),
        serde_json::to_vec(&manifest).unwrap().into(),
    )
    .await
    .unwrap();
    assert!(matches!(snapshot::load(&bus).await, Err(SnapshotError::Damaged(_))));
    // A digest that does not match: refused.
    manifest["chunks"].as_array_mut().unwrap().swap(0, 1);
    manifest["sha256"] = "00".repeat(32).into();
    bus.publish_acked(
        "kubegate.snapshots.identity.manifest".into(),
        serde_json::to_vec(&manifest).unwrap().into(),
    )
    .await
    .unwrap();
    let err = snapshot::load(&bus).await.unwrap_err();
    assert!(err.to_string().contains("do not add up"), "{err}");
    // Another format: not used (a newer writer), and not an error.
    manifest["format"] = 99.into();
    bus.publish_acked(
        "kubegate.snapshots.identity.manifest".into(),
        serde_json::to_vec(&manifest).unwrap().into(),
    )
    .await
    .unwrap();
    assert!(snapshot::load(&bus).await.unwrap().is_none());
}

#[tokio::test]
async fn after_the_stream_is_replaced_the_writer_snapshots_the_new_history() {
    let nats = NatsServer::start_new();
    let bus = connect(&nats).await;
    publish(&bus, 1..=30).await;
    let stop = CancellationToken::new();
    let config =
        WriterConfig { every: 10, max_age: Duration::from_secs(3600), check: Duration::from_millis(50) };
    let task = tokio::spawn(writer::run::<Directory>(bus.clone(), config, || true, stop.clone()));
    let old = wait_for_mark(&bus, 30).await;

    // Deleted and recreated with a shorter history of other events (a restore from elsewhere).
    bus.jetstream().delete_stream("KUBEGATE_IDENTITY").await.unwrap();
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    let events = publish(&bus, 1..=12).await;
    let new = wait_for_mark(&bus, 12).await;
    assert_ne!(new.event_id, old.event_id);
    assert_eq!(new.event_id, events[11].id);
    assert_eq!(snapshot::load(&bus).await.unwrap().unwrap().state, fold(12));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_restarted_writer_resumes_from_its_snapshot_unless_it_is_of_another_history() {
    let nats = NatsServer::start_new();
    let bus = connect(&nats).await;
    publish(&bus, 1..=20).await;
    let config =
        WriterConfig { every: 10, max_age: Duration::from_secs(3600), check: Duration::from_millis(50) };
    let run_writer = || {
        let stop = CancellationToken::new();
        (stop.clone(), tokio::spawn(writer::run::<Directory>(bus.clone(), config.clone(), || true, stop)))
    };
    let (stop, task) = run_writer();
    wait_for_mark(&bus, 20).await;
    stop.cancel();
    task.await.unwrap();

    // A marker only the snapshot holds: a writer that resumed from it carries it on.
    let mut marked = snapshot::load(&bus).await.unwrap().unwrap();
    marked.state.retired_kids.push("only-in-the-snapshot".into());
    snapshot::write(&bus, &marked).await.unwrap();
    let (stop, task) = run_writer();
    publish(&bus, 21..=30).await;
    wait_for_mark(&bus, 30).await;
    let next = snapshot::load(&bus).await.unwrap().unwrap();
    assert!(next.state.retired_kids.contains(&"only-in-the-snapshot".to_string()), "did not resume");
    stop.cancel();
    task.await.unwrap();

    // The same marker in a snapshot whose message is not the stream's: folded from the start.
    let mut foreign = next.clone();
    foreign.mark.event_id = uuid::Uuid::now_v7();
    snapshot::write(&bus, &foreign).await.unwrap();
    let (stop, task) = run_writer();
    publish(&bus, 31..=40).await;
    wait_for_mark(&bus, 40).await;
    assert_eq!(snapshot::load(&bus).await.unwrap().unwrap().state, fold(40));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn only_an_active_writer_writes() {
    let nats = NatsServer::start_new();
    let bus = connect(&nats).await;
    publish(&bus, 1..=30).await;
    let active = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = active.clone();
    let stop = CancellationToken::new();
    let config =
        WriterConfig { every: 10, max_age: Duration::from_secs(3600), check: Duration::from_millis(50) };
    let task = tokio::spawn(writer::run::<Directory>(
        bus.clone(),
        config,
        move || flag.load(std::sync::atomic::Ordering::Relaxed),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(snapshot::latest_mark(&bus).await.unwrap().is_none(), "a standby wrote a snapshot");
    // Taking over: its fold is ready, the snapshot follows at the next look.
    active.store(true, std::sync::atomic::Ordering::Relaxed);
    wait_for_mark(&bus, 30).await;
    assert_eq!(snapshot::load(&bus).await.unwrap().unwrap().state, fold(30));
    stop.cancel();
    task.await.unwrap();
}
