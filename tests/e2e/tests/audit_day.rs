//! A scripted day through the real stack — sign-ins good and bad, a kubeconfig download, kubectl
//! reads, writes and denials, an exec session, an expiry change, an access change, a revocation —
//! then `kubegate audit` (the binary, as an operator runs it) with each filter, in JSON, table and
//! CSV, compared with an independent reading of the raw streams and with what the day did;
//! `--follow`; `GET /api/audit`; one action followed across services by its correlation id; and
//! `kubegate replay verify`, before and after someone forges an event on the bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use kubegate_e2e::*;
use kubegate_events::{RawEnvelope, identity::IdentityEvent, identity::UserRoleChanged};
use kubegate_testsupport::process::workspace_bin;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// The operator's time zone in this test: the table must show it.
const TZ: &str = "Asia/Kolkata";

/// Runs `kubegate` with the stack's NATS and origin; returns exit code, stdout, stderr.
async fn kubegate(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    kubegate_with(stack, args, &[]).await
}

async fn kubegate_with(stack: &Stack, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = tokio::process::Command::new(workspace_bin("kubegate"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TZ", TZ)
        .env("KUBEGATE_NATS_URL", &stack.nats_access.url)
        .env("KUBEGATE_URL", stack.url(""))
        .env("KUBEGATE_CA", &stack.ca_path)
        .env("KUBEGATE_TOKEN", &stack.admin)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `kubegate audit --format json --since <day start> <filter>`: the rows.
async fn audit(stack: &Stack, since: &str, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--format", "json", "--since", since];
    args.extend_from_slice(filter);
    let (code, out, err) = kubegate(stack, &args).await;
    assert_eq!(code, 0, "kubegate {args:?} failed: {err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A REST call through the public origin; returns status, body and the request id kubegate gave it.
async fn call(
    stack: &Stack,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    stack.api_with_request_id(method, path, token, body).await
}

/// What the oracle knows of one stored message, read straight from the stream's JSON.
#[derive(Debug, Clone)]
struct Fact {
    id: String,
    rank: u8,
    index: usize,
    time: DateTime<Utc>,
    kind: &'static str,
    users: Vec<String>,
    envs: Vec<u64>,
    namespace: Option<String>,
    decision: Option<String>,
    correlation: String,
}

fn kind_of(event: &str) -> &'static str {
    match event {
        "RequestAudited" => "request",
        "SessionStarted" | "SessionEnded" => "session",
        "SignInSucceeded" | "SignInFailed" => "signin",
        "KubeconfigTokenIssued" | "KubeconfigTokenRevoked" | "UserTokensRevoked" => "token",
        "KubeconfigExpiryChanged" => "settings",
        "AccessPolicySet" => "access",
        "KubeconfigDownloaded" => "kubeconfig",
        e if e.starts_with("Environment") => "environment",
        e if e.starts_with("User") => "user",
        e if e.starts_with("Team") => "team",
        _ => "key",
    }
}

/// Who, which environments and which namespace a session's start named.
type SessionPlace = (Vec<String>, Vec<u64>, Option<String>);

/// A filter of `kubegate audit` and the facts it must select.
type Case<'a> = (Vec<&'a str>, Box<dyn Fn(&Fact) -> bool + 'a>);

/// The three streams as facts, merged the way the timeline is specified: each stream in its own
/// order, the oldest head first (domain events before requests at the same instant).
fn facts(streams: [&[RawEnvelope]; 3]) -> Vec<Fact> {
    let mut names: HashMap<u64, String> = HashMap::new();
    for r in streams[0].iter().filter(|r| r.event_type == "UserCreated") {
        let p: Value = serde_json::from_str(r.payload.get()).unwrap();
        names.insert(p["user_id"].as_u64().unwrap(), p["username"].as_str().unwrap().to_lowercase());
    }
    let mut sessions: HashMap<String, SessionPlace> = HashMap::new();
    let mut lanes: Vec<Vec<Fact>> = Vec::new();
    for (rank, stream) in streams.iter().enumerate() {
        let mut lane = Vec::new();
        for (index, r) in stream.iter().enumerate() {
            let p: Value = serde_json::from_str(r.payload.get()).unwrap();
            let actor = serde_json::to_value(&r.actor).unwrap();
            let mut users: Vec<String> = Vec::new();
            if actor["kind"] == "user" {
                users.push(actor["name"].as_str().unwrap().to_lowercase());
            }
            for key in ["username"] {
                if let Some(n) = p[key].as_str() {
                    users.push(n.to_lowercase());
                }
            }
            if let Some(n) = p["user_id"].as_u64().and_then(|id| names.get(&id)) {
                users.push(n.clone());
            }
            if let Some(n) = p["subject"]["username"].as_str() {
                users.push(n.to_lowercase());
            }
            let mut envs: Vec<u64> = Vec::new();
            for v in [&p["environment_id"], &p["target"]["environment_id"]] {
                if let Some(id) = v.as_u64() {
                    envs.push(id);
                }
            }
            envs.extend(p["environment_ids"].as_array().into_iter().flatten().filter_map(|v| v.as_u64()));
            let mut namespace = p["target"]["namespace"].as_str().map(str::to_string);
            let decision = match r.event_type.as_str() {
                "RequestAudited" => p["decision"].as_str().map(str::to_string),
                "SessionStarted" | "SignInSucceeded" => Some("allowed".into()),
                "SignInFailed" => Some("denied".into()),
                _ => None,
            };
            match r.event_type.as_str() {
                "SessionStarted" => {
                    sessions.insert(
                        p["session_id"].as_str().unwrap().to_string(),
                        (users.clone(), envs.clone(), namespace.clone()),
                    );
                }
                "SessionEnded" => {
                    if let Some((u, e, n)) = sessions.get(p["session_id"].as_str().unwrap()) {
                        users.extend(u.iter().cloned());
                        envs = e.clone();
                        namespace = n.clone();
                    }
                }
                _ => {}
            }
            lane.push(Fact {
                id: r.id.to_string(),
                rank: rank as u8,
                index,
                time: r.occurred_at,
                kind: kind_of(&r.event_type),
                users,
                envs,
                namespace,
                decision,
                correlation: r.correlation_id.clone(),
            });
        }
        lanes.push(lane);
    }
    let mut heads = [0usize; 3];
    let mut merged = Vec::new();
    loop {
        let next = (0..3).filter(|l| heads[*l] < lanes[*l].len()).min_by_key(|l| {
            let f = &lanes[*l][heads[*l]];
            (f.time, f.rank, f.index)
        });
        let Some(l) = next else { break };
        merged.push(lanes[l][heads[l]].clone());
        heads[l] += 1;
    }
    merged
}

async fn read_all(stack: &Stack) -> [Vec<RawEnvelope>; 3] {
    let bus = stack.bus().await;
    let mut out: [Vec<RawEnvelope>; 3] = Default::default();
    for (i, stream) in ["KUBEGATE_IDENTITY", "KUBEGATE_ENVIRONMENTS", "KUBEGATE_AUDIT"].iter().enumerate() {
        let n = bus.last_sequence(stream).await.unwrap_or(0);
        if n > 0 {
            out[i] = read_stream(&bus, stream, n, Duration::from_secs(20)).await;
        }
    }
    out
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

fn events(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["event"].as_str().unwrap()).collect()
}

/// The admin listener's `/state` of a service.
async fn state(port: u16) -> Value {
    reqwest::get(format!("http://127.0.0.1:{port}/state")).await.unwrap().json().await.unwrap()
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_audited_and_replayed() {
    let stack = Stack::start(Options::default()).await;
    let day_start = Utc::now();
    let since = day_start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);

    // --- Morning: the admin sets up.
    let (status, body, id_register) = call(
        &stack,
        "POST",
        "/api/endpoints",
        Some(&stack.admin),
        Some(json!({"name": "prod", "url": stack.sims[0].url(), "caCert": stack.sims[0].ca_pem(), "token": UPSTREAM_TOKEN})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let prod = body["id"].as_u64().unwrap();
    let alice = stack.create_user("alice", "alice-password-1", "user").await;
    stack.create_user("bob", "bob-password-1", "user").await;
    let (status, body, id_access1) = call(
        &stack,
        "PUT",
        &format!("/api/endpoints/{prod}/access"),
        Some(&stack.admin),
        Some(json!({"users": [{"userId": alice, "role": "standard", "namespaces": ["dev"]}], "teams": []})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // --- Sign-ins, good and bad.
    let signin = |user: &'static str, password: &'static str| {
        let stack = &stack;
        async move {
            call(stack, "POST", "/api/auth", None, Some(json!({"username": user, "password": password})))
                .await
        }
    };
    let (status, body, id_signin_alice) = signin("alice", "alice-password-1").await;
    assert_eq!(status, 200);
    let alice_session = body["jwt"].as_str().unwrap().to_string();
    let (status, _, id_signin_bad) = signin("alice", "not-her-password").await;
    assert_eq!(status, 401);
    let (status, _, id_signin_mallory) = signin("mallory", "guess-guess-guess").await;
    assert_eq!(status, 401);
    let (status, body, id_signin_bob) = signin("bob", "bob-password-1").await;
    assert_eq!(status, 200);
    let bob_session = body["jwt"].as_str().unwrap().to_string();
    for id in
        [&id_register, &id_access1, &id_signin_alice, &id_signin_bad, &id_signin_mallory, &id_signin_bob]
    {
        assert_eq!(id.len(), 32, "every REST answer through the proxy names its request id");
    }

    // --- alice downloads a kubeconfig; bob may not.
    let resp = stack
        .client
        .get(stack.url(&format!("/api/kubernetes/config?ids=[{prod}]")))
        .bearer_auth(&alice_session)
        .header("Accept", "text/yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let id_download = request_id(resp.headers());
    let kc = stack.dir.path().join("alice.kubeconfig");
    std::fs::write(&kc, resp.text().await.unwrap()).unwrap();
    let token = token_of(&kc);
    let (status, _, _) =
        call(&stack, "GET", &format!("/api/kubernetes/config?ids=[{prod}]"), Some(&bob_session), None).await;
    assert_eq!(status, 403);
    stack.wait_environment_everywhere(&kc).await;

    // --- kubectl: reads, a write, a denial, an exec session.
    let (status, _, id_direct_read) = call(
        &stack,
        "GET",
        &format!("/api/endpoints/{prod}/kubernetes/api/v1/namespaces/dev/pods"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(ok(kubectl(33, &kc, &["get", "pods"])).contains("worker"));
    ok(kubectl(33, &kc, &["create", "configmap", "day-note", "--from-literal=k=v"]));
    fails_with(kubectl(33, &kc, &["get", "pods", "-n", "kube-system"]), "Forbidden");
    assert_eq!(ok(kubectl(33, &kc, &["exec", "api", "--", "echo", "hello-audit"])).trim(), "hello-audit");
    let mid_day = Utc::now();

    // --- Afternoon, with the command line: the expiry, alice's access, her token.
    let (code, out, err) = kubegate(&stack, &["settings", "set", "--kubeconfig-expiry", "24h"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("24h"), "{out}");
    let (code, out, err) =
        kubegate(&stack, &["access", "set", "prod", "--user", "alice=read-only:dev"]).await;
    assert_eq!(code, 0, "{out}{err}");
    for port in stack.proxies.iter().map(|p| p.admin_port) {
        until("every replica knows alice is read-only", || async move {
            let s = state(port).await;
            s["environments"][0]["policy"]["users"][0]["role"] == "read-only"
        })
        .await;
    }
    fails_with(kubectl(33, &kc, &["create", "configmap", "day-note-2", "--from-literal=k=v"]), "not allowed");
    let (code, out, err) = kubegate(&stack, &["tokens", "list", "--user", "alice"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&jti(&token)) && out.contains("valid"), "{out}");
    let (code, out, err) = kubegate(&stack, &["tokens", "revoke", &jti(&token)]).await;
    assert_eq!(code, 0, "{out}{err}");
    for port in stack.proxies.iter().map(|p| p.admin_port) {
        let jti = jti(&token);
        until("every replica refuses the revoked token", || {
            let jti = jti.clone();
            async move { state(port).await["revokedTokens"].as_array().unwrap().iter().any(|t| t == &json!(jti)) }
        })
        .await;
    }
    let (status, _, id_after_revoke) = call(
        &stack,
        "GET",
        &format!("/api/endpoints/{prod}/kubernetes/api/v1/namespaces/dev/pods"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // Everything the day did is in the streams (the proxies publish in batches).
    let mut streams = read_all(&stack).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let has = |id: &str| streams[2].iter().any(|r| r.correlation_id == id);
        let ended = streams[2].iter().any(|r| r.event_type == "SessionEnded");
        if has(&id_after_revoke) && has(&id_direct_read) && ended {
            let again = read_all(&stack).await;
            if again.iter().map(Vec::len).eq(streams.iter().map(Vec::len)) {
                break;
            }
            streams = again;
            continue;
        }
        assert!(Instant::now() < deadline, "the day's audit records did not all arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
        streams = read_all(&stack).await;
    }
    let day: Vec<Fact> =
        facts([&streams[0], &streams[1], &streams[2]]).into_iter().filter(|f| f.time >= day_start).collect();
    let expect = |pred: &dyn Fn(&Fact) -> bool| -> Vec<String> {
        day.iter().filter(|f| pred(f)).map(|f| f.id.clone()).collect()
    };

    // --- Every filter, against the raw streams.
    let prod_id = prod.to_string();
    let mid = mid_day.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let cases: Vec<Case> = vec![
        (vec![], Box::new(|_| true)),
        (vec!["--user", "alice"], Box::new(|f| f.users.iter().any(|u| u == "alice"))),
        (vec!["--user", "BOB"], Box::new(|f| f.users.iter().any(|u| u == "bob"))),
        (vec!["--user", "mallory"], Box::new(|f| f.users.iter().any(|u| u == "mallory"))),
        (vec!["--env", "prod"], Box::new(move |f| f.envs.contains(&prod))),
        (vec!["--env", &prod_id], Box::new(move |f| f.envs.contains(&prod))),
        (vec!["--namespace", "dev"], Box::new(|f| f.namespace.as_deref() == Some("dev"))),
        (vec!["--namespace", "kube-system"], Box::new(|f| f.namespace.as_deref() == Some("kube-system"))),
        (vec!["--decision", "denied"], Box::new(|f| f.decision.as_deref() == Some("denied"))),
        (vec!["--decision", "allowed"], Box::new(|f| f.decision.as_deref() == Some("allowed"))),
        (vec!["--until", &mid], Box::new(move |f| f.time <= mid_day)),
        (
            vec!["--user", "alice", "--kind", "request", "--decision", "denied"],
            Box::new(|f| {
                f.kind == "request"
                    && f.decision.as_deref() == Some("denied")
                    && f.users.iter().any(|u| u == "alice")
            }),
        ),
        (vec!["--correlation", &id_download], Box::new(|f| f.correlation == id_download)),
    ];
    for kind in
        ["request", "session", "signin", "token", "settings", "access", "environment", "kubeconfig", "user"]
    {
        let rows = audit(&stack, &since, &["--kind", kind]).await;
        assert_eq!(ids(&rows), expect(&|f| f.kind == kind), "--kind {kind}");
    }
    for (filter, pred) in &cases {
        let rows = audit(&stack, &since, filter).await;
        assert_eq!(ids(&rows), expect(pred.as_ref()), "filter {filter:?}");
    }

    // --- And against what the day did.
    let signins = audit(&stack, &since, &["--kind", "signin"]).await;
    assert_eq!(events(&signins), ["SignInSucceeded", "SignInFailed", "SignInFailed", "SignInSucceeded"]);
    let who: Vec<&str> = signins.iter().map(|r| r["user"].as_str().unwrap()).collect();
    assert_eq!(who, ["alice", "alice", "mallory", "bob"]);
    let correlations: Vec<&str> = signins.iter().map(|r| r["correlationId"].as_str().unwrap()).collect();
    assert_eq!(correlations, [&id_signin_alice, &id_signin_bad, &id_signin_mallory, &id_signin_bob]);
    let decisions: Vec<&str> = signins.iter().map(|r| r["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["allowed", "denied", "denied", "allowed"]);

    let access = audit(&stack, &since, &["--kind", "access"]).await;
    assert_eq!(events(&access), ["AccessPolicySet", "AccessPolicySet"]);
    assert_eq!(access[0]["correlationId"], json!(id_access1));
    assert!(access[0]["summary"].as_str().unwrap().contains("alice=standard[dev]"), "{}", access[0]);
    assert!(access[1]["summary"].as_str().unwrap().contains("alice=read-only[dev]"), "{}", access[1]);
    assert_eq!(access[1]["user"], "admin");

    let settings = audit(&stack, &since, &["--kind", "settings"]).await;
    assert_eq!(events(&settings), ["KubeconfigExpiryChanged"]);
    assert!(settings[0]["summary"].as_str().unwrap().contains("from 720h to 24h"), "{}", settings[0]);

    let environments = audit(&stack, &since, &["--kind", "environment"]).await;
    assert_eq!(events(&environments), ["EnvironmentRegistered"]);
    assert_eq!(
        (environments[0]["environments"].clone(), environments[0]["correlationId"].clone()),
        (json!(["prod"]), json!(id_register))
    );

    let tokens = audit(&stack, &since, &["--kind", "token"]).await;
    assert_eq!(events(&tokens), ["KubeconfigTokenIssued", "KubeconfigTokenRevoked"]);
    assert_eq!(tokens[0]["correlationId"], json!(id_download));
    assert_eq!(
        (tokens[1]["targetUser"].clone(), tokens[1]["tokenId"].clone()),
        (json!("alice"), json!(jti(&token)))
    );

    let sessions = audit(&stack, &since, &["--kind", "session"]).await;
    assert_eq!(events(&sessions), ["SessionStarted", "SessionEnded"]);
    let exec =
        audit(&stack, &since, &["--correlation", sessions[0]["correlationId"].as_str().unwrap()]).await;
    assert_eq!(events(&exec), ["RequestAudited", "SessionStarted", "SessionEnded"]);
    assert_eq!((exec[0]["status"].clone(), exec[0]["resource"].clone()), (json!(101), json!("pods/exec")));
    for r in &exec {
        assert_eq!(
            (r["user"].as_str(), r["namespace"].as_str(), r["environments"].clone()),
            (Some("alice"), Some("dev"), json!(["prod"]))
        );
    }
    // How it ended (kubectl may drop the TLS connection without close_notify: the proxy says so).
    assert!(!exec[2]["reason"].as_str().unwrap().is_empty(), "{}", exec[2]);

    let denied = audit(&stack, &since, &["--kind", "request", "--decision", "denied"]).await;
    let statuses: Vec<u64> = denied.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [403, 403, 401], "{denied:?}");
    assert_eq!(
        (denied[0]["namespace"].as_str(), denied[0]["verb"].as_str()),
        (Some("kube-system"), Some("list"))
    );
    assert_eq!(
        (denied[1]["verb"].as_str(), denied[1]["resource"].as_str()),
        (Some("create"), Some("configmaps"))
    );
    assert_eq!(denied[2]["correlationId"], json!(id_after_revoke));

    // A request answered in full has no reason on its record (only a stream cut short has one).
    let allowed = audit(&stack, &since, &["--kind", "request", "--decision", "allowed"]).await;
    let answered: Vec<&Value> = allowed.iter().filter(|r| r["status"] == json!(200)).collect();
    assert!(answered.len() >= 3, "{allowed:?}");
    for r in answered {
        assert_eq!(r["reason"], Value::Null, "{r}");
    }

    let bob = audit(&stack, &since, &["--user", "bob"]).await;
    assert_eq!(events(&bob), ["UserCreated", "SignInSucceeded"]);

    // One action followed across services: the download's request id names the token identity
    // issued and the download kubeconfig recorded; a request's audit record carries the id the
    // proxy answered with.
    let download = audit(&stack, &since, &["--correlation", &id_download]).await;
    assert_eq!(events(&download), ["KubeconfigTokenIssued", "KubeconfigDownloaded"]);
    assert_eq!(
        download.iter().map(|r| r["stream"].as_str().unwrap()).collect::<Vec<_>>(),
        ["KUBEGATE_IDENTITY", "KUBEGATE_ENVIRONMENTS"]
    );
    let read = audit(&stack, &since, &["--correlation", &id_direct_read]).await;
    assert_eq!(events(&read), ["RequestAudited"]);
    assert_eq!(
        (read[0]["status"].clone(), read[0]["user"].clone(), read[0]["verb"].clone()),
        (json!(200), json!("alice"), json!("list"))
    );

    // --- The same rows as a table (local time) and as CSV.
    let alice_rows = audit(&stack, &since, &["--user", "alice"]).await;
    let (code, table, err) = kubegate(&stack, &["audit", "--since", &since, "--user", "alice"]).await;
    assert_eq!(code, 0, "{err}");
    eprintln!("kubegate audit --user alice:\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), alice_rows.len() + 1, "{table}");
    assert!(lines[0].starts_with("TIME") && lines[0].contains("ENVIRONMENT"), "{}", lines[0]);
    let india = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    for (line, row) in lines[1..].iter().zip(&alice_rows) {
        let utc: DateTime<Utc> = row["time"].as_str().unwrap().parse().unwrap();
        let local = utc.with_timezone(&india).format("%Y-%m-%d %H:%M:%S%.3f+05:30").to_string();
        assert!(line.starts_with(&local), "{line:?} does not start with {local}");
        assert!(line.contains(row["correlationId"].as_str().unwrap()), "{line}");
    }
    let (code, csv_text, err) =
        kubegate(&stack, &["audit", "--since", &since, "--user", "alice", "--format", "csv"]).await;
    assert_eq!(code, 0, "{err}");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.iter().map(|r| r[column("id")].to_string()).collect::<Vec<_>>(), ids(&alice_rows));
    for (r, row) in records.iter().zip(&alice_rows) {
        assert_eq!(&r[column("summary")], row["summary"].as_str().unwrap());
        assert_eq!(&r[column("time")], row["time"].as_str().unwrap());
    }
    let (code, _, err) = kubegate(&stack, &["audit", "--since", "yesterday-ish"]).await;
    assert_eq!(code, 64, "a bad filter is a usage error");
    assert!(err.contains("--since"), "{err}");

    // --- GET /api/audit: the same rows, a page at a time; admins only; bad filters named.
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let mut path = format!("/api/audit?user=alice&limit=7&since={}", since.replace('+', "%2B"));
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page, _) = call(&stack, "GET", &path, Some(&stack.admin), None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        paged.extend(ids(items));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, ids(&alice_rows));
    let (status, body, _) = call(&stack, "GET", "/api/audit?kind=signin", Some(&alice_session), None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body, _) = call(&stack, "GET", "/api/audit?since=soonish", Some(&stack.admin), None).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().starts_with("since:"), "{body}");
    let (status, body, _) = call(&stack, "GET", "/api/audit?usr=alice", Some(&stack.admin), None).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("usr"), "{body}");

    // --- --follow shows a new record within a second.
    let mut follower = tokio::process::Command::new(workspace_bin("kubegate"))
        .args(["audit", "--follow", "--format", "json", "--kind", "request", "--since", &since])
        .env_clear()
        .env("KUBEGATE_NATS_URL", &stack.nats_access.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    let history = expect(&|f| f.kind == "request").len();
    for _ in 0..history {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("history in time")
            .unwrap()
            .unwrap();
    }
    let (status, _, id_new) =
        call(&stack, "GET", &format!("/api/endpoints/{prod}/kubernetes/version"), Some(&token), None).await;
    assert_eq!(status, 401);
    let answered = Instant::now();
    let line = tokio::time::timeout(Duration::from_secs(1), lines.next_line())
        .await
        .expect("the follower shows the new record within 1 s")
        .unwrap()
        .unwrap();
    assert!(answered.elapsed() < Duration::from_secs(1));
    assert!(line.contains(&id_new), "{line}");
    follower.kill().await.unwrap();

    // --- Retention: audit records are kept 90 days by default; the domain logs are never cut.
    let bus = stack.bus().await;
    for (stream, max_age) in [
        ("KUBEGATE_AUDIT", Duration::from_secs(90 * 24 * 3600)),
        ("KUBEGATE_IDENTITY", Duration::ZERO),
        ("KUBEGATE_ENVIRONMENTS", Duration::ZERO),
    ] {
        let mut s = bus.jetstream().get_stream(stream).await.unwrap();
        let config = s.info().await.unwrap().config.clone();
        assert_eq!(config.max_age, max_age, "{stream}");
        if max_age.is_zero() {
            assert_eq!((config.max_bytes, config.max_messages), (-1, -1), "{stream} is never truncated");
        }
    }

    // --- replay verify: the logs rebuild exactly what every service holds.
    let proxies: Vec<String> =
        stack.proxies.iter().map(|p| format!("http://127.0.0.1:{}", p.admin_port)).collect();
    let identity_admin = format!("http://127.0.0.1:{}", stack.identity.admin_port);
    let kubeconfig_admin = format!("http://127.0.0.1:{}", stack.kubeconfig.admin_port);
    let verify = |settle: &'static str| {
        let (proxies, identity_admin, kubeconfig_admin) =
            (proxies.join(","), identity_admin.clone(), kubeconfig_admin.clone());
        let stack = &stack;
        async move {
            kubegate(
                stack,
                &[
                    "replay",
                    "verify",
                    "--identity-admin",
                    &identity_admin,
                    "--kubeconfig-admin",
                    &kubeconfig_admin,
                    "--proxy-admin",
                    &proxies,
                    "--settle",
                    settle,
                ],
            )
            .await
        }
    };
    let (code, out, err) = verify("10s").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.lines().any(|l| l == "consistent"), "{out}");

    // The tamper an operator fears: someone with a bus credential that may publish on identity's
    // subjects (a misconfigured NATS, a leaked identity credential) makes alice an admin without
    // identity's log knowing. The proxies believe it — alice would be environment-admin
    // everywhere — while identity does not. verify must say so and name the field.
    let last = streams[0].iter().map(|r| r.position).max().unwrap();
    let mut forged = kubegate_events::Envelope::new(
        format!("user-{alice}"),
        kubegate_events::Actor::System { service: "identity".into() },
        "forged",
        IdentityEvent::UserRoleChanged(UserRoleChanged {
            user_id: alice,
            role: kubegate_events::identity::GlobalRole::Admin,
        }),
    );
    forged.position = last + 1;
    forged.sequence = 99;
    let raw = forged.to_raw().unwrap();
    stack.bus().await.publish_events(&[("kubegate.identity.user.role-changed", &raw)]).await.unwrap();
    for port in stack.proxies.iter().map(|p| p.admin_port) {
        until("the proxies apply the forged event", || async move {
            state(port).await["users"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["username"] == "alice" && u["admin"] == true)
        })
        .await;
    }
    let (code, out, err) = verify("2s").await;
    eprintln!("kubegate replay verify, after the forgery:\n{out}");
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "identity: users[{alice} alice].role: the log gives \"admin\", identity reports \"user\""
        )),
        "{out}"
    );
    assert!(out.contains("KUBEGATE_IDENTITY holds events identity's own log does not have"), "{out}");
    assert!(!out.lines().any(|l| l == "consistent"), "{out}");
}

/// With NATS as deployed (one user per service, each allowed only its own subjects), the
/// command line reads the timeline as the audit user, and the kubeconfig service serves
/// `GET /api/audit` with its own credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_is_readable_with_the_deployed_bus_permissions() {
    let stack = Stack::start(Options { nats_users: true, environments: 1, ..Default::default() }).await;
    let since = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, _, id_bad) = call(
        &stack,
        "POST",
        "/api/auth",
        None,
        Some(json!({"username": "admin", "password": "wrong-wrong"})),
    )
    .await;
    assert_eq!(status, 401);
    let password = stack.nats_access.passwords["kubegate-audit"].clone();
    let audit_user =
        [("KUBEGATE_NATS_USER", "kubegate-audit"), ("KUBEGATE_NATS_PASSWORD", password.as_str())];
    let (code, out, err) = kubegate_with(
        &stack,
        &["audit", "--since", &since, "--kind", "signin", "--format", "json"],
        &audit_user,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events(&rows), ["SignInFailed"]);
    assert_eq!(rows[0]["correlationId"], json!(id_bad));
    let (status, page, _) = call(
        &stack,
        "GET",
        &format!("/api/audit?kind=signin&since={}", since.replace('+', "%2B")),
        Some(&stack.admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["correlationId"], json!(id_bad), "{page}");
    assert_eq!(page["nextCursor"], Value::Null);
}
