//! Item 6: kubeconfig downloads through the whole stack. The user signed in once; each download
//! goes HAProxy → proxy → kubeconfig → (NATS request) identity, which mints a token and appends
//! and publishes its event, then kubeconfig appends and publishes `KubeconfigDownloaded`.
//! Downloads run with a fixed number in flight; the figure is the median of the runs' rates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::Plan;
use crate::stack::{BenchStack, Minted, download};
use crate::stats::{Spread, median};

#[derive(Debug, Clone, Serialize)]
pub struct DownloadResult {
    pub per_second: f64,
    pub runs_per_second: Vec<f64>,
    pub concurrency: usize,
    pub downloads_per_run: usize,
    /// Latency of one download (ms), all runs together.
    pub latency_ms: Spread,
}

/// Returns the rate and every token minted (the revocation scenario revokes them).
pub async fn run(plan: &Plan, bench: &BenchStack) -> Result<(DownloadResult, Vec<Minted>), String> {
    let client = bench.client(true);
    let base = bench.public_url();
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    let mut minted = Vec::new();
    // One unmeasured download warms the connection pools along the way.
    minted.push(download(&client, &base, &bench.session, bench.env_id).await?);
    for _ in 0..plan.download_runs {
        let next = Arc::new(AtomicUsize::new(0));
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
    }
    let result = DownloadResult {
        per_second: median(&rates).unwrap_or(0.0),
        runs_per_second: rates,
        concurrency: plan.download_concurrency,
        downloads_per_run: plan.downloads,
        latency_ms: Spread::of(&latencies).unwrap_or_default(),
    };
    Ok((result, minted))
}
