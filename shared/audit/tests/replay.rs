//! The timeline against a real nats-server: the three streams merged by time, filters, pages
//! that add up to the whole, a follower that sees a new record at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use kubegate_audit::{Format, ReplayOptions, Row, page, replay};
use kubegate_bus::{Bus, Encoded, NatsConfig, Outgoing, StreamDef};
use kubegate_events::audit::{AuditEvent, AuditSubject, AuditTarget, Decision, RequestAudited};
use kubegate_events::environments::{
    CredentialKind, EnvironmentEvent, EnvironmentRegistered, SealedCredential,
};
use kubegate_events::identity::{GlobalRole, IdentityEvent, SignInSucceeded, UserCreated};
use kubegate_events::{Actor, DomainEvent, Envelope, SealedSecret};
use kubegate_testsupport::nats::NatsServer;
use serde_json::Value;

fn t(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 8, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
}

async fn bus(nats: &NatsServer) -> Bus {
    let bus = Bus::connect(&NatsConfig::new(nats.url(), "audit-test")).await.unwrap();
    assert!(bus.wait_connected(Duration::from_secs(5)).await);
    for def in [StreamDef::identity(), StreamDef::environments(), StreamDef::audit(Duration::ZERO, -1)] {
        bus.ensure_stream(&def).await.unwrap();
    }
    bus
}

/// Publishes `events`, `per_message` envelopes to a message (a proxy packs its audit records).
async fn publish<E: DomainEvent>(
    bus: &Bus,
    events: Vec<(i64, Actor, &str, E)>,
    first_position: u64,
    per_message: usize,
) {
    let items: Vec<Encoded<'static>> = events
        .into_iter()
        .enumerate()
        .map(|(i, (ms, actor, correlation, event))| {
            let subject = event.subject();
            let mut env = Envelope::new("s", actor, correlation, event);
            env.occurred_at = t(ms);
            env.position = first_position + i as u64;
            env.sequence = env.position;
            Encoded { subject, id: env.id, json: env.encode().unwrap() }
        })
        .collect();
    let messages: Vec<Outgoing<'_>> =
        Outgoing::pack_runs(&items, per_message, usize::MAX).into_iter().map(|(m, _)| m).collect();
    for chunk in messages.chunks(1000) {
        bus.publish_messages(chunk).await.unwrap();
    }
}

fn user(id: u64, name: &str) -> IdentityEvent {
    IdentityEvent::UserCreated(UserCreated {
        user_id: id,
        username: name.into(),
        role: GlobalRole::User,
        password: SealedSecret("x".into()),
    })
}

fn signed_in(id: u64, name: &str) -> IdentityEvent {
    IdentityEvent::SignInSucceeded(SignInSucceeded {
        user_id: id,
        username: name.into(),
        client_address: "127.0.0.1".into(),
        session_id: format!("s-{id}"),
        expires_at: t(1_000_000),
    })
}

fn environment(id: u64, name: &str) -> EnvironmentEvent {
    EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
        environment_id: id,
        name: name.into(),
        url: format!("https://{name}.example:6443"),
        ca_pem: None,
        insecure_skip_tls_verify: false,
        credential: SealedCredential("sealed".into()),
        credential_kind: CredentialKind::Token,
    })
}

fn request(i: u64, user: &str, env: u64, ns: &str, denied: bool) -> AuditEvent {
    AuditEvent::RequestAudited(RequestAudited {
        request_id: format!("r{i}"),
        subject: AuditSubject {
            user_id: Some(if user == "alice" { 2 } else { 3 }),
            username: Some(user.into()),
            client_address: "127.0.0.1:4000".into(),
            ..Default::default()
        },
        target: AuditTarget {
            environment_id: Some(env),
            verb: "list".into(),
            namespace: Some(ns.into()),
            resource: Some("pods".into()),
            path: format!("/api/v1/namespaces/{ns}/pods"),
            ..Default::default()
        },
        decision: if denied { Decision::Denied } else { Decision::Allowed },
        reason: denied.then(|| "no".to_string()),
        status: if denied { 403 } else { 200 },
        duration_us: 10,
        bytes_in: 0,
        bytes_out: 100,
        user_agent: None,
    })
}

