//! The system under test: the end-to-end harness's stack (nats-server, two PostgreSQL databases,
//! identity, kubeconfig, two proxy replicas behind HAProxy) started from the binaries next to
//! this executable — `target/release/` when the bench runs as a release build — plus one
//! kube-sim with the benchmark namespaces, registered as an environment, and a standard user
//! whose kubeconfig token the load runs use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_sim::KubeSim;
use kubegate_e2e::{Options, Stack, UPSTREAM_TOKEN};
use serde_json::{Value, json};

use crate::{ServiceEnv, ServiceName, env_for};

/// kube-sim's token for the direct path and for nginx (group `system:masters`).
pub const SIM_ADMIN_TOKEN: &str = "kubegate-bench-direct-0123456789abcdef";
pub const BENCH_USER: &str = "bench";
const BENCH_PASSWORD: &str = "bench-password-0123456789";
/// Namespaces of kube-sim's benchmark payloads, and one for watch events.
pub const NS_2K: &str = "bench-2k";
pub const NS_100K: &str = "bench-100k";
pub const NS_WATCH: &str = "bench-watch";
/// Watches one user may hold on a bench replica (the default is 1000).
pub const MAX_WATCHES_PER_USER: usize = 20_000;

pub struct BenchStack {
    pub stack: Stack,
    pub env_id: u64,
    pub user_id: u64,
    /// The bench user's session (for downloads).
    pub session: String,
    /// The bench user's kubeconfig token (for load through kubegate).
    pub token: String,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
}

/// A kubeconfig token with its `jti`.
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: String,
    pub jti: String,
}

impl BenchStack {
    /// Starts the stack; `settings` go to the services on top of the bench's own.
    pub async fn start(settings: &[ServiceEnv]) -> BenchStack {
        let mut proxy_env = vec![("KUBEGATE_MAX_WATCHES_PER_USER".into(), MAX_WATCHES_PER_USER.to_string())];
        proxy_env.extend(env_for(settings, ServiceName::Proxy));
        let options = Options {
            proxies: 2,
            environments: 0,
            load_balancer: true,
            proxy_env,
            identity_env: env_for(settings, ServiceName::Identity),
            kubeconfig_env: env_for(settings, ServiceName::Kubeconfig),
            ..Options::default()
        };
        let mut stack = Stack::start(options).await;
        let config = kube_sim::Config { seed: true, bench_namespaces: true, ..kube_sim::Config::default() }
            .with_token(UPSTREAM_TOKEN, "kubegate", &[])
            .with_token(SIM_ADMIN_TOKEN, "bench-admin", &["system:masters"]);
        let sim = KubeSim::start(config).await.expect("start kube-sim");
        sim.knobs().set_request_log(false);
        sim.apply_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS_WATCH}}))
            .expect("create the watch namespace");
        stack.sims.push(sim);
        let env_id = stack.register(0, "bench").await;
        let user_id = stack.create_user(BENCH_USER, BENCH_PASSWORD, "user").await;
        stack
            .set_access(
                env_id,
                json!([{"userId": user_id, "role": "standard", "namespaces": [NS_2K, NS_100K, NS_WATCH]}]),
                json!([]),
            )
            .await;
        let session = stack.session(BENCH_USER, BENCH_PASSWORD).await;
        let pki = kubegate_tls::DevPki::ensure(stack.dir.path()).expect("the stack's dev PKI");
        let mut bench = BenchStack {
            stack,
            env_id,
            user_id,
            session,
            token: String::new(),
            server_cert: pki.server_cert,
            server_key: pki.server_key,
        };
        let minted = download(&bench.stack.client, &bench.public_url(), &bench.session, env_id)
            .await
            .expect("download the bench user's kubeconfig");
        bench.token = minted.token;
        // Both replicas must know the environment, the policy and the token before load starts.
        for port in bench.stack.proxy_ports.clone() {
            let url = format!("{}{}", bench.replica_base(port), "/api/v1/namespaces/bench-2k/pods");
            wait_status(&bench.stack.client, &url, &bench.token, 200, Duration::from_secs(30)).await;
        }
        bench
    }

    pub fn sim(&self) -> &KubeSim {
        &self.stack.sims[0]
    }

    pub fn public_url(&self) -> String {
        self.stack.url("")
    }

    /// `https://127.0.0.1:<port>/api/endpoints/<id>/kubernetes` of one replica.
    pub fn replica_base(&self, port: u16) -> String {
        format!("https://127.0.0.1:{port}{}", self.prefix())
    }

    /// The environment's path prefix.
    pub fn prefix(&self) -> String {
        format!("/api/endpoints/{}/kubernetes", self.env_id)
    }

    /// The PID of proxy replica `i`.
    pub fn proxy_pid(&self, i: usize) -> Option<u32> {
        self.stack.proxies[i].pid()
    }

    /// A client trusting the stack's CA (its own connection pool).
    pub fn client(&self, h2: bool) -> reqwest::Client {
        client(&self.stack.ca_pem, h2)
    }
}

pub fn client(ca_pem: &str, h2: bool) -> reqwest::Client {
    let alpn: &[&[u8]] = if h2 { &[b"h2", b"http/1.1"] } else { &[b"http/1.1"] };
    let tls = kubegate_tls::client_config(ca_pem, None, alpn).expect("TLS client configuration");
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024);
    if !h2 {
        builder = builder.http1_only();
    }
    builder.build().expect("HTTP client")
}

/// Downloads a kubeconfig (JSON) for environment `env` and returns its token.
pub async fn download(
    client: &reqwest::Client,
    base: &str,
    session: &str,
    env: u64,
) -> Result<Minted, String> {
    let resp = client
        .get(format!("{base}/api/kubernetes/config?ids=[{env}]"))
        .bearer_auth(session)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("download: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("download body: {e}"))?;
    if status != 200 {
        return Err(format!("download answered {status}: {text}"));
    }
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("download is not JSON: {e}"))?;
    let token = doc["users"][0]["user"]["token"]
        .as_str()
        .ok_or_else(|| format!("no token in the kubeconfig: {text}"))?
        .to_string();
    let jti = jti_of(&token).ok_or("the token has no jti")?;
    Ok(Minted { token, jti })
}

/// The `jti` claim of a JWT (not verified: only to name it to the revoke API).
pub fn jti_of(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("jti")?.as_str().map(str::to_string)
}

/// Polls `url` with `token` until it answers `want`.
pub async fn wait_status(client: &reqwest::Client, url: &str, token: &str, want: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).bearer_auth(token).send().await {
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            if status == want {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory of a process from `/proc/<pid>/status`: (VmRSS, VmHWM) in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time a process has used so far, in nanoseconds: the sum over its threads of the first
/// field of `/proc/<pid>/task/<tid>/schedstat` (threads that have exited are not counted).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    Some(total)
}

/// The processes whose parent is `pid` (nginx's workers, say).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent_of(child) == Some(pid))
        .collect()
}

/// The parent of a process, from `/proc/<pid>/stat`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Shared handle for scenarios that spawn tasks.
pub type Shared = Arc<BenchStack>;
