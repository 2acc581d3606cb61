//! The event log and its relay against real PostgreSQL and a real nats-server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use kubegate_bus::{Bus, NatsConfig, StreamDef};
use kubegate_events::identity::{IdentityEvent, UserDisabled, UserEnabled};
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope};
use kubegate_eventstore::{EventStore, Expected, OutboxRelay, RelayHandle, StoreError, StreamAppend};
use kubegate_testsupport::nats::NatsServer;
use kubegate_testsupport::postgres::TestDb;
use kubegate_testsupport::wait;
use tokio_util::sync::CancellationToken;

fn ev(user_id: u64) -> Envelope<IdentityEvent> {
    let event = if user_id.is_multiple_of(2) {
        IdentityEvent::UserDisabled(UserDisabled { user_id })
    } else {
        IdentityEvent::UserEnabled(UserEnabled { user_id })
    };
    Envelope::new("user-1", Actor::system("test"), format!("corr-{user_id}"), event)
}

fn append(stream: &str, expected: Expected, events: Vec<Envelope<IdentityEvent>>) -> StreamAppend {
    StreamAppend::typed(stream, expected, events).unwrap()
}

async fn store(db: &TestDb) -> EventStore {
    EventStore::connect(&db.url(), 4, Duration::from_secs(5)).await.unwrap()
}

#[tokio::test]
async fn append_load_and_read_in_order() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    let stored = store.append(&[append("user-1", Expected::NoStream, vec![ev(1), ev(2)])]).await.unwrap();
    assert_eq!(stored.iter().map(|e| (e.sequence, e.position)).collect::<Vec<_>>(), vec![(1, 1), (2, 2)]);
    store
        .append(&[
            append("user-2", Expected::NoStream, vec![ev(3)]),
            append("user-1", Expected::Exactly(2), vec![ev(4)]),
        ])
        .await
        .unwrap();
    let s1 = store.load_stream("user-1").await.unwrap();
    assert_eq!(s1.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
    let typed = s1[2].decode::<IdentityEvent>().unwrap();
    assert_eq!(typed.event, ev(4).event);
    assert_eq!(typed.correlation_id, "corr-4");
    let all = store.read_after(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(store.read_after(2, 1).await.unwrap()[0].position, 3);
    assert_eq!(store.last_position().await.unwrap(), 4);
    // A reopened store (a restart) sees the same log and does not re-run migrations.
    let again = EventStore::connect(&db.url(), 2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(again.last_position().await.unwrap(), 4);
}

#[tokio::test]
async fn a_conflict_writes_nothing() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    store.append(&[append("user-1", Expected::NoStream, vec![ev(1)])]).await.unwrap();
    // Second stream is fine but the first conflicts: nothing of the batch may be written.
    let err = store
        .append(&[
            append("user-2", Expected::NoStream, vec![ev(2)]),
            append("user-1", Expected::NoStream, vec![ev(3)]),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { ref stream, actual: 1, .. } if stream == "user-1"), "{err}");
    let err = store.append(&[append("user-1", Expected::Exactly(5), vec![ev(4)])]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 1, .. }));
    assert_eq!(store.last_position().await.unwrap(), 1);
    assert!(store.load_stream("user-2").await.unwrap().is_empty());
    // Any skips the check.
    store.append(&[append("user-1", Expected::Any, vec![ev(5)])]).await.unwrap();
    assert_eq!(store.last_position().await.unwrap(), 2);
}

#[tokio::test]
async fn appending_the_same_events_twice_stores_them_once() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    let batch = [append("user-1", Expected::NoStream, vec![ev(1), ev(2)])];
    let first = store.append(&batch).await.unwrap();
    let second = store.append(&batch).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.id).collect::<Vec<_>>(),
        second.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert_eq!(store.last_position().await.unwrap(), 2);
}

#[tokio::test]
async fn the_log_is_append_only() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    store.append(&[append("user-1", Expected::NoStream, vec![ev(1)])]).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&db.dsn(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    for sql in [
        "UPDATE kubegate_events SET stream = 'x'",
        "DELETE FROM kubegate_events",
        "TRUNCATE kubegate_events CASCADE",
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert!(err.as_db_error().unwrap().message().contains("append-only"), "{sql}: {err}");
    }
}

