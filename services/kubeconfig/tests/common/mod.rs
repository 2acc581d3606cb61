//! The kubeconfig service and the identity service as real processes, against real PostgreSQL
//! (one database each per test), a real nats-server per test and real TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use kubegate_bus::{Bus, NatsConfig};
use kubegate_events::RawEnvelope;
use kubegate_events::identity::IdentityEvent;
use kubegate_seal::FleetSecretKey;
use kubegate_testsupport::nats::NatsServer;
use kubegate_testsupport::net::free_port;
use kubegate_testsupport::postgres::TestDb;
use kubegate_testsupport::process::Service;
use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "admin-password-123";
/// Written into kubeconfigs; never contacted by these tests.
pub const PUBLIC_URL: &str = "https://kubegate.test:9443";
pub const MASTER_KEY: &str = "3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w0=";

/// How the kubeconfig service is started.
#[derive(Clone, Default)]
pub struct Options {
    /// Serve plain HTTP (as behind a TLS-terminating proxy).
    pub plain_http: bool,
    /// `KUBEGATE_TRUSTED_PROXIES`, when not the default (loopback).
    pub trusted_proxies: Option<String>,
    /// Start kubeconfig before identity (identity is then started by the test).
    pub kubeconfig_first: bool,
}

pub struct Harness {
    pub identity_db: TestDb,
    pub db: TestDb,
    pub nats: NatsServer,
    _pki_dir: tempfile::TempDir,
    pub pki: kubegate_tls::DevPki,
    pub ca_pem: String,
    pub identity: Service,
    pub identity_port: u16,
    pub svc: Service,
    pub port: u16,
    pub plain_http: bool,
    pub client: reqwest::Client,
    pub fleet_secret: FleetSecretKey,
}

pub fn identity_binary() -> PathBuf {
    kubegate_testsupport::bins::workspace_binary("kubegate-identity", "kubegate-identity")
}

