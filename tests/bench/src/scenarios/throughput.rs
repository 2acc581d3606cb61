//! Items 1 and 2: requests/s and latency at fixed concurrency, HTTP/1.1 (wrk) and h2 (h2load),
//! for the ~2 KB and ~100 KB pod lists, on four paths to the same kube-sim: direct, through one
//! kubegate replica, through nginx, and through nginx impersonating the bench user as kubegate
//! does (a reference: kube-sim then authorizes the same impersonation as on kubegate's path).
//! Runs are interleaved (every target once per round), so a busy moment on the shared machine hits
//! all alike; each figure is the median of the rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use kubegate_events::access::EnvironmentRole;
use serde::Serialize;

use crate::load::{LoadRun, Proto, Tools};
use crate::nginx::{IMPERSONATING, Impersonating, Nginx, NginxSite};
use crate::stack::{BENCH_USER, BenchStack, NS_2K, NS_100K, SIM_ADMIN_TOKEN, cpu_ns};
use crate::stats::median;
use crate::{Plan, say};

pub const TARGETS: [&str; 4] = ["direct", "kubegate", "nginx", NGINX_IMPERSONATING];
/// nginx forwarding as kubegate does for the bench user: kubegate's upstream credential and the
/// same impersonation headers.
pub const NGINX_IMPERSONATING: &str = "nginx-imp";
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
    /// CPU time per request of each process, medians over the runs.
    pub cpu: CpuPerRequest,
}

/// Where the machine's CPU time went during a run, per request answered, in µs. kube-sim runs
/// inside the bench process, so its figure is that process's time (the bench itself only waits
/// for the load generator meanwhile). The load generator's own time is not counted.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuPerRequest {
    pub replica_us: f64,
    pub nginx_us: f64,
    pub kube_sim_us: f64,
    pub nats_us: f64,
}

impl CpuPerRequest {
    pub fn total_us(&self) -> f64 {
        self.replica_us + self.nginx_us + self.kube_sim_us + self.nats_us
    }
}

/// The processes whose CPU time a run is charged with.
struct Processes {
    replica: Option<u32>,
    nginx: Vec<u32>,
    nats: Option<u32>,
}

impl Processes {
    /// CPU time used so far (ns): replica, nginx, kube-sim (this process), NATS.
    fn used(&self) -> [u64; 4] {
        let one = |pid: Option<u32>| pid.and_then(cpu_ns).unwrap_or(0);
        [
            one(self.replica),
            self.nginx.iter().filter_map(|&p| cpu_ns(p)).sum(),
            one(Some(std::process::id())),
            one(self.nats),
        ]
    }

    fn per_request(before: [u64; 4], after: [u64; 4], requests: u64) -> CpuPerRequest {
        let us = |i: usize| after[i].saturating_sub(before[i]) as f64 / 1000.0 / requests.max(1) as f64;
        CpuPerRequest { replica_us: us(0), nginx_us: us(1), kube_sim_us: us(2), nats_us: us(3) }
    }
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
            // What kubegate sends for the bench user: a standard role, no team.
            impersonating: Impersonating {
                upstream_token: kubegate_e2e::UPSTREAM_TOKEN,
                user: kubegate_proxy::headers::impersonated_user(BENCH_USER),
                groups: kubegate_proxy::authz::groups_for(EnvironmentRole::Standard, &[]),
            },
        },
    )?;
    let processes =
        Processes { replica: bench.proxy_pid(0), nginx: nginx.pids(), nats: bench.stack.nats.pid() };
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
        Target {
            name: NGINX_IMPERSONATING,
            base: format!("https://127.0.0.1:{}{IMPERSONATING}{}", nginx.port, bench.prefix()),
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
                    if t.name == "nginx" || t.name == NGINX_IMPERSONATING {
                        nginx.error_log()
                    } else {
                        String::new()
                    }
                ));
            }
            sizes.push(body.len());
        }
        payload_bytes.push((label.to_string(), sizes[0]));
    }

    let url = |t: &Target, ns: &str| format!("{}/api/v1/namespaces/{ns}/pods", t.base);
    let mut raw: Vec<(usize, usize, Proto, usize, LoadRun, CpuPerRequest)> = Vec::new();
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
                        let before = processes.used();
                        let r = tokio::task::spawn_blocking(move || {
                            tools.run(proto, &u, &a, connections, duration, &dir)
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("{} {label} {} c={connections}: {e}", t.name, proto.as_str()))?;
                        let cpu = Processes::per_request(before, processes.used(), r.requests);
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
                        raw.push((ti, pi, proto, connections, r, cpu));
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
                    let mine: Vec<_> = raw
                        .iter()
                        .filter(|r| r.0 == ti && r.1 == pi && r.2 == proto && r.3 == connections)
                        .collect();
                    let runs: Vec<LoadRun> = mine.iter().map(|r| r.4).collect();
                    let m = |f: fn(&LoadRun) -> f64| {
                        median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
                    };
                    let c = |f: fn(&CpuPerRequest) -> f64| {
                        median(&mine.iter().map(|r| f(&r.5)).collect::<Vec<_>>()).unwrap_or(0.0)
                    };
                    let cpu = CpuPerRequest {
                        replica_us: c(|x| x.replica_us),
                        nginx_us: c(|x| x.nginx_us),
                        kube_sim_us: c(|x| x.kube_sim_us),
                        nats_us: c(|x| x.nats_us),
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
                        cpu,
                    });
                }
            }
        }
    }
    Ok(ThroughputResult { cells, payload_bytes })
}
