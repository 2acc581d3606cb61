//! Test harness for the streaming subresources: a kube-sim with a test pod, and helpers that run
//! the versioned kubectl binaries against it (piped, under a pty, or as a long-running
//! port-forward) and check that sessions leave nothing behind.
//!
//! Included by the `streams_*` test files with `#[path]`; compiled alone it has no tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use kube_sim::streams::{Streams, UpgradeRecord};
use kube_sim::{Config, KubeSim};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub const NAMESPACE: &str = "default";
pub const POD: &str = "nginx";
pub const CONTAINER: &str = "nginx";
pub const SIDECAR: &str = "sidecar";
pub const HTTP_PORT: u16 = 80;
pub const ECHO_PORT: u16 = 9000;

/// How long any single kubectl invocation may take.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// The pod the streaming tests use: two containers with stdin and a tty (so `attach -it` is
/// allowed), declaring an HTTP port and an echo port.
fn test_pod() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": POD,
            "namespace": NAMESPACE,
            "labels": {"app": POD},
            "annotations": {"kubectl.kubernetes.io/default-container": CONTAINER},
        },
        "spec": {
            "containers": [
                {"name": CONTAINER, "image": "nginx:1.25", "stdin": true, "tty": true,
                 "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"},
                           {"containerPort": ECHO_PORT, "protocol": "TCP"}]},
                {"name": SIDECAR, "image": "busybox:1.36", "stdin": true, "tty": true},
            ],
        },
    })
}

pub const TOKEN: &str = "streams-test-token";

/// A real kube-sim with the test pod, its exec root in a temporary directory.
pub struct Sim {
    pub sim: KubeSim,
    pub dir: tempfile::TempDir,
}

impl Sim {
    pub async fn start() -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default().with_token(TOKEN, "streams-tester", &["system:masters"]);
        config.exec_root = Some(dir.path().join("exec"));
        let sim = KubeSim::start(config).await.unwrap();
        if sim.get_object("v1", "Namespace", "", NAMESPACE).is_none() {
            sim.apply_object(
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            )
            .unwrap();
        }
        sim.apply_object(test_pod()).unwrap();
        Sim { sim, dir }
    }

    pub fn streams(&self) -> &Streams {
        self.sim.streams()
    }

    /// The directory standing for the root filesystem of `container`.
    pub fn container_root(&self, container: &str) -> PathBuf {
        self.streams().container_root(NAMESPACE, POD, container)
    }

    /// A kubeconfig trusting kube-sim's CA, with the test token.
    pub fn kubeconfig(&self) -> PathBuf {
        write_kubeconfig(self.dir.path(), &self.sim.url(), self.sim.ca_pem())
    }
}

