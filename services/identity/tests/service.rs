//! The identity service as a real process, against real PostgreSQL and a real nats-server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use kubegate_bus::{Bus, NatsConfig};
use kubegate_events::identity::IdentityEvent;
use kubegate_events::{DomainEvent, RawEnvelope};
use kubegate_testsupport::nats::NatsServer;
use kubegate_testsupport::net::free_port;
use kubegate_testsupport::postgres::TestDb;
use kubegate_testsupport::process::Service;
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "admin-password-123";

struct Harness {
    _db: TestDb,
    nats: NatsServer,
    _pki: tempfile::TempDir,
    ca_path: std::path::PathBuf,
    svc: Service,
    port: u16,
    client: reqwest::Client,
}

fn service(
    db: &TestDb,
    nats: &NatsServer,
    pki: &kubegate_tls::DevPki,
    port: u16,
    admin: Option<&str>,
) -> Service {
    let mut env = vec![
        ("KUBEGATE_IDENTITY_LISTEN", format!("127.0.0.1:{port}")),
        ("KUBEGATE_IDENTITY_DATABASE_URL", db.url()),
        ("KUBEGATE_NATS_URL", nats.url()),
        ("KUBEGATE_MASTER_KEY", "3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w0=".to_string()),
        ("KUBEGATE_TLS_CERT", pki.server_cert.display().to_string()),
        ("KUBEGATE_TLS_KEY", pki.server_key.display().to_string()),
        ("KUBEGATE_SIGNIN_MAX_FAILURES_PER_USER", "5".to_string()),
    ];
    if let Some(a) = admin {
        env.push(("KUBEGATE_ADMIN_PASSWORD", a.to_string()));
    }
    Service::new("identity", env!("CARGO_BIN_EXE_kubegate-identity"), &env)
}

impl Harness {
    async fn start() -> Harness {
        let db = TestDb::create().await;
        let nats = NatsServer::start_new();
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = kubegate_tls::DevPki::ensure(pki_dir.path()).unwrap();
        let port = free_port();
        let mut svc = service(&db, &nats, &pki, port, Some(ADMIN_PASSWORD));
        svc.start_ready(Duration::from_secs(60));
        let client = new_client(&std::fs::read_to_string(&pki.ca_cert).unwrap());
        Harness { _db: db, nats, _pki: pki_dir, ca_path: pki.ca_cert.clone(), svc, port, client }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn sign_in(&self, user: &str, password: &str) -> (u16, Value) {
        self.call("POST", "/api/auth", None, Some(json!({"username": user, "password": password}))).await
    }

    async fn session(&self, user: &str, password: &str) -> String {
        let (status, body) = self.sign_in(user, password).await;
        assert_eq!(status, 200, "{body}");
        body["jwt"].as_str().unwrap().to_string()
    }

    async fn bus(&self) -> Bus {
        let bus = Bus::connect(&NatsConfig::new(self.nats.url(), "test")).await.unwrap();
        assert!(bus.wait_connected(Duration::from_secs(5)).await);
        bus
    }
}

fn new_client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(kubegate_tls::client_config(ca, None, &[b"h2", b"http/1.1"]).unwrap())
        .build()
        .unwrap()
}

fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

