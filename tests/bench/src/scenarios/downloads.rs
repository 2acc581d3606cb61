//! Item 6: kubeconfig downloads through the whole stack. The user signed in once; each download
//! goes HAProxy → proxy → kubeconfig → (NATS request) identity, which mints a token and appends
//! and publishes its event, then kubeconfig appends and publishes `KubeconfigDownloaded`.
//! Downloads run with a fixed number in flight; the figure is the median of the runs' rates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::NoTls;

use crate::Plan;
use crate::stack::{BenchStack, Minted, children, cpu_ns, download, parent_of};
use crate::stats::{Spread, median};

#[derive(Debug, Clone, Serialize)]
pub struct DownloadResult {
    pub per_second: f64,
    pub runs_per_second: Vec<f64>,
    pub concurrency: usize,
    pub downloads_per_run: usize,
    /// Latency of one download (ms), all runs together.
    pub latency_ms: Spread,
    /// What one download cost each process, medians over the runs.
    pub cost: CostPerDownload,
}

/// Where the machine's CPU time went per download, in µs. It is read from
/// `/proc/<pid>/task/*/schedstat` right before and after each run; PostgreSQL's is the sum over
/// every process of the server (the backends of both databases, the WAL writer, autovacuum).
/// The bench's column is this process: the client's TLS and HTTP, with kube-sim idle beside it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CostPerDownload {
    pub identity_us: f64,
    pub kubeconfig_us: f64,
    /// Both replicas together.
    pub replicas_us: f64,
    pub haproxy_us: f64,
    pub nats_us: f64,
    pub postgres_us: f64,
    pub bench_us: f64,
}

impl CostPerDownload {
    /// CPU time per download on the path, without the bench's client.
    pub fn total_us(&self) -> f64 {
        self.identity_us
            + self.kubeconfig_us
            + self.replicas_us
            + self.haproxy_us
            + self.nats_us
            + self.postgres_us
    }

    fn median_of(runs: &[CostPerDownload]) -> CostPerDownload {
        let m =
            |f: fn(&CostPerDownload) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
        CostPerDownload {
            identity_us: m(|c| c.identity_us),
            kubeconfig_us: m(|c| c.kubeconfig_us),
            replicas_us: m(|c| c.replicas_us),
            haproxy_us: m(|c| c.haproxy_us),
            nats_us: m(|c| c.nats_us),
            postgres_us: m(|c| c.postgres_us),
            bench_us: m(|c| c.bench_us),
        }
    }
}

/// The processes a download runs through.
struct Meter {
    groups: [Vec<u32>; 5],
    postmaster: Option<u32>,
}

/// CPU time of each group (ns): identity, kubeconfig, replicas, HAProxy, NATS, PostgreSQL, bench.
type Used = [u64; 7];

impl Meter {
    async fn new(bench: &BenchStack) -> Result<Meter, String> {
        let stack = &bench.stack;
        let (pg, connection) = tokio_postgres::connect(&stack.identity_db.dsn(), NoTls)
            .await
            .map_err(|e| format!("PostgreSQL for the download figures: {e}"))?;
        tokio::spawn(connection);
        // This connection's backend is a child of the postmaster, like every process of the server.
        let backend: i32 = pg
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| format!("PostgreSQL for the download figures: {e}"))?
            .get(0);
        let postmaster = parent_of(backend as u32);
        Ok(Meter {
            groups: [
                stack.identity.pid().into_iter().collect(),
                stack.kubeconfig.pid().into_iter().collect(),
                stack.proxies.iter().filter_map(|p| p.pid()).collect(),
                stack.haproxy_pid().into_iter().collect(),
                stack.nats.pid().into_iter().collect(),
            ],
            postmaster,
        })
    }

    fn used(&self) -> Used {
        let sum = |pids: &[u32]| pids.iter().filter_map(|&p| cpu_ns(p)).sum::<u64>();
        let postgres = self.postmaster.map(|p| cpu_ns(p).unwrap_or(0) + sum(&children(p))).unwrap_or(0);
        let g = &self.groups;
        [
            sum(&g[0]),
            sum(&g[1]),
            sum(&g[2]),
            sum(&g[3]),
            sum(&g[4]),
            postgres,
            cpu_ns(std::process::id()).unwrap_or(0),
        ]
    }

    fn per_download(before: Used, after: Used, downloads: usize) -> CostPerDownload {
        let n = downloads.max(1) as f64;
        let us = |i: usize| after[i].saturating_sub(before[i]) as f64 / 1000.0 / n;
        CostPerDownload {
            identity_us: us(0),
            kubeconfig_us: us(1),
            replicas_us: us(2),
            haproxy_us: us(3),
            nats_us: us(4),
            postgres_us: us(5),
            bench_us: us(6),
        }
    }
}

/// Returns the rate and every token minted (the revocation scenario revokes them).
pub async fn run(plan: &Plan, bench: &BenchStack) -> Result<(DownloadResult, Vec<Minted>), String> {
    let client = bench.client(true);
    let base = bench.public_url();
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    let mut minted = Vec::new();
    let mut costs = Vec::new();
    let meter = Meter::new(bench).await?;
    // One unmeasured download warms the connection pools along the way.
    minted.push(download(&client, &base, &bench.session, bench.env_id).await?);
    for _ in 0..plan.download_runs {
        let next = Arc::new(AtomicUsize::new(0));
        let used_before = meter.used();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..plan.download_concurrency {
            let (client, base, session, next) =
                (client.clone(), base.clone(), bench.session.clone(), next.clone());
            let (env, total) = (bench.env_id, plan.downloads);
            tasks.spawn(async move {
                let mut out = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    let m = download(&client, &base, &session, env).await?;
                    out.push((m, t.elapsed().as_secs_f64() * 1e3));
                }
                Ok::<_, String>(out)
            });
        }
        let mut n = 0;
        while let Some(r) = tasks.join_next().await {
            for (m, ms) in r.map_err(|e| e.to_string())?? {
                minted.push(m);
                latencies.push(ms);
                n += 1;
            }
        }
        rates.push(n as f64 / started.elapsed().as_secs_f64());
        costs.push(Meter::per_download(used_before, meter.used(), n));
    }
    let result = DownloadResult {
        per_second: median(&rates).unwrap_or(0.0),
        runs_per_second: rates,
        concurrency: plan.download_concurrency,
        downloads_per_run: plan.downloads,
        latency_ms: Spread::of(&latencies).unwrap_or_default(),
        cost: CostPerDownload::median_of(&costs),
    };
    Ok((result, minted))
}
