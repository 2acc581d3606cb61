//! kube-sim: a stand-in Kubernetes API server for tests and benchmarks.
//!
//! It speaks the API server's wire protocol closely enough for kubectl 1.27–1.33 and the
//! official Python client: TLS with its own CA, bearer-token and client-certificate
//! authentication, impersonation, RBAC on every request, discovery (aggregated and legacy),
//! OpenAPI for `kubectl apply`, CRUD with the three patch types, lists with selectors and
//! pagination, watches, tables, pod logs and the exec/attach/port-forward hand-off.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_sim::Error> {
//! let sim = kube_sim::KubeSim::start(kube_sim::Config::seeded().with_token("t0k3n", "admin", &["system:masters"])).await?;
//! println!("{} {}", sim.url(), sim.ca_pem());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod cluster;
pub mod discovery;
pub mod knobs;
pub mod logs;
pub mod objects;
pub mod patch;
pub mod proto;
pub mod proto_schema;
pub mod query;
pub mod rbac;
pub mod reqlog;
pub mod requestinfo;
pub mod resources;
pub mod seed;
pub mod selectors;
pub mod server;
pub mod status;
pub mod store;
pub mod streams;
pub mod table;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use auth::UserInfo;
pub use knobs::{Knobs, LargeList, Stall};
pub use reqlog::LoggedRequest;
pub use status::ApiError;
pub use tls::{ClientCa, ClientCert};

/// Why kube-sim could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{}", .0.message)]
    Api(ApiError),
}

/// A bearer token and the user it authenticates.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenUser {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl std::fmt::Debug for TokenUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenUser")
            .field("token", &"<redacted>")
            .field("user", &self.user)
            .field("uid", &self.uid)
            .field("groups", &self.groups)
            .finish()
    }
}

impl TokenUser {
    pub fn new(token: &str, user: &str, groups: &[&str]) -> TokenUser {
        TokenUser {
            token: token.into(),
            user: user.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// What to start. Build with [`Config::default`] (empty cluster) or [`Config::seeded`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (default `127.0.0.1:0`: an OS-picked port).
    pub listen: SocketAddr,
    pub tokens: Vec<TokenUser>,
    /// Verify client certificates against this CA (PEM); CN = user, O = groups.
    pub client_ca_pem: Option<String>,
    /// Treat requests without credentials as `system:anonymous` instead of answering 401.
    pub anonymous: bool,
    /// Seed the demo workload and kubegate's RBAC.
    pub seed: bool,
    /// Seed namespaces `bench-2k` and `bench-100k` whose pod lists are about 2 KB and 100 KB.
    pub bench_namespaces: bool,
    /// Multi-document YAML files of objects (RBAC or any served kind) applied at start.
    pub rbac_files: Vec<PathBuf>,
    /// The same, inline.
    pub rbac_yaml: Vec<String>,
    /// Handed to the streams module (exec sandboxes).
    pub exec_root: Option<PathBuf>,
    /// How often each container writes a log line.
    pub log_interval: Duration,
    /// Also require `create` on pods/exec (…) for WebSocket GETs (Kubernetes 1.35 behaviour);
    /// off by default like the 1.32 server kube-sim reports.
    pub websocket_requires_create: bool,
    /// Watch events kept for watches resuming from a resourceVersion.
    pub watch_history: usize,
    pub max_connections: usize,
    /// Requests kept in the request log.
    pub request_log_capacity: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: Vec::new(),
            client_ca_pem: None,
            anonymous: false,
            seed: false,
            bench_namespaces: false,
            rbac_files: Vec::new(),
            rbac_yaml: Vec::new(),
            exec_root: None,
            log_interval: Duration::from_secs(1),
            websocket_requires_create: false,
            watch_history: 10_000,
            max_connections: 20_000,
            request_log_capacity: 100_000,
        }
    }
}

impl Config {
    /// The default configuration with the demo workload seeded.
    pub fn seeded() -> Config {
        Config { seed: true, ..Config::default() }
    }

    /// Adds a bearer token for `user` in `groups`.
    pub fn with_token(mut self, token: &str, user: &str, groups: &[&str]) -> Config {
        self.tokens.push(TokenUser::new(token, user, groups));
        self
    }

    /// Adds inline multi-document YAML applied at start.
    pub fn with_rbac_yaml(mut self, yaml: &str) -> Config {
        self.rbac_yaml.push(yaml.to_string());
        self
    }
}

/// A running kube-sim.
pub struct KubeSim {
    state: Arc<api::State>,
    addr: SocketAddr,
    ca_pem: String,
    task: Option<JoinHandle<()>>,
}

