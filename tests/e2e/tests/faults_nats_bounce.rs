//! Fault: NATS bounced for two minutes — down for 0–2 s every 1–3 s (a fixed pseudo-random
//! schedule, printed) — under traffic on both replicas, while identity and kubeconfig keep
//! writing events (new users, access changes, token revocations). Throughout, every answer is a
//! normal one (200, 401, 403) or the replica failing closed (503), never a 5xx of another kind.
//! Afterwards, checked by sequence: each stream holds its producer's whole log (positions
//! 1..=n, each once; the PostgreSQL logs say n), both replicas converged (every new user
//! works everywhere, every revoked token is refused everywhere, within the revocation target),
//! and every request has exactly one audit record with gap-free numbering per replica.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kubegate_e2e::*;
use serde_json::json;

const BOUNCING: Duration = Duration::from_secs(120);

/// xorshift: a fixed, printable schedule.
struct Rng(u64);

impl Rng {
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(lo + self.0 % (hi - lo + 1))
    }
}

async fn get(client: &reqwest::Client, port: u16, env: u64, token: &str) -> (u16, String) {
    match client
        .get(format!(
            "https://127.0.0.1:{port}/api/endpoints/{env}/kubernetes/api/v1/namespaces/default/pods"
        ))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) => {
            let id = request_id(r.headers());
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (status, id)
        }
        Err(e) => panic!("request failed: {e}"),
    }
}

async fn stream_positions(stack: &Stack, stream: &str) -> Vec<u64> {
    let bus = stack.bus().await;
    let last = bus.last_sequence(stream).await.unwrap_or(0);
    let mut p: Vec<u64> =
        read_stream(&bus, stream, last, Duration::from_secs(20)).await.iter().map(|e| e.position).collect();
    p.sort_unstable();
    p
}

async fn log_length(db: &str) -> u64 {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port=5432 user=postgres dbname={db}"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let n: i64 = client.query_one("SELECT count(*) FROM kubegate_events", &[]).await.unwrap().get(0);
    n as u64
}

async fn set_access_retrying(stack: &Stack, env: u64, users: serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let body = json!({"users": users, "teams": []});
        let (code, answer) =
            stack.api("PUT", &format!("/api/endpoints/{env}/access"), Some(&stack.admin), Some(body)).await;
        if code == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "access not set: {code} {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The admin's kubeconfig token for `env`, retried while the bus is reconnecting.
async fn kubeconfig_token(stack: &Stack, env: u64, round: usize) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = stack
            .client
            .get(stack.url(&format!("/api/kubernetes/config?ids=[{env}]")))
            .bearer_auth(&stack.admin)
            .header("Accept", "text/yaml")
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            let path = stack.dir.path().join(format!("revoke-{round}.kubeconfig"));
            std::fs::write(&path, r.text().await.unwrap()).unwrap();
            return Some(token_of(&path));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bounced_for_two_minutes_under_traffic_loses_and_doubles_nothing() {
    let mut stack = Stack::start(Options { environments: 1, ..Options::default() }).await;
    let (env, _, token) = stack.admin_ready(0, "one").await;

    // Traffic on both replicas, directly, for the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for port in stack.proxy_ports.clone() {
        let (client, token, stop) = (stack.client.clone(), token.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
            let mut ids = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, id) = get(&client, port, env, &token).await;
                assert!(matches!(status, 200 | 503), "replica {port} answered {status} during the bounce");
                *seen.entry(status).or_default() += 1;
                ids.push(id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (seen, ids)
        }));
    }

    // NATS bounces; meanwhile the producers keep writing.
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut schedule = Vec::new();
    let mut users = Vec::new();
    let mut revoked = Vec::new();
    let start = Instant::now();
    let mut round = 0;
    let mut granted = 0;
    while start.elapsed() < BOUNCING {
        let up = rng.millis(1000, 3000);
        let down = rng.millis(0, 2000);
        schedule.push((up.as_millis(), down.as_millis()));
        tokio::time::sleep(up).await;
        round += 1;
        // A token to revoke while NATS is away (issuing one needs the bus).
        let doomed = if round % 5 == 0 { kubeconfig_token(&stack, env, round).await } else { None };
        // Grant the users created so far (kubeconfig must have heard of them: NATS is up).
        if round % 3 == 1 && !users.is_empty() {
            let grants: Vec<serde_json::Value> =
                users.iter().map(|(_, id)| json!({"userId": id, "role": "operator"})).collect();
            set_access_retrying(&stack, env, json!(grants)).await;
            granted = users.len();
        }
        stack.nats.stop();
        // Writes while NATS is away: the outboxes keep them.
        if round % 3 == 0 {
            let name = format!("bounce-{round}");
            let id = stack.create_user(&name, "bounce-password", "user").await;
            users.push((name, id));
        }
        if let Some(t) = doomed {
            let jti = {
                use base64::Engine as _;
                let claims: serde_json::Value = serde_json::from_slice(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(t.split('.').nth(1).unwrap())
                        .unwrap(),
                )
                .unwrap();
                claims["jti"].as_str().unwrap().to_string()
            };
            let (code, _) =
                stack.api("DELETE", &format!("/api/kubeconfig-tokens/{jti}"), Some(&stack.admin), None).await;
            assert_eq!(code, 204);
            revoked.push(t);
        }
        tokio::time::sleep(down.saturating_sub(Duration::from_millis(1))).await;
        stack.nats.start();
    }
    println!("{} bounces (up ms, down ms): {schedule:?}", schedule.len());
    let back = Instant::now();

    // Converged: the last user's grant (only the last policy counts) and every revocation
    // are known to both replicas soon after NATS stays up.
    assert!(granted >= 3, "too few users granted during the bounce");
    let (last_name, _) = users[granted - 1].clone();
    let session = stack.session(&last_name, "bounce-password").await;
    let last_kc = stack.kubeconfig_file(&session, &[env], "last").await;
    let last_token = token_of(&last_kc);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut done = true;
        for port in stack.proxy_ports.clone() {
            done &= get(&stack.client, port, env, &last_token).await.0 == 200;
            for t in &revoked {
                done &= get(&stack.client, port, env, t).await.0 == 401;
            }
        }
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas did not converge 30 s after the bounce");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("converged {:?} after the last bounce", back.elapsed());
    stop.store(true, Ordering::Relaxed);
    let mut ids = HashSet::new();
    for (port, l) in stack.proxy_ports.clone().into_iter().zip(load) {
        let (seen, got) = l.await.unwrap();
        println!("replica {port}: answers {seen:?}");
        assert!(seen.get(&200).copied().unwrap_or(0) > 100, "replica {port} hardly served: {seen:?}");
        ids.extend(got);
    }

    // Each stream holds its producer's whole log, each event once.
    for (stream, db) in [
        ("KUBEGATE_IDENTITY", &stack.identity_db.name),
        ("KUBEGATE_ENVIRONMENTS", &stack.kubeconfig_db_name()),
    ] {
        let n = log_length(db).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let positions = stream_positions(&stack, stream).await;
            if positions.len() as u64 >= n {
                assert_eq!(positions, (1..=n).collect::<Vec<_>>(), "{stream}: lost or doubled events");
                break;
            }
            assert!(Instant::now() < deadline, "{stream}: {} of {n} events", positions.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let records = audit_covers(&stack, &ids, Duration::from_secs(60)).await;
    println!("{} requests, {} audit records, all present once", ids.len(), records.len());
    stack.reconnect();
}
