//! Items 1 and 2: requests/s and latency at fixed concurrency, HTTP/1.1 (wrk) and h2 (h2load),
//! for the ~2 KB and ~100 KB pod lists, on three paths to the same kube-sim: direct, through one
//! kubegate replica, and through nginx. Runs are interleaved (every target once per round), so a
//! busy moment on the shared machine hits all three alike; each figure is the median of the
//! rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::{LoadRun, Proto, Tools};
use crate::nginx::{Nginx, NginxSite};
use crate::stack::{BenchStack, NS_2K, NS_100K, SIM_ADMIN_TOKEN};
use crate::stats::median;
use crate::{Plan, say};

pub const TARGETS: [&str; 3] = ["direct", "kubegate", "nginx"];
pub const PAYLOADS: [(&str, &str); 2] = [("2KB", NS_2K), ("100KB", NS_100K)];

/// Medians of one (target, payload, protocol, connections) cell.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub target: String,
    pub payload: String,
    pub proto: Proto,
    pub connections: usize,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Every run, in order.
    pub runs: Vec<LoadRun>,
    /// Sum over runs of errors and non-2xx answers (must be 0 for the figure to count).
    pub bad_answers: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThroughputResult {
    pub cells: Vec<Cell>,
    /// Bytes of each payload as kube-sim sends it.
    pub payload_bytes: Vec<(String, usize)>,
}

impl ThroughputResult {
    pub fn cell(&self, target: &str, payload: &str, proto: Proto, connections: usize) -> Option<&Cell> {
        self.cells.iter().find(|c| {
            c.target == target && c.payload == payload && c.proto == proto && c.connections == connections
        })
    }
}

struct Target {
    name: &'static str,
    base: String,
    authorization: String,
}

pub async fn run(
    plan: &Plan,
    bench: &BenchStack,
    tools: &Tools,
    work: &Path,
    start: Instant,
) -> Result<ThroughputResult, String> {
    let sim = bench.sim();
    let nginx = Nginx::start(
        &tools.nginx,
        &NginxSite {
            upstream: sim.addr().to_string(),
            upstream_ca: sim.ca_pem(),
            upstream_token: SIM_ADMIN_TOKEN,
            prefix: bench.prefix(),
            cert: &bench.server_cert,
            key: &bench.server_key,
        },
    )?;
    let kubegate_port = bench.stack.proxy_ports[0];
    let targets = [
        Target { name: "direct", base: sim.url(), authorization: format!("Bearer {SIM_ADMIN_TOKEN}") },
        Target {
            name: "kubegate",
            base: bench.replica_base(kubegate_port),
            authorization: format!("Bearer {}", bench.token),
        },
        Target {
            name: "nginx",
            base: format!("https://127.0.0.1:{}{}", nginx.port, bench.prefix()),
            authorization: format!("Bearer {}", bench.token),
        },
    ];

    // Same answer on every path, and its size.
    let mut payload_bytes = Vec::new();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(
            kubegate_tls::client_config(
                &format!("{}\n{}", bench.stack.ca_pem, sim.ca_pem()),
                None,
                &[b"http/1.1"],
            )
            .map_err(|e| e.to_string())?,
        )
        .build()
        .map_err(|e| e.to_string())?;
    for (label, ns) in PAYLOADS {
        let mut sizes = Vec::new();
        for t in &targets {
            let url = format!("{}/api/v1/namespaces/{ns}/pods", t.base);
            let resp = client
                .get(&url)
                .header("Authorization", &t.authorization)
                .send()
                .await
                .map_err(|e| format!("{} {url}: {e}", t.name))?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(|e| format!("{} {url}: {e}", t.name))?;
            if status != 200 {
                return Err(format!(
                    "{} answered {status} for {url}: {}{}",
                    t.name,
                    String::from_utf8_lossy(&body),
                    if t.name == "nginx" { nginx.error_log() } else { String::new() }
                ));
            }
            sizes.push(body.len());
        }
        payload_bytes.push((label.to_string(), sizes[0]));
    }

    let url = |t: &Target, ns: &str| format!("{}/api/v1/namespaces/{ns}/pods", t.base);
    let mut raw: Vec<(usize, usize, Proto, usize, LoadRun)> = Vec::new();
    if plan.warm_up {
        for t in &targets {
            for &proto in &plan.protos {
                let (u, a) = (url(t, NS_2K), t.authorization.clone());
                let tools = tools.clone();
                let dir = work.to_path_buf();
                tokio::task::spawn_blocking(move || {
                    tools.run(proto, &u, &a, 16, Duration::from_secs(1), &dir)
                })
                .await
                .map_err(|e| e.to_string())??;
            }
        }
    }
    let total = plan.runs * plan.connections.len() * plan.protos.len() * PAYLOADS.len() * targets.len();
    let mut done = 0;
    for round in 0..plan.runs {
        for &connections in &plan.connections {
            for &proto in &plan.protos {
                for (pi, (label, ns)) in PAYLOADS.iter().enumerate() {
                    for (ti, t) in targets.iter().enumerate() {
                        let (u, a) = (url(t, ns), t.authorization.clone());
                        let tools = tools.clone();
                        let dir = work.to_path_buf();
                        let duration = plan.load_duration;
                        let r = tokio::task::spawn_blocking(move || {
                            tools.run(proto, &u, &a, connections, duration, &dir)
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("{} {label} {} c={connections}: {e}", t.name, proto.as_str()))?;
                        done += 1;
                        say(
                            start,
                            format!(
                                "round {}/{} [{done}/{total}] {:<8} {:<5} {:<8} c={:<2} {:>9.0} req/s p50 {:>6.0}µs p99 {:>7.0}µs",
                                round + 1,
                                plan.runs,
                                t.name,
                                label,
                                proto.as_str(),
                                connections,
                                r.rps,
                                r.p50_us,
                                r.p99_us
                            ),
                        );
                        raw.push((ti, pi, proto, connections, r));
                    }
                }
            }
        }
    }
    drop(nginx);

    let mut cells = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        for (pi, (label, _)) in PAYLOADS.iter().enumerate() {
            for &proto in &plan.protos {
                for &connections in &plan.connections {
                    let runs: Vec<LoadRun> = raw
                        .iter()
                        .filter(|r| r.0 == ti && r.1 == pi && r.2 == proto && r.3 == connections)
                        .map(|r| r.4)
                        .collect();
                    let m = |f: fn(&LoadRun) -> f64| {
                        median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
                    };
                    cells.push(Cell {
                        target: t.name.to_string(),
                        payload: label.to_string(),
                        proto,
                        connections,
                        rps: m(|r| r.rps),
                        p50_us: m(|r| r.p50_us),
                        p99_us: m(|r| r.p99_us),
                        p999_us: m(|r| r.p999_us),
                        bad_answers: runs.iter().map(|r| r.errors + r.non_2xx).sum(),
                        runs,
                    });
                }
            }
        }
    }
    Ok(ThroughputResult { cells, payload_bytes })
}