fn seed_objects(config: &Config) -> Result<Vec<Value>, Error> {
    let mut objects = seed::bootstrap_rbac();
    if config.seed {
        objects.extend(seed::demo_objects());
        objects.extend(seed::kubegate_rbac(seed::OPERATOR_NAMESPACES));
    }
    for path in &config.rbac_files {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.clone(), source })?;
        objects
            .extend(seed::parse_yaml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?);
    }
    for (i, text) in config.rbac_yaml.iter().enumerate() {
        objects.extend(
            seed::parse_yaml(text).map_err(|e| Error::Config(format!("inline YAML #{}: {e}", i + 1)))?,
        );
    }
    Ok(objects)
}

/// Benchmark namespaces: `bench-2k` lists as about 2 KB, `bench-100k` as about 100 KB.
fn seed_bench(cluster: &cluster::Cluster) -> Result<(), Error> {
    for (ns, target) in [("bench-2k", 2 * 1024usize), ("bench-100k", 100 * 1024usize)] {
        if !cluster.namespace_exists(ns) {
            cluster
                .apply_object(
                    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                )
                .map_err(Error::Api)?;
        }
        let mut size = 0usize;
        let mut i = 0usize;
        while size < target.saturating_sub(1024) || i == 0 {
            let stored = cluster.apply_object(seed::bench_pod(ns, i)).map_err(Error::Api)?;
            size += stored.json.len() + 1;
            i += 1;
        }
    }
    Ok(())
}

impl KubeSim {
    /// Generates the CA, seeds the store and starts serving.
    pub async fn start(config: Config) -> Result<KubeSim, Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = tls::server(config.client_ca_pem.as_deref())?;
        let objects = seed_objects(&config)?;
        let knobs = Arc::new(Knobs::default());
        let store = store::Store::new(1000, config.watch_history, 16_384);
        let cluster = Arc::new(cluster::Cluster::new(store, tls.ca_pem.clone(), knobs.clone()));
        for obj in objects {
            cluster.apply_object(obj).map_err(Error::Api)?;
        }
        if config.bench_namespaces {
            seed_bench(&cluster)?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Listen { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen { addr: config.listen, source })?;
        let tokens = auth::TokenAuthenticator::new(config.tokens.iter().map(|t| {
            let groups: Vec<String> = t.groups.clone();
            let mut u = UserInfo::authenticated(&t.user, &groups);
            u.uid = t.uid.clone();
            (t.token.clone(), u)
        }));
        let state = Arc::new(api::State {
            cluster,
            tokens,
            anonymous: config.anonymous,
            knobs,
            reqlog: reqlog::RequestLog::new(config.request_log_capacity),
            streams: streams::Streams::new(config.exec_root.clone()),
            shutdown: CancellationToken::new(),
            server_address: addr.to_string(),
            websocket_requires_create: config.websocket_requires_create,
            log_interval: config.log_interval,
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
        let task = tokio::spawn(server::run(listener, acceptor, state.clone(), config.max_connections));
        Ok(KubeSim { state, addr, ca_pem: tls.ca_pem, task: Some(task) })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the serving certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Every logged request, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.reqlog.snapshot()
    }

    pub fn clear_requests(&self) {
        self.state.reqlog.clear();
    }

    pub fn knobs(&self) -> &Knobs {
        &self.state.knobs
    }

    /// Accepts `token` for `user` in `groups` from now on.
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        self.state.tokens.insert(token.to_string(), UserInfo::authenticated(user, &groups));
    }

    /// Stops accepting `token`.
    pub fn remove_token(&self, token: &str) {
        self.state.tokens.remove(token);
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.cluster.store.rv()
    }

    /// Creates or replaces an object (any served kind; status taken as given) and emits the
    /// watch event. Returns the stored object.
    pub fn apply_object(&self, obj: Value) -> Result<Value, Error> {
        self.state.cluster.apply_object(obj).map(|s| s.value.clone()).map_err(Error::Api)
    }

    /// The stored object, if any.
    pub fn get_object(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (id, def) = resources::by_kind(api_version, kind)?;
        let ns = if def.namespaced { namespace } else { "" };
        self.state.cluster.store.get(&store::Key::new(id, ns, name)).map(|s| s.value.clone())
    }

    /// Deletes an object at once (no graceful termination).
    pub fn delete_object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), Error> {
        let (id, def) = resources::by_kind(api_version, kind)
            .ok_or_else(|| Error::Config(format!("no resource serves {api_version} {kind}")))?;
        let opts =
            cluster::DeleteOptions { grace_period_seconds: Some(0), ..cluster::DeleteOptions::default() };
        let ns = if def.namespaced { namespace } else { "" };
        self.state.cluster.delete(id, ns, name, &opts).map(|_| ()).map_err(Error::Api)
    }

    /// Stops accepting, ends watches and log streams, and waits (a few seconds at most) for open
    /// connections to finish.
    pub async fn shutdown(mut self) {
        self.state.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.state.streams.shutdown().await;
    }

    /// The exec/attach/port-forward module (its sessions, upgrades and port backends).
    pub fn streams(&self) -> &streams::Streams {
        &self.state.streams
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}