async fn stream_messages(bus: &Bus, stream: &str) -> Vec<RawEnvelope> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    // A stream that is not there (yet) holds nothing.
    let Ok(last) = bus.last_sequence(stream).await else { return Vec::new() };
    if last == 0 {
        return Vec::new();
    }
    let s = bus.jetstream().get_stream(stream).await.unwrap();
    let c = s
        .create_consumer(pull::OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    let mut out = Vec::new();
    while let Some(Ok(m)) = msgs.next().await {
        out.push(RawEnvelope::from_slice(&m.payload).unwrap());
        if m.info().unwrap().stream_sequence >= last {
            break;
        }
    }
    out
}

#[tokio::test]
async fn events_committed_while_nats_is_down_reach_the_stream_exactly_once() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    let mut nats = NatsServer::start_new();
    let bus = Bus::connect(&NatsConfig::new(nats.url(), "test")).await.unwrap();
    assert!(bus.wait_connected(Duration::from_secs(5)).await);
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(store.clone(), bus.clone(), "KUBEGATE_IDENTITY").spawn(shutdown.clone());

    let mut version = 0;
    for i in 0..20 {
        store.append(&[append("user-1", Expected::version(version), vec![ev(i)])]).await.unwrap();
        version += 1;
    }
    published(&store, &[&relay], "first 20 published", 10).await;

    nats.stop();
    for i in 20..70 {
        store.append(&[append("user-1", Expected::version(version), vec![ev(i)])]).await.unwrap();
        version += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.status.borrow().through, 20, "nothing can be published while NATS is down");
    nats.start();
    published(&store, &[&relay], "all published after NATS returned", 20).await;

    // A second relay on the same database (a second replica) must not double-publish.
    let relay2 = OutboxRelay::new(store.clone(), bus.clone(), "KUBEGATE_IDENTITY").spawn(shutdown.clone());
    for i in 70..80 {
        store.append(&[append("user-1", Expected::version(version), vec![ev(i)])]).await.unwrap();
        version += 1;
    }
    published(&store, &[&relay, &relay2], "last 10 published", 10).await;

    let msgs = stream_messages(&bus, "KUBEGATE_IDENTITY").await;
    let positions: Vec<u64> = msgs.iter().map(|m| m.position).collect();
    assert_eq!(positions, (1..=80).collect::<Vec<_>>(), "every event once, in order");
    let ids: BTreeSet<_> = msgs.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 80);
    assert_eq!(msgs[4].decode::<IdentityEvent>().unwrap().event.subject(), "kubegate.identity.user.disabled");
    shutdown.cancel();
    relay.join().await;
    relay2.join().await;
}

/// Appends one event to each of the streams `user-{i}` for `i` in `range`, one append each.
async fn append_users(store: &EventStore, range: std::ops::Range<u64>) {
    for i in range {
        store.append(&[append(&format!("user-{i}"), Expected::NoStream, vec![ev(i)])]).await.unwrap();
    }
}

/// Waits (up to `secs`) until one of `relays` reports the stream holding the whole log.
async fn published(store: &EventStore, relays: &[&RelayHandle], what: &str, secs: u64) {
    wait::until(what, Duration::from_secs(secs), || async {
        let last = store.last_position().await.unwrap();
        relays.iter().any(|r| r.status.borrow().through == last).then_some(())
    })
    .await;
}

/// Runs a relay of `store` until the stream holds the whole log, then stops it.
async fn relay_all(store: &EventStore, bus: &Bus) {
    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(store.clone(), bus.clone(), "KUBEGATE_IDENTITY").spawn(shutdown.clone());
    published(store, &[&relay], "published", 10).await;
    shutdown.cancel();
    relay.join().await;
}