pub fn new_client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(kubegate_tls::client_config(ca, None, &[b"h2", b"http/1.1"]).unwrap())
        .build()
        .unwrap()
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Harness {
        let identity_db = TestDb::create().await;
        let db = TestDb::create().await;
        let nats = NatsServer::start_new();
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = kubegate_tls::DevPki::ensure(pki_dir.path()).unwrap();
        let ca_pem = std::fs::read_to_string(&pki.ca_cert).unwrap();
        let identity_port = free_port();
        let mut identity = Service::new(
            "identity",
            identity_binary(),
            &[
                ("KUBEGATE_IDENTITY_LISTEN", format!("127.0.0.1:{identity_port}")),
                ("KUBEGATE_IDENTITY_DATABASE_URL", identity_db.url()),
                ("KUBEGATE_NATS_URL", nats.url()),
                ("KUBEGATE_MASTER_KEY", MASTER_KEY.to_string()),
                ("KUBEGATE_TLS_CERT", pki.server_cert.display().to_string()),
                ("KUBEGATE_TLS_KEY", pki.server_key.display().to_string()),
                ("KUBEGATE_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
            ],
        );
        let (fleet_public, fleet_secret) = kubegate_seal::generate_fleet_key();
        let port = free_port();
        let mut env = vec![
            ("KUBEGATE_KUBECONFIG_LISTEN", format!("127.0.0.1:{port}")),
            ("KUBEGATE_KUBECONFIG_DATABASE_URL", db.url()),
            ("KUBEGATE_NATS_URL", nats.url()),
            ("KUBEGATE_FLEET_PUBLIC_KEY", fleet_public.to_string()),
            ("KUBEGATE_PUBLIC_URL", PUBLIC_URL.to_string()),
            ("KUBEGATE_PUBLIC_CA_FILE", pki.ca_cert.display().to_string()),
        ];
        if options.plain_http {
            env.push(("KUBEGATE_INSECURE_PLAIN_HTTP", "true".to_string()));
        } else {
            env.push(("KUBEGATE_TLS_CERT", pki.server_cert.display().to_string()));
            env.push(("KUBEGATE_TLS_KEY", pki.server_key.display().to_string()));
        }
        if let Some(trusted) = &options.trusted_proxies {
            env.push(("KUBEGATE_TRUSTED_PROXIES", trusted.clone()));
        }
        let mut svc = Service::new("kubeconfig", env!("CARGO_BIN_EXE_kubegate-kubeconfig"), &env);
        if options.kubeconfig_first {
            svc.start();
        } else {
            identity.start_ready(Duration::from_secs(60));
            svc.start_ready(Duration::from_secs(60));
        }
        let client = new_client(&ca_pem);
        Harness {
            identity_db,
            db,
            nats,
            _pki_dir: pki_dir,
            pki,
            ca_pem,
            identity,
            identity_port,
            svc,
            port,
            plain_http: options.plain_http,
            client,
            fleet_secret,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    pub fn identity_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.identity_port)
    }

    async fn send(
        &self,
        url: String,
        method: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method.parse().unwrap(), url);
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

    /// A call to the kubeconfig service.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send(self.url(path), method, token, body).await
    }

    /// A call to the identity service.
    pub async fn identity_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send(self.identity_url(path), method, token, body).await
    }

    pub async fn session(&self, user: &str, password: &str) -> String {
        let (status, body) = self
            .identity_call("POST", "/api/auth", None, Some(json!({"username": user, "password": password})))
            .await;
        assert_eq!(status, 200, "{body}");
        body["jwt"].as_str().unwrap().to_string()
    }

    pub async fn admin(&self) -> String {
        self.session("admin", ADMIN_PASSWORD).await
    }

    /// Creates a user in identity and returns (id, session) once the kubeconfig service knows them.
    pub async fn user(&self, admin: &str, username: &str, role: &str) -> (u64, String) {
        let password = "password-of-the-user";
        let (status, body) = self
            .identity_call(
                "POST",
                "/api/users",
                Some(admin),
                Some(json!({"username": username, "password": password, "role": role})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let id = body["id"].as_u64().unwrap();
        let session = self.session(username, password).await;
        self.wait_known(&session).await;
        (id, session)
    }

    /// Waits until the kubeconfig service accepts `session` (its view of identity has the user).
    pub async fn wait_known(&self, session: &str) {
        kubegate_testsupport::wait::until(
            "the kubeconfig service to know the user",
            Duration::from_secs(15),
            || async {
                let (status, _) = self.call("GET", "/api/endpoints", Some(session), None).await;
                (status == 200).then_some(())
            },
        )
        .await
    }

    /// Creates a team with `members` and returns its id.
    pub async fn team(&self, admin: &str, name: &str, members: &[u64]) -> u64 {
        let (status, body) =
            self.identity_call("POST", "/api/teams", Some(admin), Some(json!({"name": name}))).await;
        assert_eq!(status, 200, "{body}");
        let id = body["id"].as_u64().unwrap();
        for m in members {
            let (status, body) = self
                .identity_call(
                    "POST",
                    &format!("/api/teams/{id}/members"),
                    Some(admin),
                    Some(json!({"userId": m})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        id
    }

    /// Registers an environment with a bearer token and the test CA; returns its id.
    pub async fn environment(&self, admin: &str, name: &str) -> u64 {
        let (status, body) = self
            .call(
                "POST",
                "/api/endpoints",
                Some(admin),
                Some(json!({
                    "name": name,
                    "url": "https://10.1.2.3:6443",
                    "caCert": self.ca_pem,
                    "token": "upstream-token-not-a-secret-in-this-test",
                })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_u64().unwrap()
    }

    /// Sets an access policy (the service waits for users and teams identity created a moment ago).
    pub async fn set_access(&self, admin: &str, environment: u64, policy: Value) -> Value {
        let path = format!("/api/endpoints/{environment}/access");
        let (status, body) = self.call("PUT", &path, Some(admin), Some(policy)).await;
        assert_eq!(status, 200, "PUT {path}: {body}");
        body
    }

    /// `GET /api/kubernetes/config` with `query`, asking for `accept`.
    pub async fn download(
        &self,
        token: Option<&str>,
        query: &str,
        accept: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.get(self.url(&format!("/api/kubernetes/config{query}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        req.send().await.unwrap()
    }

    /// Downloads YAML and returns its text, asserting 200.
    pub async fn download_yaml(&self, token: &str, query: &str) -> String {
        let resp = self.download(Some(token), query, Some("text/yaml")).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        text
    }

    pub async fn bus(&self) -> Bus {
        let bus = Bus::connect(&NatsConfig::new(self.nats.url(), "test")).await.unwrap();
        assert!(bus.wait_connected(Duration::from_secs(5)).await);
        bus
    }

    /// Every stored event of the kubeconfig service, each row as PostgreSQL's text of the row.
    pub async fn stored_rows(&self) -> Vec<String> {
        self.query_texts("SELECT e::text FROM kubegate_events e ORDER BY position").await
    }

    /// The type of every stored event, in log order.
    pub async fn stored_types(&self) -> Vec<String> {
        self.query_texts("SELECT type FROM kubegate_events ORDER BY position").await
    }

    async fn query_texts(&self, sql: &str) -> Vec<String> {
        let (client, conn) = tokio_postgres::connect(&self.db.dsn(), tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        let rows = client.query(sql, &[]).await.unwrap();
        let out = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        drop(client);
        let _ = task.await;
        out
    }
}

/// Every message of `stream` (raw payloads), once it holds at least `at_least`.
pub async fn stream_messages(bus: &Bus, stream: &str, at_least: u64) -> Vec<Vec<u8>> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    let last = kubegate_testsupport::wait::until(
        &format!("{stream} to hold {at_least} messages"),
        Duration::from_secs(15),
        || async {
            let last = bus.last_sequence(stream).await.unwrap_or(0);
            (last >= at_least).then_some(last)
        },
    )
    .await;
    let stream = bus.jetstream().get_stream(stream).await.unwrap();
    let consumer = stream
        .create_consumer(pull::OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while let Some(Ok(m)) = messages.next().await {
        out.push(m.payload.to_vec());
        if m.info().unwrap().stream_sequence >= last {
            break;
        }
    }
    out
}

pub async fn stream_events(bus: &Bus, stream: &str, at_least: u64) -> Vec<RawEnvelope> {
    stream_messages(bus, stream, at_least).await.iter().map(|m| RawEnvelope::from_slice(m).unwrap()).collect()
}

/// The verifying keys identity published on its stream.
pub async fn identity_keys(bus: &Bus) -> kubegate_token::KeySet {
    let mut keys = kubegate_token::KeySet::new();
    for e in stream_events(bus, "KUBEGATE_IDENTITY", 2).await {
        if let IdentityEvent::SigningKeyAdded(k) = e.decode::<IdentityEvent>().unwrap().event {
            keys.insert(&k.kid, &k.public_key).unwrap();
        }
    }
    keys
}

/// The claims of a JWT, without verifying it.
pub fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

/// `kubectl.1.<minor> config view --raw -o json` of `file`.
pub fn kubectl_view(minor: u32, file: &std::path::Path) -> Value {
    serde_json::from_str(&kubectl(minor, &["config", "view", "--raw", "-o", "json"], file)).unwrap()
}

/// `kubectl.1.<minor> <args> --kubeconfig <file>`, asserting success.
pub fn kubectl(minor: u32, args: &[&str], file: &std::path::Path) -> String {
    let (mut command, _cache) = kubegate_testsupport::kubectl::command(minor);
    command.args(args).arg("--kubeconfig").arg(file);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "kubectl.1.{minor} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    String::from_utf8(output.stdout).unwrap()
}

/// kubectl's tab-aligning table writer pads `\t`, `\v` and `\f`: display only, ignored here.
pub fn without_padding(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}')).collect()
}
