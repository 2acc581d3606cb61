//! The whole of kubegate for end-to-end tests: its own nats-server and PostgreSQL databases,
//! identity, kubeconfig, proxy replicas behind HAProxy, and stand-in API servers as
//! environments. Everything is a real process (kube-sim runs in the test process) on ports the
//! OS hands out, and is stopped when the stack is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod hostile;
pub mod wire;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube_sim::KubeSim;
use kubegate_bus::{Bus, NatsConfig};
use kubegate_events::RawEnvelope;
use kubegate_testsupport::nats::NatsServer;
use kubegate_testsupport::net::free_port;
use kubegate_testsupport::postgres::TestDb;
use kubegate_testsupport::process::{Service, workspace_bin};
use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "e2e-admin-password";
/// The token kubegate presents to every stand-in API server (the principal `kubegate`, which may
/// only impersonate).
pub const UPSTREAM_TOKEN: &str = "kubegate-upstream-0123456789abcdef";

#[derive(Debug, Clone)]
pub struct Options {
    pub proxies: usize,
    pub environments: usize,
    /// Put HAProxy in front of the proxies (the public origin); otherwise the first proxy is it.
    pub load_balancer: bool,
    /// Settings on top of the stack's own, per service (one that would replace what the stack
    /// wires itself, such as a listener, panics).
    pub proxy_env: Vec<(String, String)>,
    pub identity_env: Vec<(String, String)>,
    pub kubeconfig_env: Vec<(String, String)>,
    /// NATS as deployed: one user per service with the permissions of
    /// `deploy/kubernetes/base/nats/auth.conf`, rendered through `deploy/local/nats.conf.in`.
    pub nats_users: bool,
    /// NATS clients must use TLS (the stack's dev CA); with `nats_users`.
    pub nats_tls: bool,
    /// JetStream's `max_file_store` (with `nats_users` or alone), e.g. `"1MB"`.
    pub nats_max_file_store: Option<String>,
    /// identity's database on another PostgreSQL server (`host=… port=… user=…`).
    pub identity_pg: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            proxies: 2,
            environments: 2,
            load_balancer: true,
            proxy_env: Vec::new(),
            identity_env: Vec::new(),
            kubeconfig_env: Vec::new(),
            nats_users: false,
            nats_tls: false,
            nats_max_file_store: None,
            identity_pg: None,
        }
    }
}

/// The bus users of the deployed permission layout, and the services that connect as them.
pub const NATS_USERS: [(&str, &str); 4] = [
    ("kubegate-identity", "NATS_IDENTITY_PASSWORD"),
    ("kubegate-kubeconfig", "NATS_KUBECONFIG_PASSWORD"),
    ("kubegate-proxy", "NATS_PROXY_PASSWORD"),
    ("kubegate-audit", "NATS_AUDIT_PASSWORD"),
];

/// How the stack's NATS is reached: URL, users' passwords, CA.
#[derive(Debug, Clone)]
pub struct NatsAccess {
    pub url: String,
    pub passwords: std::collections::BTreeMap<String, String>,
    pub ca: Option<PathBuf>,
}