/// A nats-server with the identity stream, and a bus on it.
async fn bus_with_stream() -> (NatsServer, Bus) {
    let nats = NatsServer::start_new();
    let bus = Bus::connect(&NatsConfig::new(nats.url(), "test")).await.unwrap();
    assert!(bus.wait_connected(Duration::from_secs(5)).await);
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    (nats, bus)
}

async fn positions_in_stream(bus: &Bus) -> Vec<u64> {
    stream_messages(bus, "KUBEGATE_IDENTITY").await.iter().map(|m| m.position).collect()
}

async fn ids_in_stream(bus: &Bus) -> Vec<uuid::Uuid> {
    stream_messages(bus, "KUBEGATE_IDENTITY").await.iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn a_relay_that_keeps_up_reads_the_log_once_per_append() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    let (_nats, bus) = bus_with_stream().await;
    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(store.clone(), bus.clone(), "KUBEGATE_IDENTITY").spawn(shutdown.clone());
    wait::until("the relay leads and has read the log", Duration::from_secs(10), || async {
        let s = *relay.status.borrow();
        (s.leader && s.reads > 0).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let before = relay.status.borrow().reads;
    const APPENDS: u64 = 20;
    for i in 0..APPENDS {
        append_users(&store, i..i + 1).await;
        published(&store, &[&relay], "published", 10).await;
    }
    let reads = relay.status.borrow().reads - before;
    // One read per append, and at most one sweep a second besides (a relay that read again at
    // once after each batch would make two per append).
    let sweeps = started.elapsed().as_secs() + 1;
    assert!(
        reads <= APPENDS + sweeps,
        "{reads} reads of the log for {APPENDS} appends in {:?}",
        started.elapsed()
    );
    assert_eq!(positions_in_stream(&bus).await, (1..=APPENDS).collect::<Vec<_>>());
    shutdown.cancel();
    relay.join().await;
}

#[tokio::test]
async fn a_restarted_relay_resumes_where_the_last_one_stopped() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    let (_nats, bus) = bus_with_stream().await;
    // Events committed before any relay runs (the service was down).
    append_users(&store, 0..30).await;
    relay_all(&store, &bus).await;
    append_users(&store, 30..40).await;
    relay_all(&store, &bus).await;
    assert_eq!(positions_in_stream(&bus).await, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn one_batch_may_append_to_a_stream_twice() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    let stored = store
        .append(&[
            append("user-1", Expected::NoStream, vec![ev(1)]),
            append("user-2", Expected::NoStream, vec![ev(2)]),
            append("user-1", Expected::Exactly(1), vec![ev(3)]),
        ])
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|e| (e.stream.as_str(), e.sequence)).collect::<Vec<_>>(),
        vec![("user-1", 1), ("user-2", 1), ("user-1", 2)]
    );
    let err = store
        .append(&[
            append("user-3", Expected::NoStream, vec![ev(1)]),
            append("user-3", Expected::NoStream, vec![ev(2)]),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 1, .. }));
    assert!(store.load_stream("user-3").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_database_is_created_on_first_start() {
    let db = TestDb::create().await;
    let url = format!("{}_new", db.url());
    let store = EventStore::connect(&url, 2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(store.last_position().await.unwrap(), 0);
    drop(store);
    let (client, conn) = tokio_postgres::connect(
        &format!("{} dbname=postgres", db.dsn().rsplit_once(" dbname=").unwrap().0),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {}_new WITH (FORCE)", db.name)).await.unwrap();
}

#[tokio::test]
async fn two_writers_appending_at_once_get_gap_free_positions_and_one_winner_per_version() {
    let db = TestDb::create().await;
    let (a, b) = (store(&db).await, store(&db).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60u64 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            // Every writer appends to its own stream, and all race for version 1 of "shared".
            let own =
                s.append(&[append(&format!("user-{i}"), Expected::NoStream, vec![ev(i), ev(i + 100)])]).await;
            let shared = s.append(&[append("shared", Expected::NoStream, vec![ev(i + 1000)])]).await;
            (own, shared)
        });
    }
    let mut winners = 0;
    while let Some(r) = tasks.join_next().await {
        let (own, shared) = r.unwrap();
        assert_eq!(own.unwrap().iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2]);
        match shared {
            Ok(stored) => {
                winners += 1;
                assert_eq!(stored[0].sequence, 1);
            }
            Err(e) => assert!(
                matches!(e, StoreError::Conflict { actual: 1, expected: Expected::NoStream, .. }),
                "{e}"
            ),
        }
    }
    assert_eq!(winners, 1, "exactly one writer creates the stream");
    let all = a.read_after(0, 1000).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=121).collect::<Vec<_>>());
}