fn header(token: &str) -> Value {
    use base64::Engine as _;
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// Every event in the KUBEGATE_IDENTITY stream, once the stream holds at least `at_least`.
async fn stream_events(bus: &Bus, at_least: u64) -> Vec<RawEnvelope> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let last = loop {
        let last = bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap_or(0);
        if last >= at_least {
            break last;
        }
        assert!(std::time::Instant::now() < deadline, "stream has {last} events, expected {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stream = bus.jetstream().get_stream("KUBEGATE_IDENTITY").await.unwrap();
    let consumer = stream
        .create_consumer(pull::OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while let Some(Ok(m)) = messages.next().await {
        out.push(RawEnvelope::from_slice(&m.payload).unwrap());
        if m.info().unwrap().stream_sequence >= last {
            break;
        }
    }
    out
}

#[tokio::test]
async fn first_start_needs_the_admin_password_and_a_valid_master_key() {
    let db = TestDb::create().await;
    let nats = NatsServer::start_new();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = kubegate_tls::DevPki::ensure(pki_dir.path()).unwrap();
    let mut svc = service(&db, &nats, &pki, free_port(), None);
    let (code, out) = svc.run_to_exit(Duration::from_secs(60));
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("KUBEGATE_ADMIN_PASSWORD is required on first start"), "{out}");

    let mut svc = service(&db, &nats, &pki, free_port(), Some(ADMIN_PASSWORD));
    svc.set_env("KUBEGATE_MASTER_KEY", "not-a-key");
    let (code, out) = svc.run_to_exit(Duration::from_secs(30));
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("KUBEGATE_MASTER_KEY"), "{out}");
    assert!(!out.contains("not-a-key"), "the secret itself is never printed");
}

#[tokio::test]
async fn sign_in_users_and_settings() {
    let h = Harness::start().await;
    let admin = h.session("admin", ADMIN_PASSWORD).await;
    let hd = header(&admin);
    assert_eq!(hd["alg"], "EdDSA");
    assert!(hd["kid"].as_str().unwrap().starts_with("k-"));
    let c = claims(&admin);
    assert_eq!(c["scope"], "session");
    assert_eq!(c["name"], "admin");
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());

    let (status, body) = h.sign_in("admin", "wrong-password").await;
    assert_eq!((status, body["message"].as_str().unwrap()), (401, "invalid username or password"));
    let (status, _) = h.sign_in("nobody", "whatever-123").await;
    assert_eq!(status, 401);

    let (status, body) = h
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "alice", "password": "alice-password", "role": "user"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let alice_id = body["id"].as_u64().unwrap();
    assert_eq!(alice_id, 2);
    let (status, body) = h
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "ALICE", "password": "alice-password"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = h
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "bob", "password": "bob-password", "colour": "red"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("unknown field `colour`"), "{body}");
    let (status, body) = h
        .call("POST", "/api/users", Some(&admin), Some(json!({"username": "bob", "password": "short"})))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = h.call("GET", "/api/users/2", None, None).await;
    assert_eq!(status, 401);

    let alice = h.session("alice", "alice-password").await;
    let (status, body) = h
        .call(
            "POST",
            "/api/users",
            Some(&alice),
            Some(json!({"username": "eve", "password": "eve-password"})),
        )
        .await;
    assert_eq!((status, body["message"].as_str().unwrap()), (403, "this requires the admin role"));
    let (status, body) = h.call("GET", "/api/users", Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "a user sees only themselves");
    let (status, body) = h.call("GET", "/api/settings/public", Some(&alice), None).await;
    assert_eq!((status, body["kubeconfigExpiry"].as_str().unwrap()), (200, "720h"));
    assert_eq!(body["kubeconfigExpiryDescription"], "expires in 30 days");
    let (status, _) = h.call("GET", "/api/settings", Some(&alice), None).await;
    assert_eq!(status, 403);

    let (status, body) =
        h.call("PUT", "/api/settings", Some(&admin), Some(json!({"kubeconfigExpiry": "48h"}))).await;
    assert_eq!(status, 400);
    let msg = body["message"].as_str().unwrap();
    for allowed in ["\"24h\"", "\"168h\"", "\"720h\"", "\"8760h\"", "\"0\""] {
        assert!(msg.contains(allowed), "{msg}");
    }
    let (status, body) = h.call("GET", "/api/settings", Some(&admin), None).await;
    assert_eq!(
        (status, body["kubeconfigExpiry"].as_str().unwrap()),
        (200, "720h"),
        "a refused change changes nothing"
    );
    let (status, body) =
        h.call("PUT", "/api/settings", Some(&admin), Some(json!({"kubeconfigExpiry": "0"}))).await;
    assert_eq!((status, body["kubeconfigExpiryDescription"].as_str().unwrap()), (200, "never expires"));

    // Teams.
    let (status, body) = h.call("POST", "/api/teams", Some(&admin), Some(json!({"name": "platform"}))).await;
    assert_eq!(status, 200, "{body}");
    let team = body["id"].as_u64().unwrap();
    let (status, body) = h
        .call("POST", &format!("/api/teams/{team}/members"), Some(&admin), Some(json!({"userId": alice_id})))
        .await;
    assert_eq!((status, body["memberIds"].clone()), (200, json!([alice_id])));
    let (_, me) = h.call("GET", "/api/users/me", Some(&alice), None).await;
    assert_eq!(me["teamIds"], json!([team]));

    // The last admin is protected.
    let (status, _) = h.call("PUT", "/api/users/1", Some(&admin), Some(json!({"role": "user"}))).await;
    assert_eq!(status, 409);
    // Query-string tokens mean nothing.
    let (status, _) = h.call("GET", &format!("/api/users?token={admin}"), None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_and_recorded() {
    let h = Harness::start().await;
    for _ in 0..5 {
        let (status, _) = h.sign_in("admin", "wrong-password").await;
        assert_eq!(status, 401);
    }
    let resp = h
        .client
        .post(h.url("/api/auth"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429, "even the right password waits out the window");
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 15 * 60);
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().starts_with("too many failed sign-ins; try again in"));

    let bus = h.bus().await;
    let events = stream_events(&bus, 8).await;
    let failed: Vec<String> = events
        .iter()
        .filter_map(|e| match e.decode::<IdentityEvent>().unwrap().event {
            IdentityEvent::SignInFailed(f) => {
                Some(serde_json::to_value(f.reason).unwrap().as_str().unwrap().to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed.iter().filter(|r| *r == "bad-credentials").count(), 5);
    assert_eq!(failed.iter().filter(|r| *r == "throttled").count(), 1);
}

#[tokio::test]
async fn kubeconfig_tokens_expiry_and_revocation() {
    let h = Harness::start().await;
    let admin = h.session("admin", ADMIN_PASSWORD).await;
    h.call(
        "POST",
        "/api/users",
        Some(&admin),
        Some(json!({"username": "alice", "password": "alice-password"})),
    )
    .await;
    let alice_session = h.session("alice", "alice-password").await;
    let bus = h.bus().await;

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Issued {
        token: String,
        token_id: String,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    let issue = |envs: Vec<u64>| {
        let bus = bus.clone();
        async move {
            bus.request::<_, Issued>(
                kubegate_identity::rpc::ISSUE_TOKEN_SUBJECT,
                &json!({"userId": 2, "username": "alice", "environmentIds": envs}),
                "corr-test",
                Duration::from_secs(5),
            )
            .await
        }
    };
    let first = issue(vec![1, 3]).await.unwrap();
    let c1 = claims(&first.token);
    assert_eq!(c1["scope"], "kubeconfig");
    assert_eq!(c1["jti"].as_str().unwrap(), first.token_id);
    assert_eq!(c1["exp"].as_i64().unwrap() - c1["iat"].as_i64().unwrap(), 720 * 3600);
    assert_eq!(first.expires_at.unwrap().timestamp(), c1["exp"].as_i64().unwrap());

    // The public key travels on the bus: a verifier with only the stream can check the token.
    let events = stream_events(&bus, 3).await;
    let mut keys = kubegate_token::KeySet::new();
    for e in &events {
        if let IdentityEvent::SigningKeyAdded(k) = e.decode::<IdentityEvent>().unwrap().event {
            keys.insert(&k.kid, &k.public_key).unwrap();
            assert!(!k.private_key.0.is_empty());
        }
    }
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        keys.verify(&first.token, kubegate_token::Scope::Kubeconfig, now).unwrap().jti,
        first.token_id
    );

    // An expiry change applies to new tokens only.
    let (status, _) =
        h.call("PUT", "/api/settings", Some(&admin), Some(json!({"kubeconfigExpiry": "24h"}))).await;
    assert_eq!(status, 200);
    let second = issue(vec![1]).await.unwrap();
    let c2 = claims(&second.token);
    assert_eq!(c2["exp"].as_i64().unwrap() - c2["iat"].as_i64().unwrap(), 24 * 3600);
    let (_, list) = h.call("GET", "/api/kubeconfig-tokens?userId=2", Some(&admin), None).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let listed_first = list.iter().find(|t| t["id"] == first.token_id.as_str()).unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(listed_first["expiresAt"].as_str().unwrap())
            .unwrap()
            .timestamp(),
        c1["exp"].as_i64().unwrap(),
        "the earlier token keeps its 30-day expiry"
    );
    assert_eq!(listed_first["environmentIds"], json!([1, 3]));

    // A kubeconfig token is refused by the REST API.
    let (status, body) = h.call("GET", "/api/users/me", Some(&first.token), None).await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().unwrap().contains("kubeconfig tokens are not accepted"), "{body}");

    // Revoke one.
    let (status, _) = h
        .call("DELETE", &format!("/api/kubeconfig-tokens/{}", second.token_id), Some(&alice_session), None)
        .await;
    assert_eq!(status, 204);

    // A password change revokes everything issued before it: kubeconfig tokens and sessions.
    let (status, body) =
        h.call("PUT", "/api/users/2", Some(&admin), Some(json!({"password": "alice-new-password"}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = h.call("GET", "/api/kubeconfig-tokens?userId=2", Some(&admin), None).await;
    assert!(list.as_array().unwrap().iter().all(|t| t["revoked"] == true), "{list}");
    let (status, body) = h.call("GET", "/api/users/me", Some(&alice_session), None).await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().unwrap().contains("revoked"), "{body}");
    let (status, _) = h.sign_in("alice", "alice-password").await;
    assert_eq!(status, 401);
    let fresh = h.session("alice", "alice-new-password").await;
    let (status, _) = h.call("GET", "/api/users/me", Some(&fresh), None).await;
    assert_eq!(status, 200, "a token issued right after the change (same second) is valid");
    let third = issue(vec![2]).await.unwrap();
    let (_, list) = h.call("GET", "/api/kubeconfig-tokens", Some(&fresh), None).await;
    let t3 = list.as_array().unwrap().iter().find(|t| t["id"] == third.token_id.as_str()).unwrap().clone();
    assert_eq!(t3["revoked"], false);

    // The events say it all: issued, revoked, user tokens revoked.
    let events = stream_events(&bus, 12).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    for t in [
        "KubeconfigTokenIssued",
        "KubeconfigTokenRevoked",
        "UserTokensRevoked",
        "UserPasswordChanged",
        "KubeconfigExpiryChanged",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    let issued = events.iter().find(|e| e.event_type == "KubeconfigTokenIssued").unwrap();
    assert_eq!(issued.correlation_id, "corr-test");
    assert_eq!(issued.actor, kubegate_events::Actor::User { id: 2, name: "alice".into() });

    // Unknown users get a typed refusal; so does a caller that names the user wrongly (the name
    // is recorded as who asked).
    for (body, status) in [
        (json!({"userId": 99, "username": "alice", "environmentIds": [1]}), 404),
        (json!({"userId": 2, "username": "admin", "environmentIds": [1]}), 409),
    ] {
        let err = bus
            .request::<_, Issued>(
                kubegate_identity::rpc::ISSUE_TOKEN_SUBJECT,
                &body,
                "c",
                Duration::from_secs(5),
            )
            .await
            .err()
            .unwrap();
        assert!(matches!(err, kubegate_bus::RpcError::Remote(ref f) if f.status == status), "{body}: {err}");
    }
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    serde_json::from_slice::<Value>(&raw).unwrap()["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_new_signing_key_is_published_before_it_signs_unless_the_old_one_is_retired() {
    let h = Harness::start().await;
    let admin = h.session("admin", ADMIN_PASSWORD).await;
    let old_kid = kid_of(&admin);
    let (status, rotated) = h.call("POST", "/api/signing-keys/rotate", Some(&admin), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    let (_, keys) = h.call("GET", "/api/signing-keys", Some(&admin), None).await;
    let view = |kid: &str| keys.as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap().clone();
    assert_eq!(
        (view(&old_kid)["active"].clone(), view(&old_kid)["pending"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        (view(&new_kid)["active"].clone(), view(&new_kid)["pending"].clone()),
        (json!(false), json!(true))
    );
    let added: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(view(&new_kid)["addedAt"].clone()).unwrap();
    let signs_from: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(rotated["signsFrom"].clone()).unwrap();
    assert_eq!(signs_from - added, chrono::TimeDelta::seconds(10), "{rotated}");

    // Right after the rotation, what verifiers may not know yet does not sign.
    assert_eq!(kid_of(&h.session("admin", ADMIN_PASSWORD).await), old_kid);
    // Retiring the old key (it may have leaked) makes the new one sign at once.
    let (status, body) = h.call("DELETE", &format!("/api/signing-keys/{old_kid}"), Some(&admin), None).await;
    assert_eq!(status, 204, "{body}");
    let admin = h.session("admin", ADMIN_PASSWORD).await;
    assert_eq!(kid_of(&admin), new_kid);
    let (status, body) = h.call("DELETE", &format!("/api/signing-keys/{new_kid}"), Some(&admin), None).await;
    assert_eq!(status, 409, "the last key stays: {body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("last signing key"), "{body}");
}

#[tokio::test]
async fn state_survives_a_restart_and_every_published_event_matches_its_schema() {
    let mut h = Harness::start().await;
    let admin = h.session("admin", ADMIN_PASSWORD).await;
    h.call(
        "POST",
        "/api/users",
        Some(&admin),
        Some(json!({"username": "carol", "password": "carol-password"})),
    )
    .await;
    let (_, keys_before) = h.call("GET", "/api/signing-keys", Some(&admin), None).await;
    let (status, body) = h.call("POST", "/api/signing-keys/rotate", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let old_kid = keys_before[0]["kid"].as_str().unwrap().to_string();
    // A session signed by the old key stays valid until that key is retired.
    let (status, _) = h.call("GET", "/api/users/me", Some(&admin), None).await;
    assert_eq!(status, 200);

    assert_eq!(h.svc.terminate(Duration::from_secs(20)), Some(0), "SIGTERM drains and exits 0");
    h.svc.start_ready(Duration::from_secs(60));
    // The old process's pooled connections are gone with it.
    h.client = new_client(&std::fs::read_to_string(&h.ca_path).unwrap());
    let carol = h.session("carol", "carol-password").await;
    let (status, _) = h.call("GET", "/api/users/me", Some(&carol), None).await;
    assert_eq!(status, 200);
    let (status, _) = h.call("GET", "/api/users/me", Some(&admin), None).await;
    assert_eq!(status, 200, "the old key still verifies after a restart");
    let (status, _) = h.call("DELETE", &format!("/api/signing-keys/{old_kid}"), Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, _) = h.call("GET", "/api/users/me", Some(&admin), None).await;
    assert_eq!(status, 401, "a retired key's tokens stop working");

    let bus = h.bus().await;
    // admin created, key added, admin signed in, carol created, key rotated, carol signed in, key retired
    let events = stream_events(&bus, 7).await;
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=events.len() as u64).collect::<Vec<_>>(), "published once each, in order");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events/identity");
    for e in &events {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{}.v{}.json", e.event_type, e.version))).unwrap(),
        )
        .unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let value: Value = serde_json::from_slice(&e.to_vec()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{} does not match its schema: {errors:?}", e.event_type);
        assert!(IdentityEvent::TYPES.iter().any(|t| t.name == e.event_type));
        // Secrets never travel in clear.
        let text = String::from_utf8(e.to_vec()).unwrap();
        assert!(
            !text.contains("carol-password") && !text.contains(ADMIN_PASSWORD) && !text.contains("argon2")
        );
    }
}

#[tokio::test]
async fn the_readme_curl_command_returns_a_session_token() {
    let h = Harness::start().await;
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&h.ca_path)
        .args(["-X", "POST", &h.url("/api/auth"), "-d"])
        .arg(format!(r#"{{"username":"admin","password":"{ADMIN_PASSWORD}"}}"#))
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(body["jwt"].as_str().unwrap().split('.').count() == 3);
}

#[tokio::test]
async fn sign_ins_during_a_nats_outage_reach_the_stream_when_it_returns() {
    let mut h = Harness::start().await;
    let bus = h.bus().await;
    let before = stream_events(&bus, 2).await.len() as u64;
    drop(bus);
    h.nats.stop();
    let admin = h.session("admin", ADMIN_PASSWORD).await;
    let (status, _) = h
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "dave", "password": "dave-password"})),
        )
        .await;
    assert_eq!(status, 200, "identity keeps working while NATS is away");
    h.nats.start();
    let bus = h.bus().await;
    let events = stream_events(&bus, before + 2).await;
    assert!(events.iter().any(|e| e.event_type == "UserCreated" && e.payload.get().contains("dave")));
    assert!(events.iter().any(|e| e.event_type == "SignInSucceeded"));
}