impl NatsAccess {
    /// The bus configuration of `user` (e.g. `kubegate-proxy`), with that service's inbox.
    pub fn config(&self, user: Option<&str>, name: &str) -> NatsConfig {
        let mut config = NatsConfig::new(self.url.clone(), name);
        config.tls_ca = self.ca.clone();
        if let Some(user) = user {
            config.user = Some(user.to_string());
            config.password = self.passwords.get(user).cloned();
            config = config.with_service_inbox(user.trim_start_matches("kubegate-"));
        }
        config
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts the stack's nats-server: plain, or rendered from `deploy/local/nats.conf.in` with the
/// deployed `auth.conf` (one user per service), TLS and a store limit as asked.
fn start_nats(options: &Options, dir: &Path, pki: &kubegate_tls::DevPki) -> (NatsServer, NatsAccess) {
    if !options.nats_users && options.nats_max_file_store.is_none() {
        let nats = NatsServer::start_new();
        let access = NatsAccess { url: nats.url(), passwords: Default::default(), ca: None };
        return (nats, access);
    }
    let root = workspace_root();
    let template = std::fs::read_to_string(root.join("deploy/local/nats.conf.in")).unwrap();
    let conf_dir = dir.join("nats");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let mut passwords = std::collections::BTreeMap::new();
    let mut env = Vec::new();
    if options.nats_users {
        std::fs::copy(root.join("deploy/kubernetes/base/nats/auth.conf"), conf_dir.join("auth.conf"))
            .unwrap();
        for (user, var) in NATS_USERS {
            // A letter first: nats-server parses `$VARIABLE` values as config values, and one
            // that starts with a digit (e.g. `3e9a…`) is read as a malformed number.
            let password = format!("kg{}", uuid::Uuid::new_v4().simple());
            env.push((var.to_string(), password.clone()));
            passwords.insert(user.to_string(), password);
        }
    } else {
        std::fs::write(conf_dir.join("auth.conf"), "# no users: anyone may connect\n").unwrap();
    }
    let mut nats = NatsServer::prepare(Vec::new(), env);
    let tls = if options.nats_tls {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}",
            pki.server_cert.display(),
            pki.server_key.display()
        )
    } else {
        String::new()
    };
    let conf = template
        .replace("@PORT@", &nats.port.to_string())
        .replace("@MAX_FILE_STORE@", options.nats_max_file_store.as_deref().unwrap_or("1GB"))
        .replace("@TLS@", &tls);
    let path = conf_dir.join("nats.conf");
    std::fs::write(&path, conf).unwrap();
    nats.set_args(vec!["-c".into(), path.display().to_string()]);
    nats.start();
    let scheme = if options.nats_tls { "tls" } else { "nats" };
    let access = NatsAccess {
        url: format!("{scheme}://127.0.0.1:{}", nats.port),
        passwords,
        ca: options.nats_tls.then(|| pki.ca_cert.clone()),
    };
    (nats, access)
}

pub struct Stack {
    pub nats: NatsServer,
    pub nats_access: NatsAccess,
    pub options: Options,
    pub identity_db: TestDb,
    _kubeconfig_db: TestDb,
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub identity: Service,
    pub kubeconfig: Service,
    pub proxies: Vec<Service>,
    pub proxy_ports: Vec<u16>,
    haproxy: Option<Child>,
    pub public_port: u16,
    pub sims: Vec<KubeSim>,
    pub client: reqwest::Client,
    pub admin: String,
}