fn actor(name: &str) -> Actor {
    Actor::User { id: if name == "alice" { 2 } else { 3 }, name: name.into() }
}

/// A small world: two users, two environments, sign-ins, and `n` requests every 10 ms
/// alternating between alice in prod/dev and bob in staging/qa (every 7th denied).
async fn world(bus: &Bus, n: u64) {
    publish(
        bus,
        vec![
            (0, Actor::system("identity"), "boot", user(2, "alice")),
            (1, Actor::system("identity"), "boot", user(3, "bob")),
            (25, actor("alice"), "sign-alice", signed_in(2, "alice")),
            (55, actor("bob"), "sign-bob", signed_in(3, "bob")),
        ],
        1,
        1,
    )
    .await;
    publish(
        bus,
        vec![
            (2, Actor::system("t"), "env1", environment(1, "prod")),
            (3, Actor::system("t"), "env2", environment(2, "staging")),
        ],
        1,
        1,
    )
    .await;
    let requests: Vec<(i64, Actor, &str, AuditEvent)> = (0..n)
        .map(|i| {
            let alice = i % 2 == 0;
            let (who, env, ns) = if alice { ("alice", 1, "dev") } else { ("bob", 2, "qa") };
            (10 + 10 * i as i64, actor(who), "req", request(i, who, env, ns, i % 7 == 3))
        })
        .collect();
    // Seven records a message: pages of 97 end inside messages.
    publish(bus, requests, 1, 7).await;
}

async fn json_rows(bus: &Bus, args: &[(&str, &str)]) -> Vec<Value> {
    let mut options = ReplayOptions { format: Format::Json, ..Default::default() };
    for (k, v) in args {
        assert!(options.filter.set(k, v.to_string()).unwrap(), "{k}");
    }
    let mut out = Vec::new();
    let stats = replay(bus, options, &mut out).await.unwrap();
    let rows: Vec<Value> =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stats.rows as usize, rows.len());
    rows
}