/// Writes a kubeconfig for `server` (trusting `ca_pem`) with the test token into `dir`.
pub fn write_kubeconfig(dir: &Path, server: &str, ca_pem: &str) -> PathBuf {
    use base64::Engine;
    let path = dir.join("kubeconfig");
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: tester\n  user:\n    token: {TOKEN}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: tester\n    namespace: {NAMESPACE}\n\
         current-context: sim\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// One kubectl version with a kubeconfig and extra environment (e.g. the WebSocket switches).
#[derive(Clone)]
pub struct Kubectl {
    pub minor: u32,
    pub kubeconfig: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Kubectl {
    pub fn new(minor: u32, kubeconfig: PathBuf, env: &[(&str, &str)]) -> Kubectl {
        Kubectl { minor, kubeconfig, env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// A command with a fresh cache dir; the TempDir must outlive it.
    pub fn command(&self, args: &[&str]) -> (tokio::process::Command, tempfile::TempDir) {
        let (mut cmd, cache) = kubegate_testsupport::kubectl::command(self.minor);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS").env_remove("KUBECTL_PORT_FORWARD_WEBSOCKETS");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        (cmd, cache)
    }

    /// Runs kubectl to completion with `stdin` piped in.
    pub async fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let (mut cmd, _cache) = self.command(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut child_stdin = child.stdin.take().unwrap();
        let input = stdin.to_vec();
        let feeder = tokio::spawn(async move {
            let _ = child_stdin.write_all(&input).await;
        });
        let out = tokio::time::timeout(KUBECTL_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl 1.{} {args:?} did not finish in time", self.minor))
            .unwrap();
        let _ = feeder.await;
        out
    }

    /// Runs kubectl under a pty of 100x30 (for `-it`).
    pub fn spawn_pty(&self, args: &[&str]) -> PtyKubectl {
        let cache = tempfile::tempdir().unwrap();
        let (pty, pts) = pty_process::open().unwrap();
        pty.resize(pty_process::Size::new(30, 100)).unwrap();
        let mut cmd = pty_process::Command::new(kubegate_testsupport::kubectl::kubectl(self.minor))
            .arg("--cache-dir")
            .arg(cache.path().join("cache"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", cache.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
            .env_remove("KUBECTL_PORT_FORWARD_WEBSOCKETS")
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        let child = cmd.spawn(pts).unwrap();
        PtyKubectl { child, pty, seen: Vec::new(), _cache: cache }
    }
}

/// kubectl running under a pty.
pub struct PtyKubectl {
    pub child: tokio::process::Child,
    pty: pty_process::Pty,
    pub seen: Vec<u8>,
    _cache: tempfile::TempDir,
}

impl PtyKubectl {
    pub async fn send(&mut self, keys: &str) {
        self.pty.write_all(keys.as_bytes()).await.unwrap();
    }

    /// Reads terminal output until `needle` has appeared after `from` (a position in `seen`).
    pub async fn expect_from(&mut self, from: usize, needle: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(pos) = find(&self.seen[from.min(self.seen.len())..], needle.as_bytes()) {
                return from + pos + needle.len();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {needle:?}; terminal so far: {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            match tokio::time::timeout(left, self.pty.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                Ok(_) => panic!(
                    "terminal closed waiting for {needle:?}; got {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
                Err(_) => {}
            }
        }
    }

    pub async fn expect(&mut self, needle: &str) -> usize {
        let from = self.seen.len();
        self.expect_from(from, needle, Duration::from_secs(20)).await
    }

    /// Waits for kubectl to exit, draining the terminal meanwhile; returns its exit code.
    pub async fn exit_code(mut self) -> i32 {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            tokio::select! {
                status = self.child.wait() => return status.unwrap().code().unwrap_or(-1),
                r = self.pty.read(&mut buf) => match r {
                    Ok(n) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                    _ => return self.child.wait().await.unwrap().code().unwrap_or(-1),
                },
                _ = tokio::time::sleep_until(deadline.into()) => panic!("kubectl did not exit; terminal: {:?}", String::from_utf8_lossy(&self.seen)),
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A running `kubectl port-forward` and the local ports it listens on, by remote port.
pub struct PortForward {
    child: tokio::process::Child,
    pub local: HashMap<u16, u16>,
    _cache: tempfile::TempDir,
}

impl PortForward {
    pub async fn start(kubectl: &Kubectl, remote_ports: &[u16]) -> PortForward {
        let mut args =
            vec!["port-forward".to_string(), format!("pod/{POD}"), "--address".into(), "127.0.0.1".into()];
        args.extend(remote_ports.iter().map(|p| format!(":{p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut cmd, cache) = kubectl.command(&args);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut local = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while local.len() < remote_ports.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                other => {
                    let mut err = String::new();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        BufReader::new(stderr).read_to_string(&mut err),
                    )
                    .await;
                    panic!("port-forward did not report its ports ({other:?}); stderr: {err}");
                }
            };
            // "Forwarding from 127.0.0.1:43125 -> 80"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let (l, r) = rest.split_once(" -> ").unwrap();
                local.insert(r.trim().parse().unwrap(), l.parse().unwrap());
            }
        }
        // Keep draining kubectl's output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = BufReader::new(stderr).read_to_end(&mut sink).await;
        });
        PortForward { child, local, _cache: cache }
    }

    pub fn addr(&self, remote: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.local[&remote]))
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Waits until the streams have no session left and no process runs inside the sandbox root.
pub async fn assert_torn_down(sim: &Sim) {
    let root = sim.streams().exec_root().to_path_buf();
    kubegate_testsupport::wait::until(
        "sessions and sandbox processes to end",
        Duration::from_secs(15),
        || {
            let sessions = sim.streams().active_sessions();
            let procs = processes_under(&root);
            async move { (sessions == 0 && procs.is_empty()).then_some(()) }
        },
    )
    .await;
}

/// Processes whose root directory (chroot) lies under `root`.
pub fn processes_under(root: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
            !zombie && std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r.starts_with(root))
        })
        .collect()
}

/// Upgrade records added since `from` (an earlier length of the log).
pub fn upgrades_since(streams: &Streams, from: usize) -> Vec<UpgradeRecord> {
    streams.upgrades().into_iter().skip(from).collect()
}

/// Deterministic test bytes (not all text, not compressible to nothing).
pub fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}