fn new_client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(kubegate_tls::client_config(ca, None, &[b"h2", b"http/1.1"]).unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl Stack {
    pub async fn start(options: Options) -> Stack {
        let identity_db = match &options.identity_pg {
            Some(admin) => TestDb::create_on(admin).await,
            None => TestDb::create().await,
        };
        let kubeconfig_db = TestDb::create().await;
        let dir = tempfile::tempdir().unwrap();
        let pki = kubegate_tls::DevPki::ensure(dir.path()).unwrap();
        let (nats, nats_access) = start_nats(&options, dir.path(), &pki);
        let ca_pem = std::fs::read_to_string(&pki.ca_cert).unwrap();
        let (fleet_public, fleet_secret) = kubegate_seal::generate_fleet_key();
        let master = "3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w3q2+7w0=".to_string();
        let tls = |v: &mut Vec<(&str, String)>, user: &str| {
            v.push(("KUBEGATE_TLS_CERT", pki.server_cert.display().to_string()));
            v.push(("KUBEGATE_TLS_KEY", pki.server_key.display().to_string()));
            v.push(("KUBEGATE_NATS_URL", nats_access.url.clone()));
            if let Some(password) = nats_access.passwords.get(user) {
                v.push(("KUBEGATE_NATS_USER", user.to_string()));
                v.push(("KUBEGATE_NATS_PASSWORD", password.clone()));
            }
            if let Some(ca) = &nats_access.ca {
                v.push(("KUBEGATE_NATS_CA", ca.display().to_string()));
            }
        };

        let identity_port = free_port();
        let mut env = vec![
            ("KUBEGATE_IDENTITY_LISTEN", format!("127.0.0.1:{identity_port}")),
            ("KUBEGATE_IDENTITY_DATABASE_URL", identity_db.url()),
            ("KUBEGATE_MASTER_KEY", master),
            ("KUBEGATE_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
        ];
        tls(&mut env, "kubegate-identity");
        let mut identity = Service::new("identity", workspace_bin("kubegate-identity"), &env);
        identity.add_settings(&options.identity_env);
        identity.start();

        let kubeconfig_port = free_port();
        let proxy_ports: Vec<u16> = (0..options.proxies).map(|_| free_port()).collect();
        let public_port = if options.load_balancer { free_port() } else { proxy_ports[0] };
        let mut env = vec![
            ("KUBEGATE_KUBECONFIG_LISTEN", format!("127.0.0.1:{kubeconfig_port}")),
            ("KUBEGATE_KUBECONFIG_DATABASE_URL", kubeconfig_db.url()),
            ("KUBEGATE_FLEET_PUBLIC_KEY", fleet_public.to_string()),
            ("KUBEGATE_PUBLIC_URL", format!("https://127.0.0.1:{public_port}")),
            ("KUBEGATE_PUBLIC_CA_FILE", pki.ca_cert.display().to_string()),
        ];
        tls(&mut env, "kubegate-kubeconfig");
        let mut kubeconfig = Service::new("kubeconfig", workspace_bin("kubegate-kubeconfig"), &env);
        kubeconfig.add_settings(&options.kubeconfig_env);
        kubeconfig.start();

        let mut proxies = Vec::new();
        for (i, port) in proxy_ports.iter().enumerate() {
            let mut env = vec![
                ("KUBEGATE_PROXY_LISTEN", format!("127.0.0.1:{port}")),
                ("KUBEGATE_FLEET_KEY", fleet_secret.to_secret_string().expose_secret().to_string()),
                ("KUBEGATE_IDENTITY_URL", format!("https://127.0.0.1:{identity_port}")),
                ("KUBEGATE_KUBECONFIG_URL", format!("https://127.0.0.1:{kubeconfig_port}")),
                ("KUBEGATE_SERVICES_CA_FILE", pki.ca_cert.display().to_string()),
                ("KUBEGATE_REPLICA_ID", format!("e2e-{i}")),
                ("KUBEGATE_AUDIT_SPOOL_DIR", dir.path().join(format!("spool-{i}")).display().to_string()),
            ];
            tls(&mut env, "kubegate-proxy");
            let mut proxy = Service::new(&format!("proxy-{i}"), workspace_bin("kubegate-proxy"), &env);
            proxy.add_settings(&options.proxy_env);
            proxy.start();
            proxies.push(proxy);
        }

        let mut sims = Vec::new();
        for _ in 0..options.environments {
            let config = kube_sim::Config::seeded().with_token(UPSTREAM_TOKEN, "kubegate", &[]);
            sims.push(KubeSim::start(config).await.unwrap());
        }

        identity.wait_ready(Duration::from_secs(90));
        kubeconfig.wait_ready(Duration::from_secs(90));
        for p in &mut proxies {
            p.wait_ready(Duration::from_secs(90));
        }
        let haproxy =
            options.load_balancer.then(|| start_haproxy(dir.path(), public_port, &proxy_ports, &proxies));
        let client = new_client(&ca_pem);
        let mut stack = Stack {
            nats,
            nats_access,
            options,
            identity_db,
            _kubeconfig_db: kubeconfig_db,
            ca_path: pki.ca_cert.clone(),
            dir,
            ca_pem,
            identity,
            kubeconfig,
            proxies,
            proxy_ports,
            haproxy,
            public_port,
            sims,
            client,
            admin: String::new(),
        };
        stack.wait_public().await;
        stack.admin = stack.session("admin", ADMIN_PASSWORD).await;
        stack.wait_signing_key_known().await;
        stack
    }

    /// Waits until the kubeconfig service accepts the admin's session. On a new stack identity
    /// makes its first signing key as it starts, and the event that names it can reach the
    /// kubeconfig service (which follows identity's stream) a moment after the first sign-in
    /// on a loaded machine.
    async fn wait_signing_key_known(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.api("GET", "/api/endpoints", Some(&self.admin), None).await;
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "the kubeconfig service refuses the admin's session: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_public(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.client.get(self.url("/api/settings/public")).send().await
                && r.status().as_u16() == 401
            {
                return;
            }
            assert!(Instant::now() < deadline, "the public origin did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// HAProxy's process, when the stack has a load balancer.
    pub fn haproxy_pid(&self) -> Option<u32> {
        self.haproxy.as_ref().map(Child::id)
    }

    /// The name of kubeconfig's database.
    pub fn kubeconfig_db_name(&self) -> String {
        self._kubeconfig_db.name.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.public_port)
    }

    /// GET `path` of environment `env`'s Kubernetes API through replica `port` (`None`: the
    /// public origin); the status and the request id naming its audit record.
    pub async fn kube_get(&self, port: Option<u16>, env: u64, token: &str, path: &str) -> (u16, String) {
        let port = port.unwrap_or(self.public_port);
        let r = self
            .client
            .get(format!("https://127.0.0.1:{port}/api/endpoints/{env}/kubernetes{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let id = request_id(r.headers());
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        (status, id)
    }

    /// A fresh HTTP client (after a replica restart the pooled connections are gone).
    pub fn reconnect(&mut self) {
        self.client = new_client(&self.ca_pem);
    }

    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, body, _) = self.api_with_request_id(method, path, token, body).await;
        (status, body)
    }

    /// [`Stack::api`], plus the request id kubegate named in the answer.
    pub async fn api_with_request_id(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, String) {
        let mut req = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let id = request_id(resp.headers());
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), id)
    }

    pub async fn session(&self, user: &str, password: &str) -> String {
        let (status, body) =
            self.api("POST", "/api/auth", None, Some(json!({"username": user, "password": password}))).await;
        assert_eq!(status, 200, "sign in as {user}: {body}");
        body["jwt"].as_str().unwrap().to_string()
    }

    pub async fn create_user(&self, name: &str, password: &str, role: &str) -> u64 {
        let (status, body) = self
            .api(
                "POST",
                "/api/users",
                Some(&self.admin),
                Some(json!({"username": name, "password": password, "role": role})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_u64().unwrap()
    }

    /// Registers stand-in API server `i` as an environment; returns its id.
    pub async fn register(&self, i: usize, name: &str) -> u64 {
        let sim = &self.sims[i];
        let (status, body) = self
            .api(
                "POST",
                "/api/endpoints",
                Some(&self.admin),
                Some(
                    json!({"name": name, "url": sim.url(), "caCert": sim.ca_pem(), "token": UPSTREAM_TOKEN}),
                ),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_u64().unwrap()
    }

    pub async fn set_access(&self, env: u64, users: Value, teams: Value) {
        let (status, body) = self
            .api(
                "PUT",
                &format!("/api/endpoints/{env}/access"),
                Some(&self.admin),
                Some(json!({"users": users, "teams": teams})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Downloads a kubeconfig (YAML) for `ids` and writes it to a file; returns its path.
    pub async fn kubeconfig_file(&self, session: &str, ids: &[u64], name: &str) -> PathBuf {
        let ids = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let resp = self
            .client
            .get(self.url(&format!("/api/kubernetes/config?ids=[{ids}]")))
            .bearer_auth(session)
            .header("Accept", "text/yaml")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Registers environment `i` as `name`, downloads the admin's kubeconfig for it and waits
    /// until every replica serves it: (environment id, kubeconfig path, its token).
    pub async fn admin_ready(&self, i: usize, name: &str) -> (u64, PathBuf, String) {
        let env = self.register(i, name).await;
        let kc = self.kubeconfig_file(&self.admin, &[env], "admin").await;
        self.wait_environment_everywhere(&kc).await;
        let token = token_of(&kc);
        (env, kc, token)
    }

    /// Waits until every proxy replica knows environment `id` (its `/readyz` names the count)
    /// by polling a request through each replica directly. The wait is generous: how fast an
    /// event reaches a replica on a loaded machine is not what the callers check (a CI run with
    /// the heaviest tests alongside once took longer than 15 s).
    pub async fn wait_environment_everywhere(&self, kubeconfig: &Path) {
        for port in &self.proxy_ports {
            let server_override = format!("https://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let out = kubectl_with_server(33, kubeconfig, &server_override, &["version", "-o", "json"]);
                if out.status.success() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {port} never served the environment: {}",
                    stderr(&out)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// A bus connection that may read every stream (as the audit user when NATS has users).
    pub async fn bus(&self) -> Bus {
        let user = self.options.nats_users.then_some("kubegate-audit");
        self.bus_as(user).await
    }

    /// A bus connection as `user` (`None`: no credentials; only without `nats_users`).
    pub async fn bus_as(&self, user: Option<&str>) -> Bus {
        let bus = Bus::connect(&self.nats_access.config(user, "e2e-test")).await.unwrap();
        assert!(bus.wait_connected(Duration::from_secs(10)).await, "cannot connect to NATS as {user:?}");
        bus
    }

    /// Every message of `stream` once it holds at least `at_least`.
    pub async fn stream(
        &self,
        bus: &Bus,
        stream: &str,
        at_least: u64,
        timeout: Duration,
    ) -> Vec<RawEnvelope> {
        read_stream(bus, stream, at_least, timeout).await
    }
}

pub async fn read_stream(bus: &Bus, stream: &str, at_least: u64, timeout: Duration) -> Vec<RawEnvelope> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    let deadline = Instant::now() + timeout;
    let last = loop {
        let last = bus.last_sequence(stream).await.unwrap_or(0);
        if last >= at_least {
            break last;
        }
        assert!(Instant::now() < deadline, "{stream} holds {last} messages, expected at least {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let s = bus.jetstream().get_stream(stream).await.unwrap();
    let consumer = s
        .create_consumer(pull::OrderedConfig { deliver_policy: DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while let Some(Ok(m)) = messages.next().await {
        // A proxy packs several audit records into one message.
        out.extend(RawEnvelope::all_from_slice(&m.payload).unwrap());
        if m.info().unwrap().stream_sequence >= last {
            break;
        }
    }
    out
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut h) = self.haproxy.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

fn start_haproxy(dir: &Path, public_port: u16, ports: &[u16], proxies: &[Service]) -> Child {
    let mut servers = String::new();
    for (i, (port, proxy)) in ports.iter().zip(proxies).enumerate() {
        servers.push_str(&format!("    server proxy-{i} 127.0.0.1:{port} check port {}\n", proxy.admin_port));
    }
    let config = format!(
        "global\n    maxconn 4000\ndefaults\n    mode tcp\n    retries 3\n    option redispatch 1\n    timeout connect 2s\n    timeout client 1h\n    timeout server 1h\n    timeout tunnel 1h\n\
         frontend kubegate\n    bind 127.0.0.1:{public_port}\n    default_backend proxies\n\
         backend proxies\n    balance roundrobin\n    option httpchk GET /readyz\n    http-check expect status 200\n    default-server inter 300ms fall 2 rise 1\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("haproxy");
    let child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy (make deps installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", public_port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Runs `kubectl.1.<minor> --kubeconfig <file> <args>` with a fresh cache.
pub fn kubectl(minor: u32, kubeconfig: &Path, args: &[&str]) -> Output {
    let (mut cmd, _cache) = kubegate_testsupport::kubectl::command(minor);
    cmd.arg("--kubeconfig").arg(kubeconfig).arg("--request-timeout=30s").args(args);
    cmd.output().expect("run kubectl")
}

/// The same, sending to another server (e.g. one replica directly).
pub fn kubectl_with_server(minor: u32, kubeconfig: &Path, server_base: &str, args: &[&str]) -> Output {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let server = doc["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let path = server.split_once("/api/endpoints").map(|(_, p)| format!("/api/endpoints{p}")).unwrap();
    let cluster = doc["clusters"][0]["name"].as_str().unwrap().to_string();
    let (mut cmd, _cache) = kubegate_testsupport::kubectl::command(minor);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cluster")
        .arg(&cluster)
        .arg(format!("--server={server_base}{path}"))
        .arg("--request-timeout=10s")
        .args(args);
    cmd.output().expect("run kubectl")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Asserts kubectl succeeded; returns its output.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "kubectl failed ({}):\n{}\n{}", o.status, stdout(&o), stderr(&o));
    stdout(&o)
}

/// Asserts kubectl failed with `needle` in its error output.
#[track_caller]
pub fn fails_with(o: Output, needle: &str) {
    assert!(!o.status.success(), "kubectl should fail, printed:\n{}", stdout(&o));
    assert!(stderr(&o).contains(needle), "expected {needle:?} in:\n{}", stderr(&o));
}

/// kubectl as a long-running child (watch, logs -f, port-forward), its output read line by line.
pub struct Running {
    pub child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    pub seen: Vec<String>,
    _cache: tempfile::TempDir,
}

impl Running {
    pub fn start(minor: u32, kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        use tokio::io::AsyncBufReadExt;
        let cache = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(kubegate_testsupport::kubectl::kubectl(minor));
        cmd.arg("--cache-dir")
            .arg(cache.path().join("cache"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("HOME", cache.path())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn kubectl");
        let stdout = child.stdout.take().unwrap();
        Running { child, lines: tokio::io::BufReader::new(stdout).lines(), seen: Vec::new(), _cache: cache }
    }

    /// Reads lines until one contains `needle`; returns it.
    pub async fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no line with {needle:?} in time; seen: {:?}", self.seen);
            match tokio::time::timeout(left, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(_) => panic!("kubectl ended before {needle:?}; seen: {:?}", self.seen),
                Err(_) => {}
            }
        }
    }

    /// Reads one more line.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                self.seen.push(line.clone());
                Some(line)
            }
            _ => None,
        }
    }
}

/// kubectl under a pseudo-terminal (`exec -it`).
pub struct Terminal {
    pub child: tokio::process::Child,
    pty: pty_process::Pty,
    pub seen: Vec<u8>,
    _cache: tempfile::TempDir,
}

impl Terminal {
    pub fn start(minor: u32, kubeconfig: &Path, args: &[&str]) -> Terminal {
        let cache = tempfile::tempdir().unwrap();
        let (pty, pts) = pty_process::open().unwrap();
        pty.resize(pty_process::Size::new(30, 100)).unwrap();
        let cmd = pty_process::Command::new(kubegate_testsupport::kubectl::kubectl(minor))
            .arg("--cache-dir")
            .arg(cache.path().join("cache"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("HOME", cache.path())
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        let child = cmd.spawn(pts).unwrap();
        Terminal { child, pty, seen: Vec::new(), _cache: cache }
    }

    pub async fn send(&mut self, keys: &str) {
        use tokio::io::AsyncWriteExt;
        self.pty.write_all(keys.as_bytes()).await.unwrap();
    }

    pub async fn expect(&mut self, needle: &str, timeout: Duration) {
        use tokio::io::AsyncReadExt;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if self.seen.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "terminal never showed {needle:?}: {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            match tokio::time::timeout(left, self.pty.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                Ok(_) => {
                    panic!("terminal closed before {needle:?}: {:?}", String::from_utf8_lossy(&self.seen))
                }
                Err(_) => {}
            }
        }
    }
}

/// The bearer token of a downloaded kubeconfig.
/// The `jti` (token id) of a token.
pub fn jti(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

pub fn token_of(kubeconfig: &Path) -> String {
    let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    doc["users"][0]["user"]["token"].as_str().unwrap().to_string()
}

/// Every audit record once each request id in `ids` has one: checks that each has exactly one
/// `RequestAudited` record, and that every replica boot's numbering is gap-free from its first
/// record in the stream to its last (positions `first..=last`, each once), so none is missing.
pub async fn audit_covers(
    stack: &Stack,
    ids: &std::collections::HashSet<String>,
    timeout: Duration,
) -> Vec<RawEnvelope> {
    use std::collections::{BTreeMap, HashMap};
    let bus = stack.bus().await;
    let deadline = Instant::now() + timeout;
    loop {
        let n = bus.last_sequence("KUBEGATE_AUDIT").await.unwrap_or(0);
        let records = if n == 0 {
            Vec::new()
        } else {
            read_stream(&bus, "KUBEGATE_AUDIT", n, Duration::from_secs(20)).await
        };
        let mut count: HashMap<String, usize> = HashMap::new();
        for r in &records {
            if r.event_type == "RequestAudited" {
                *count.entry(r.correlation_id.clone()).or_default() += 1;
            }
        }
        let missing: Vec<&String> = ids.iter().filter(|id| !count.contains_key(*id)).collect();
        if missing.is_empty() {
            for id in ids {
                assert_eq!(count[id], 1, "request {id} has {} audit records", count[id]);
            }
            let mut by_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for r in &records {
                by_stream.entry(r.stream.clone()).or_default().push(r.position);
            }
            for (stream, mut positions) in by_stream {
                positions.sort_unstable();
                let first = positions[0];
                let expected: Vec<u64> = (first..first + positions.len() as u64).collect();
                assert_eq!(positions, expected, "gap or duplicate in the audit records of {stream}");
            }
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} requests have no audit record, e.g. {:?}",
            missing.len(),
            ids.len(),
            missing.first()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `RequestAudited` payload of request `id` among `records`.
pub fn audited(records: &[RawEnvelope], id: &str) -> Value {
    let r = records
        .iter()
        .find(|r| r.event_type == "RequestAudited" && r.correlation_id == id)
        .unwrap_or_else(|| panic!("no audit record for {id}"));
    serde_json::from_str(r.payload.get()).unwrap()
}

/// The audit record id kubegate named in a response.
pub fn request_id(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("x-kubegate-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}
