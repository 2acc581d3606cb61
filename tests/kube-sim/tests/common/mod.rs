//! Shared helpers for kube-sim's integration tests: a seeded server with known principals,
//! kubeconfig files, kubectl runs with deadlines, and a small HTTPS client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube_sim::{Config, KubeSim};

pub const ADMIN: &str = "admin-token";
pub const KUBEGATE: &str = "kubegate-token";
pub const ALICE: &str = "alice-token";
pub const NOBODY: &str = "nobody-token";

/// alice may read pods (and their logs) in `dev`, and nothing else beyond discovery.
pub const ALICE_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-view
  namespace: dev
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
subjects:
  - kind: User
    name: alice
"#;

/// A seeded configuration with admin (system:masters), kubegate (may only impersonate), alice
/// (views dev) and nobody (no permissions).
pub fn config() -> Config {
    Config::seeded()
        .with_token(ADMIN, "admin", &["system:masters"])
        .with_token(KUBEGATE, "kubegate", &[])
        .with_token(ALICE, "alice", &["dev-team"])
        .with_token(NOBODY, "nobody", &[])
        .with_rbac_yaml(ALICE_RBAC)
}

pub async fn start() -> KubeSim {
    start_with(config()).await
}

pub async fn start_with(config: Config) -> KubeSim {
    KubeSim::start(config).await.expect("kube-sim starts")
}

/// Who a kubeconfig acts as.
#[derive(Clone, Default)]
pub struct Identity {
    pub token: String,
    pub as_user: Option<String>,
    pub as_groups: Vec<String>,
}

impl Identity {
    pub fn token(t: &str) -> Identity {
        Identity { token: t.into(), ..Identity::default() }
    }
    pub fn impersonating(t: &str, user: &str, groups: &[&str]) -> Identity {
        Identity {
            token: t.into(),
            as_user: Some(user.into()),
            as_groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// Writes a kubeconfig for `sim` into `dir` and returns its path.
pub fn kubeconfig(dir: &Path, name: &str, url: &str, ca_pem: &str, who: &Identity) -> PathBuf {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut user = format!("    token: {}\n", who.token);
    if let Some(u) = &who.as_user {
        user.push_str(&format!("    as: {u}\n"));
    }
    if !who.as_groups.is_empty() {
        user.push_str("    as-groups:\n");
        for g in &who.as_groups {
            user.push_str(&format!("    - {g}\n"));
        }
    }
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n{user}contexts:\n- name: c\n  context:\n    cluster: sim\n    user: u\n    namespace: default\ncurrent-context: c\n"
    );
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// A kubectl of one minor version with its own cache dir, bound to a kubeconfig.
pub struct Kubectl {
    pub minor: u32,
    pub kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

fn kill_and_wait(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl Kubectl {
    pub fn new(minor: u32, kubeconfig: PathBuf) -> Kubectl {
        let (_, cache) = kubegate_testsupport::kubectl::command(minor);
        Kubectl { minor, kubeconfig, cache }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubegate_testsupport::kubectl::kubectl(self.minor));
        cmd.arg("--cache-dir").arg(self.cache.path().join("cache"));
        cmd.env("HOME", self.cache.path());
        cmd.env_remove("KUBECONFIG");
        cmd.env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS");
        cmd.env_remove("KUBECTL_PORT_FORWARD_WEBSOCKETS");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd.args(args);
        cmd
    }

    /// Runs to completion (killed after `timeout`).
    pub fn run_with(&self, args: &[&str], stdin: Option<&str>, timeout: Duration) -> Output {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait().expect("wait kubectl") {
                Some(_) => break,
                None if Instant::now() > deadline => {
                    kill_and_wait(&mut child);
                    panic!("kubectl.1.{} {:?} did not finish within {timeout:?}", self.minor, args);
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        child.wait_with_output().expect("kubectl output")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None, Duration::from_secs(60))
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl.1.{} {:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            self.minor,
            args,
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a long-running kubectl whose stdout lines arrive on the returned stream.
    pub fn spawn(&self, args: &[&str]) -> Streaming {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines: rx, seen: Vec::new() }
    }
}

/// A running command's output, line by line.
pub struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Streaming {
    /// Waits for a line satisfying `pred`; panics with everything seen after `timeout`.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let out = self.child.wait_with_output_lossy();
                    panic!("timed out waiting for {what}; stdout so far: {:?}; stderr: {out}", self.seen);
                }
            }
        }
    }

    pub fn stop(mut self) {
        kill_and_wait(&mut self.child);
    }
}

trait LossyOutput {
    fn wait_with_output_lossy(&mut self) -> String;
}

impl LossyOutput for Child {
    fn wait_with_output_lossy(&mut self) -> String {
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        kill_and_wait(&mut self.child);
    }
}

/// A minimal HTTPS client trusting the sim's CA.
pub struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub base: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn content_type(&self) -> &str {
        self.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

pub fn client_config(
    ca_pem: &str,
    client_cert: Option<&kube_sim::ClientCert>,
    h2: bool,
) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let cfg = match client_cert {
        Some(c) => {
            let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                .map(|c| c.expect("cert"))
                .collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("key");
            builder.with_client_auth_cert(certs, key).expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let _ = h2;
    cfg
}

impl Http {
    pub fn new(sim: &KubeSim) -> Http {
        Http::with(sim, None, false)
    }

    pub fn with(sim: &KubeSim, client_cert: Option<&kube_sim::ClientCert>, h2: bool) -> Http {
        let cfg = client_config(sim.ca_pem(), client_cert, h2);
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(cfg).https_only();
        let connector =
            if h2 { builder.enable_http1().enable_http2().build() } else { builder.enable_http1().build() };
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Http { client, base: sim.url() }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> hyper::Response<hyper::body::Incoming> {
        let mut b = http::Request::builder().method(method).uri(format!("{}{}", self.base, path));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req =
            b.body(Full::new(Bytes::from(body.map(<[u8]>::to_vec).unwrap_or_default()))).expect("request");
        self.client.request(req).await.expect("send request")
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let resp = self.send(method, path, token, headers, body).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("read body").to_bytes();
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request("GET", path, Some(token), &[], None).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &serde_json::Value) -> Reply {
        let b = serde_json::to_vec(body).expect("json");
        self.request("POST", path, Some(token), &[("content-type", "application/json")], Some(&b)).await
    }
}

/// Reads frames of a streaming response until `pred` holds for the accumulated text.
pub async fn read_until(
    resp: &mut hyper::Response<hyper::body::Incoming>,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let mut acc = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if pred(&acc) {
            return acc;
        }
        let frame = tokio::time::timeout_at(deadline, resp.body_mut().frame()).await;
        match frame {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    acc.push_str(&String::from_utf8_lossy(&d));
                }
            }
            Ok(_) => {
                assert!(pred(&acc), "stream ended before the expected data; got: {acc}");
                return acc;
            }
            Err(_) => panic!("timed out after {timeout:?}; got: {acc}"),
        }
    }
}

/// Reads a streaming response to its end (with a deadline) and returns everything.
pub async fn read_to_end(resp: hyper::Response<hyper::body::Incoming>, timeout: Duration) -> String {
    let body = tokio::time::timeout(timeout, resp.into_body().collect())
        .await
        .expect("stream ended in time")
        .expect("body");
    String::from_utf8_lossy(&body.to_bytes()).into_owned()
}
