//! Item 5: watch fan-out. Many concurrent watches of one namespace through one replica, as h2
//! streams multiplexed over a few connections (the edge allows 256 streams per connection).
//! Once every watch is open, kube-sim creates a pod; each watcher notes when the event reaches
//! it. Reported: the replica's resident memory with the watches open, and the delay from the
//! creation until the event reached each watcher (p50/p99/max, median over several events).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::stack::{BenchStack, NS_WATCH, rss_kib};
use crate::stats::{Spread, median};
use crate::{Plan, say};

#[derive(Debug, Clone, Serialize)]
pub struct WatchResult {
    pub watches: usize,
    pub connections: usize,
    /// Replica RSS before the watches and with them open (MiB).
    pub rss_before_mib: f64,
    pub rss_open_mib: f64,
    pub rss_peak_mib: f64,
    /// Extra memory per open watch (KiB).
    pub per_watch_kib: f64,
    /// Time to open every watch (s).
    pub open_s: f64,
    /// Median over events of each event's delay spread (ms).
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    pub delay_max_ms: f64,
    pub events: Vec<Spread>,
}

async fn connect(port: u16, ca_pem: &str) -> Result<SendRequest<Empty<Bytes>>, String> {
    let tls = kubegate_tls::client_config(ca_pem, None, &[b"h2"]).map_err(|e| e.to_string())?;
    let tcp =
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

fn marker(event: usize) -> String {
    format!("\"kgw-{event}\"")
}

pub async fn run(plan: &Plan, bench: &BenchStack, start: Instant) -> Result<WatchResult, String> {
    let port = bench.stack.proxy_ports[0];
    let pid = bench.proxy_pid(0).ok_or("replica 0 is not running")?;
    let (rss_before, _) = rss_kib(pid).ok_or("cannot read the replica's memory")?;
    let rv = bench.sim().resource_version();
    let url = format!(
        "https://127.0.0.1:{port}{}/api/v1/namespaces/{NS_WATCH}/pods?watch=true&resourceVersion={rv}",
        bench.prefix()
    );
    let authorization = format!("Bearer {}", bench.token);
    let mut conns = Vec::new();
    for _ in 0..plan.watch_connections {
        conns.push(connect(port, &bench.stack.ca_pem).await?);
    }
    say(start, format!("  {} connections open", conns.len()));

    // Open every watch (a bounded number at a time); each watcher then reports (watch, event,
    // when) for every marker it sees, in order.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let opened = Instant::now();
    let mut watchers = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let (open_tx, mut open_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    for i in 0..plan.watches {
        let mut send = conns[i % conns.len()].clone();
        let (url, authorization, seen_tx, open_tx, gate) =
            (url.clone(), authorization.clone(), seen_tx.clone(), open_tx.clone(), gate.clone());
        let events = plan.watch_events;
        watchers.spawn(async move {
            let permit = gate.acquire_owned().await;
            let req = match http::Request::get(&url)
                .header("authorization", &authorization)
                .body(Empty::<Bytes>::new())
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = open_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let opening = async {
                send.ready().await.map_err(|e| e.to_string())?;
                send.send_request(req).await.map_err(|e| e.to_string())
            };
            let resp = match tokio::time::timeout(Duration::from_secs(60), opening).await {
                Ok(Ok(r)) if r.status() == 200 => r,
                Ok(Ok(r)) => {
                    let status = r.status();
                    let body = r.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let _ = open_tx
                        .send(Err(format!("watch answered {status}: {}", String::from_utf8_lossy(&body))));
                    return;
                }
                Ok(Err(e)) => {
                    let _ = open_tx.send(Err(format!("watch failed: {e}")));
                    return;
                }
                Err(_) => {
                    let _ = open_tx.send(Err("no answer to the watch request within 60 s".into()));
                    return;
                }
            };
            drop(permit);
            let _ = open_tx.send(Ok(()));
            drop(open_tx);
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            let mut next = 0;
            let mut wanted = marker(next).into_bytes();
            while next < events {
                let Some(Ok(frame)) = body.frame().await else { return };
                let Ok(data) = frame.into_data() else { continue };
                let now = Instant::now();
                buf.extend_from_slice(&data);
                while next < events
                    && let Some(at) = buf.windows(wanted.len()).position(|w| w == wanted.as_slice())
                {
                    let _ = seen_tx.send((next, now));
                    buf.drain(..at + wanted.len());
                    next += 1;
                    wanted = marker(next).into_bytes();
                }
                // Keep only a tail long enough to hold a marker split across frames.
                if buf.len() > 64 {
                    buf.drain(..buf.len() - 64);
                }
            }
        });
    }
    drop(open_tx);
    let mut ok = 0;
    let mut answered = 0;
    let mut first_error = None;
    while answered < plan.watches
        && let Some(r) = open_rx.recv().await
    {
        answered += 1;
        match r {
            Ok(()) => ok += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        if (ok + 1) % 2000 == 0 {
            say(start, format!("  {ok} watches open"));
        }
    }
    let open_s = opened.elapsed().as_secs_f64();
    if ok < plan.watches {
        watchers.abort_all();
        return Err(format!(
            "{ok} of {} watches opened; first failure: {}",
            plan.watches,
            first_error.unwrap_or_default()
        ));
    }
    say(start, format!("  {ok} watches open in {open_s:.1}s"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_open, _) = rss_kib(pid).ok_or("cannot read the replica's memory")?;

    let mut events = Vec::new();
    for e in 0..plan.watch_events {
        let t0 = Instant::now();
        bench
            .sim()
            .apply_object(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("kgw-{e}"), "namespace": NS_WATCH},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
            }))
            .map_err(|e| e.to_string())?;
        let mut delays = Vec::with_capacity(plan.watches);
        let deadline = t0 + Duration::from_secs(60);
        while delays.len() < plan.watches {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, seen_rx.recv()).await {
                Ok(Some((event, at))) if event == e => {
                    delays.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3)
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    watchers.abort_all();
                    return Err(format!(
                        "event {e} reached {} of {} watchers within 60 s",
                        delays.len(),
                        plan.watches
                    ));
                }
            }
        }
        let spread = Spread::of(&delays).unwrap_or_default();
        say(
            start,
            format!(
                "  event {e}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                spread.p50, spread.p99, spread.max
            ),
        );
        events.push(spread);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, peak) = rss_kib(pid).ok_or("cannot read the replica's memory")?;
    watchers.abort_all();
    drop(conns);
    while watchers.join_next().await.is_some() {}

    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(WatchResult {
        watches: plan.watches,
        connections: plan.watch_connections,
        rss_before_mib: mib(rss_before),
        rss_open_mib: mib(rss_open),
        rss_peak_mib: mib(peak),
        per_watch_kib: rss_open.saturating_sub(rss_before) as f64 / plan.watches.max(1) as f64,
        open_s,
        delay_p50_ms: median(&events.iter().map(|s| s.p50).collect::<Vec<_>>()).unwrap_or(0.0),
        delay_p99_ms: median(&events.iter().map(|s| s.p99).collect::<Vec<_>>()).unwrap_or(0.0),
        delay_max_ms: events.iter().map(|s| s.max).fold(0.0, f64::max),
        events,
    })
}