/// How many sequential scans PostgreSQL counted on the log so far (backends report their
/// counts once idle for a second, so this waits for that first).
async fn log_seq_scans(db: &TestDb) -> i64 {
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    let row = client
        .query_one("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'kubegate_events'", &[])
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    row.get(0)
}

#[tokio::test]
async fn a_log_that_grows_from_empty_is_never_scanned_whole() {
    // A new database: the first plans are made while the log is empty, when a sequential scan
    // looks cheapest; they must not stay that way as the log grows.
    let db = TestDb::create().await;
    let store = EventStore::connect(&db.url(), 2, Duration::from_secs(5)).await.unwrap();
    let (_nats, bus) = bus_with_stream().await;
    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(store.clone(), bus.clone(), "KUBEGATE_IDENTITY").spawn(shutdown.clone());
    let before = log_seq_scans(&db).await;
    let appends = 400;
    for i in 0..appends {
        let stored =
            store.append(&[append(&format!("user-{i}"), Expected::NoStream, vec![ev(i)])]).await.unwrap();
        let position = stored[0].position;
        assert_eq!(store.read_after(position - 1, 10).await.unwrap()[0].position, position);
        assert_eq!(store.last_position().await.unwrap(), position);
    }
    published(&store, &[&relay], "published", 10).await;
    let scans = log_seq_scans(&db).await - before;
    assert!(scans < 10, "{scans} sequential scans of the log during {appends} appends, reads and drains");
    shutdown.cancel();
    relay.join().await;
}

#[tokio::test]
async fn a_stream_that_lost_its_events_gets_the_log_again() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    let (_nats, bus) = bus_with_stream().await;
    append_users(&store, 0..20).await;
    relay_all(&store, &bus).await;
    // NATS loses the stream's store: the stream comes back empty. The log is the truth.
    bus.jetstream().delete_stream("KUBEGATE_IDENTITY").await.unwrap();
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    append_users(&store, 20..25).await;
    relay_all(&store, &bus).await;
    assert_eq!(positions_in_stream(&bus).await, (1..=25).collect::<Vec<_>>());
}

#[tokio::test]
async fn events_the_stream_took_without_the_relay_hearing_back_are_published_once() {
    let db = TestDb::create().await;
    let store = store(&db).await;
    let (_nats, bus) = bus_with_stream().await;
    append_users(&store, 0..20).await;
    // A relay published the first 10 and stopped before it heard the bus acknowledge them (or
    // the acknowledgement was lost): only the stream knows they are there.
    let first: Vec<RawEnvelope> = store.read_after(0, 10).await.unwrap();
    let subjects: Vec<&str> =
        first.iter().map(|e| e.decode::<IdentityEvent>().unwrap().event.subject()).collect();
    let items: Vec<(&str, &RawEnvelope)> = subjects.iter().copied().zip(first.iter()).collect();
    bus.publish_events(&items).await.unwrap();
    assert_eq!(positions_in_stream(&bus).await, (1..=10).collect::<Vec<_>>());
    // The next relay starts after the stream's last event, whatever it acknowledged itself.
    append_users(&store, 20..25).await;
    relay_all(&store, &bus).await;
    assert_eq!(positions_in_stream(&bus).await, (1..=25).collect::<Vec<_>>(), "each event once, in order");
}

