//! Fault: identity's PostgreSQL restarted (crash-stopped: every connection cut mid-transaction)
//! three times while users are created and one user's role is changed back and forth through
//! the REST API. Afterwards, checked by sequence: the log has no phantom and no lost event —
//! `(stream, sequence)` unique, positions gap-free, every acknowledged command's event there
//! exactly once, nothing for a username never sent — and the outbox delivered exactly that log
//! to JetStream (positions 1..=n, each once), which is what the proxies apply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kubegate_e2e::*;
use kubegate_testsupport::pgcluster::PgCluster;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_during_appends_loses_nothing_and_invents_nothing() {
    let mut pg = PgCluster::start();
    let stack = Stack::start(Options {
        proxies: 1,
        environments: 0,
        load_balancer: false,
        identity_pg: Some(pg.admin_dsn()),
        ..Options::default()
    })
    .await;
    let flip = stack.create_user("flip", "flip-password", "user").await;

    // Traffic: new users, and role changes on one user (appends to the same stream).
    let stop = Arc::new(AtomicBool::new(false));
    let creator = {
        let (client, url, admin, stop) =
            (stack.client.clone(), stack.url("/api/users"), stack.admin.clone(), stop.clone());
        tokio::spawn(async move {
            let mut attempts: BTreeMap<String, Option<u16>> = BTreeMap::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let name = format!("user-{i:04}");
                let r = client
                    .post(&url)
                    .bearer_auth(&admin)
                    .json(&json!({"username": name, "password": "some-password", "role": "user"}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                attempts.insert(name, r.ok().map(|r| r.status().as_u16()));
            }
            attempts
        })
    };
    let flipper = {
        let (client, url, admin, stop) = (
            stack.client.clone(),
            stack.url(&format!("/api/users/{flip}")),
            stack.admin.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut acknowledged = 0;
            let mut role = "admin";
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .put(&url)
                    .bearer_auth(&admin)
                    .json(&json!({"role": role}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                if r.map(|r| r.status().is_success()).unwrap_or(false) {
                    acknowledged += 1;
                    role = if role == "admin" { "user" } else { "admin" };
                }
            }
            acknowledged
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tokio::task::block_in_place(|| pg.stop(true));
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tokio::task::block_in_place(|| pg.resume());
    }
    // Let the services reconnect and acknowledge a few more commands after the last restart.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::Relaxed);
    let attempts = creator.await.unwrap();
    let flips = flipper.await.unwrap();
    let ok: Vec<&String> = attempts.iter().filter(|(_, s)| **s == Some(200)).map(|(n, _)| n).collect();
    let failed = attempts.len() - ok.len();
    println!(
        "{} user creations ({} acknowledged, {failed} failed or cut), {flips} role changes acknowledged",
        attempts.len(),
        ok.len()
    );
    assert!(ok.len() >= 10, "too few creations went through: {attempts:?}");
    // The restarts reached the writes: identity's appends failed and were retried (a request in
    // flight then waits and succeeds, or fails; both are allowed, neither may lose or invent).
    let retried = stack.identity.logs().matches("append failed; retrying").count();
    assert!(retried > 0 || failed > 0, "the restarts were not noticed by any append");
    println!("{retried} appends retried after a lost connection");

    // The log in PostgreSQL.
    let (db, conn) = tokio_postgres::connect(
        &format!("{} dbname={}", pg.admin_dsn(), stack.identity_db.name),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let rows = db
        .query("SELECT position, stream, sequence, type, payload FROM kubegate_events ORDER BY position", &[])
        .await
        .unwrap();
    let positions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(positions, (1..=positions.len() as i64).collect::<Vec<_>>(), "positions are not gap-free");
    let mut versions: HashMap<String, Vec<i64>> = HashMap::new();
    let mut created: HashMap<String, usize> = HashMap::new();
    let mut role_changes = 0;
    for r in &rows {
        let stream: String = r.get(1);
        versions.entry(stream).or_default().push(r.get(2));
        let kind: String = r.get(3);
        let payload: Value = r.get(4);
        if kind == "UserCreated" {
            *created.entry(payload["username"].as_str().unwrap().to_string()).or_default() += 1;
        }
        if kind == "UserRoleChanged" && payload["user_id"] == flip {
            role_changes += 1;
        }
    }
    for (stream, v) in &versions {
        assert_eq!(v, &(1..=v.len() as i64).collect::<Vec<_>>(), "stream {stream}: versions not 1..n");
    }
    for name in &ok {
        assert_eq!(created.get(*name), Some(&1), "acknowledged user {name} is not in the log exactly once");
    }
    for (name, n) in &created {
        assert_eq!(*n, 1, "{name} created {n} times");
        assert!(
            attempts.contains_key(name) || ["admin", "flip"].contains(&name.as_str()),
            "phantom user {name}"
        );
    }
    assert!(role_changes >= flips, "{flips} acknowledged role changes, {role_changes} in the log");

    // The outbox delivered exactly that log to JetStream: positions 1..=n, each once.
    let n = positions.len() as u64;
    let bus = stack.bus().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap_or(0);
        let events = if last == 0 {
            Vec::new()
        } else {
            read_stream(&bus, "KUBEGATE_IDENTITY", last, Duration::from_secs(10)).await
        };
        let mut seen: Vec<u64> = events.iter().map(|e| e.position).collect();
        seen.sort_unstable();
        if seen.len() as u64 >= n {
            assert_eq!(seen, (1..=n).collect::<Vec<_>>(), "the bus holds a lost or doubled event");
            break;
        }
        assert!(Instant::now() < deadline, "the outbox delivered {} of {n} events", seen.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the proxy, fed from it, is caught up.
    assert!(stack.proxies[0].is_ready());
}