fn times(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| r["time"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_merge_by_time_and_filters_select() {
    let nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    world(&bus, 3000).await;

    let all = json_rows(&bus, &[]).await;
    assert_eq!(all.len(), 4 + 2 + 3000);
    let ts = times(&all);
    let mut sorted = ts.clone();
    sorted.sort();
    assert!(ts == sorted, "not oldest first");
    assert_eq!(all[0]["event"], "UserCreated");
    assert_eq!(all[2]["event"], "EnvironmentRegistered");
    // Requests are named by the environment events seen.
    let first_request = all.iter().find(|r| r["kind"] == "request").unwrap();
    assert_eq!(first_request["environments"], serde_json::json!(["prod"]));

    let alice = json_rows(&bus, &[("user", "alice")]).await;
    // alice's creation, her sign-in, and her 1500 requests.
    assert_eq!(alice.len(), 2 + 1500);
    assert!(alice.iter().all(|r| r["user"] == "alice" || r["targetUser"] == "alice"));

    let staging = json_rows(&bus, &[("env", "staging"), ("kind", "request")]).await;
    assert_eq!(staging.len(), 1500);
    assert!(staging.iter().all(|r| r["namespace"] == "qa"));

    let denied = json_rows(&bus, &[("decision", "denied"), ("namespace", "dev")]).await;
    let expected = (0..3000u64).filter(|i| i % 2 == 0 && i % 7 == 3).count();
    assert_eq!(denied.len(), expected);

    let window =
        json_rows(&bus, &[("since", "2025-06-01T08:00:00.100Z"), ("until", "2025-06-01T08:00:00.200Z")])
            .await;
    // Requests at 100, 110, …, 200 ms.
    assert_eq!(window.len(), 11);
    assert_eq!(window[0]["time"], "2025-06-01T08:00:00.100000Z");

    let signins = json_rows(&bus, &[("kind", "signin")]).await;
    assert_eq!(signins.iter().map(|r| r["user"].as_str().unwrap()).collect::<Vec<_>>(), vec!["alice", "bob"]);

    let one = json_rows(&bus, &[("correlation", "sign-bob")]).await;
    assert_eq!(one.len(), 1);

    // CSV and the table hold the same rows.
    let mut out = Vec::new();
    let mut options = ReplayOptions { format: Format::Csv, ..Default::default() };
    options.filter.set("kind", "signin".into()).unwrap();
    replay(&bus, options, &mut out).await.unwrap();
    let mut reader = csv::Reader::from_reader(out.as_slice());
    assert_eq!(reader.records().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_add_up_to_the_whole_timeline() {
    let nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    world(&bus, 1200).await;
    let whole: Vec<String> = json_rows(&bus, &[("user", "bob")])
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let spec = kubegate_audit::FilterSpec { user: Some("bob".into()), ..Default::default() };
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    let mut pages = 0;
    loop {
        let p = page(&bus, &spec, cursor.as_deref(), 97).await.unwrap();
        pages += 1;
        assert!(p.items.len() <= 97);
        paged.extend(p.items.iter().map(|r: &Row| r.id.to_string()));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 100, "pagination does not end");
    }
    assert_eq!(paged, whole);
    assert!(pages >= 7);
    assert!(matches!(page(&bus, &spec, Some("nonsense"), 10).await, Err(kubegate_audit::AuditError::Cursor)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_a_new_record_within_a_second() {
    let nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    world(&bus, 10).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    struct Lines(tokio::sync::mpsc::UnboundedSender<String>, Vec<u8>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.1.extend_from_slice(buf);
            while let Some(i) = self.1.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.1.drain(..=i).collect();
                let _ = self.0.send(String::from_utf8_lossy(&line).trim().to_string());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let follower = {
        let bus = bus.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut options =
                ReplayOptions { format: Format::Json, follow: true, stop, ..Default::default() };
            options.filter.set("kind", "request".into()).unwrap();
            replay(&bus, options, Lines(tx, Vec::new())).await
        })
    };
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    }
    publish(&bus, vec![(99_000, actor("alice"), "late", request(99, "alice", 1, "dev", false))], 11, 1).await;
    let published = Instant::now();
    let line =
        tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.expect("within a second").unwrap();
    assert!(published.elapsed() < Duration::from_secs(1));
    assert!(line.contains("\"correlationId\":\"late\""), "{line}");
    stop.cancel();
    let stats = tokio::time::timeout(Duration::from_secs(5), follower).await.unwrap().unwrap().unwrap();
    assert_eq!(stats.rows, 11);
}

/// Replays a million audit records to JSON (`cargo test --release -p kubegate-audit -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: make bench reports it"]
async fn a_million_records() {
    let nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    let n = 1_000_000u64;
    let started = Instant::now();
    for chunk in 0..(n / 50_000) {
        let requests: Vec<(i64, Actor, &str, AuditEvent)> = (chunk * 50_000..(chunk + 1) * 50_000)
            .map(|i| (i as i64, actor("alice"), "req", request(i, "alice", 1, "dev", false)))
            .collect();
        publish(&bus, requests, chunk * 50_000 + 1, 256).await;
    }
    eprintln!("published {n} in {:?}", started.elapsed());
    let out = std::io::sink();
    let stats =
        replay(&bus, ReplayOptions { format: Format::Json, ..Default::default() }, out).await.unwrap();
    eprintln!("replayed {} rows to JSON in {:?}", stats.rows, stats.elapsed);
    assert_eq!(stats.rows, n);
}
