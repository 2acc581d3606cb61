//! Item 3: revocation propagation. For each token: it is used once on both replicas (so its
//! signature is cached there), revoked through the public REST API, and from the moment that
//! answer arrives both replicas are polled directly until each refuses the token (401). The
//! figure for a token is the later of the two replicas.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Plan;
use crate::stack::{BenchStack, Minted};
use crate::stats::Spread;

#[derive(Debug, Clone, Serialize)]
pub struct RevocationResult {
    pub revocations: usize,
    /// Milliseconds from the revoke API's answer until both replicas refuse the token.
    pub propagation_ms: Spread,
    /// Tokens already refused by both replicas at the first poll after the answer.
    pub refused_at_first_poll: usize,
    /// Latency of the revoke API call itself (ms).
    pub revoke_call_ms: Spread,
}

async fn status(client: &reqwest::Client, url: &str, token: &str) -> Result<u16, String> {
    let r = client.get(url).bearer_auth(token).send().await.map_err(|e| format!("{url}: {e}"))?;
    let s = r.status().as_u16();
    let _ = r.bytes().await;
    Ok(s)
}

/// Polls until 401; returns (time since `since`, polls made).
async fn until_refused(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    since: Instant,
) -> Result<(f64, u32), String> {
    let deadline = since + Duration::from_secs(10);
    let mut polls = 0;
    loop {
        polls += 1;
        match status(client, url, token).await? {
            401 => return Ok((since.elapsed().as_secs_f64() * 1e3, polls)),
            200 => {}
            other => return Err(format!("{url} answered {other} to a token being revoked")),
        }
        if Instant::now() > deadline {
            return Err(format!("{url} still accepts a token revoked 10 s ago"));
        }
    }
}

pub async fn run(plan: &Plan, bench: &BenchStack, minted: Vec<Minted>) -> Result<RevocationResult, String> {
    if minted.len() < plan.revocations {
        return Err(format!("only {} tokens were minted, {} needed", minted.len(), plan.revocations));
    }
    let api = bench.client(true);
    let replicas: Vec<(reqwest::Client, String)> = bench
        .stack
        .proxy_ports
        .iter()
        .map(|p| (bench.client(false), format!("{}/version", bench.replica_base(*p))))
        .collect();
    let mut propagation = Vec::new();
    let mut calls = Vec::new();
    let mut first_poll = 0;
    for m in minted.iter().take(plan.revocations) {
        for (client, url) in &replicas {
            let s = status(client, url, &m.token).await?;
            if s != 200 {
                return Err(format!("{url} answered {s} to a fresh token"));
            }
        }
        let t = Instant::now();
        let resp = api
            .delete(bench.stack.url(&format!("/api/kubeconfig-tokens/{}", m.jti)))
            .bearer_auth(&bench.stack.admin)
            .send()
            .await
            .map_err(|e| format!("revoke: {e}"))?;
        let answered = Instant::now();
        let code = resp.status().as_u16();
        if !(200..300).contains(&code) {
            return Err(format!("revoke answered {code}: {}", resp.text().await.unwrap_or_default()));
        }
        calls.push((answered - t).as_secs_f64() * 1e3);
        let polls = futures::future::try_join_all(
            replicas.iter().map(|(client, url)| until_refused(client, url, &m.token, answered)),
        )
        .await?;
        let worst = polls.iter().map(|p| p.0).fold(0.0, f64::max);
        if polls.iter().all(|p| p.1 == 1) {
            first_poll += 1;
        }
        propagation.push(worst);
    }
    Ok(RevocationResult {
        revocations: propagation.len(),
        propagation_ms: Spread::of(&propagation).unwrap_or_default(),
        refused_at_first_poll: first_poll,
        revoke_call_ms: Spread::of(&calls).unwrap_or_default(),
    })
}