#[tokio::test]
async fn nothing_is_published_into_a_stream_that_holds_another_history() {
    let (_nats, bus) = bus_with_stream().await;
    // The bus holds the history of one database…
    let first = TestDb::create().await;
    let old = store(&first).await;
    append_users(&old, 0..10).await;
    relay_all(&old, &bus).await;
    let published = ids_in_stream(&bus).await;

    // …and the service now runs on another (restored from an older backup, or new): its
    // positions 1, 2, 3 are other events than the stream's.
    let second = TestDb::create().await;
    let new = store(&second).await;
    append_users(&new, 100..103).await;
    let shutdown = CancellationToken::new();
    let relay = OutboxRelay::new(new.clone(), bus.clone(), "KUBEGATE_IDENTITY").spawn(shutdown.clone());
    let mut status = relay.status.clone();
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.diverged)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = ids_in_stream(&bus).await;
    assert_eq!(held, published, "the stream got events of another history");
    assert_eq!(relay.status.borrow().published, 0);

    // The operator removes the stream: it is made again and gets this log.
    bus.jetstream().delete_stream("KUBEGATE_IDENTITY").await.unwrap();
    wait::until("this log in the stream", Duration::from_secs(15), || async {
        (positions_in_stream(&bus).await == vec![1, 2, 3]).then_some(())
    })
    .await;
    assert!(!relay.status.borrow().diverged);
    let ids: Vec<_> = new.read_after(0, 10).await.unwrap().iter().map(|e| e.id).collect();
    let streamed = ids_in_stream(&bus).await;
    assert_eq!(streamed, ids);
    shutdown.cancel();
    relay.join().await;
}

#[tokio::test]
async fn an_upgrade_from_the_outbox_table_publishes_what_the_stream_lacks_once() {
    let db = TestDb::create().await;
    let (_nats, bus) = bus_with_stream().await;
    // A database the previous version left: its schema (0001 and 0002), five events, their
    // outbox rows, and a stream that holds the first three (the old relay stopped there).
    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE kubegate_schema_migrations (
                 name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for (name, sql) in [
        ("eventstore/0001_events.sql", include_str!("../../../schemas/sql/eventstore/0001_events.sql")),
        (
            "eventstore/0002_append_function.sql",
            include_str!("../../../schemas/sql/eventstore/0002_append_function.sql"),
        ),
    ] {
        client.batch_execute(sql).await.unwrap();
        client.execute("INSERT INTO kubegate_schema_migrations (name) VALUES ($1)", &[&name]).await.unwrap();
    }
    let mut old = Vec::new();
    for i in 1..=5u64 {
        let event = ev(i);
        let subject = event.event.subject();
        let mut raw = event.to_raw().unwrap();
        raw.stream = format!("user-{i}");
        raw.sequence = 1;
        raw.position = i;
        client
            .execute(
                "INSERT INTO kubegate_events (position, id, stream, sequence, type, version, subject,
                     occurred_at, actor, correlation_id, payload)
                 VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8::text::jsonb, $9, $10::text::jsonb)",
                &[
                    &(i as i64),
                    &raw.id,
                    &raw.stream,
                    &raw.event_type,
                    &i32::from(raw.version),
                    &subject,
                    &raw.occurred_at,
                    &serde_json::to_string(&raw.actor).unwrap(),
                    &raw.correlation_id,
                    &raw.payload.get(),
                ],
            )
            .await
            .unwrap();
        client.execute("INSERT INTO kubegate_outbox (position) VALUES ($1)", &[&(i as i64)]).await.unwrap();
        old.push((subject, raw));
    }
    let first: Vec<(&str, &RawEnvelope)> = old[..3].iter().map(|(s, e)| (*s, e)).collect();
    bus.publish_events(&first).await.unwrap();
    drop(client);
    let _ = driver.await;

    // The new version migrates (the outbox table goes) and its relay publishes positions 4 and
    // 5, once each; new appends follow them.
    let store = store(&db).await;
    append_users(&store, 6..8).await;
    relay_all(&store, &bus).await;
    assert_eq!(positions_in_stream(&bus).await, (1..=7).collect::<Vec<_>>(), "each event once, in order");
    let ids: Vec<_> = store.read_after(0, 10).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids_in_stream(&bus).await, ids);
}
