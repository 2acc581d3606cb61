//! `bench/report.md` from one run's [`Results`], and `bench/results.json` (the same numbers, raw).

use std::fmt::Write as _;

use crate::Results;
use crate::load::Proto;
use crate::scenarios::downloads::CostPerDownload;
use crate::scenarios::throughput::{NGINX_IMPERSONATING, PAYLOADS, TARGETS, ThroughputResult};

/// Before/after notes of the performance work, kept beside the driver and copied into the report.
const CHANGES: &str = include_str!("../changes.md");

/// One goal of the project and what the run measured for it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub item: String,
    pub goal: String,
    pub measured: String,
    /// `None` when the scenario did not run or produced no number.
    pub met: Option<bool>,
}

fn yes_no(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The targets, judged from the results.
pub fn verdicts(r: &Results) -> Vec<Verdict> {
    let mut v = Vec::new();
    let t = r.throughput.as_ref();
    let max_conns = r.plan.connections.iter().copied().max().unwrap_or(64);
    // 1. kubegate ≥ 1.0× nginx at the highest concurrency, every payload and protocol.
    {
        let mut parts = Vec::new();
        let mut all = t.map(|_| true);
        if let Some(t) = t {
            for (label, _) in PAYLOADS {
                for &proto in &r.plan.protos {
                    if let (Some(k), Some(n)) = (
                        t.cell("kubegate", label, proto, max_conns),
                        t.cell("nginx", label, proto, max_conns),
                    ) {
                        let x = ratio(k.rps, n.rps);
                        parts.push(format!("{label} {}: {x:.2}×", proto.as_str()));
                        if x.is_nan() || x < 1.0 {
                            all = Some(false);
                        }
                    }
                }
            }
        }
        v.push(Verdict {
            item: "1".into(),
            goal: format!("kubegate ≥ 1.0× nginx requests/s at {max_conns} connections"),
            measured: parts.join("; "),
            met: all,
        });
    }
    // 2. Added latency at one connection.
    if let Some(t) = t {
        let mut p50_ok = true;
        let mut p99_ok = true;
        let mut parts = Vec::new();
        for (label, _) in PAYLOADS {
            for &proto in &r.plan.protos {
                if let (Some(k), Some(d)) =
                    (t.cell("kubegate", label, proto, 1), t.cell("direct", label, proto, 1))
                {
                    let (a50, a99) = (k.p50_us - d.p50_us, k.p99_us - d.p99_us);
                    p50_ok &= a50 <= 150.0;
                    p99_ok &= a99 <= 1000.0;
                    parts.push(format!("{label} {}: {a50:+.0} µs / {a99:+.0} µs", proto.as_str()));
                }
            }
        }
        let measured =
            if parts.is_empty() { "1 connection not in this plan".into() } else { parts.join("; ") };
        let met = (!parts.is_empty()).then_some(p50_ok && p99_ok);
        v.push(Verdict {
            item: "2".into(),
            goal: "added latency at 1 connection: p50 ≤ 150 µs and p99 ≤ 1 ms (p50 / p99)".into(),
            measured,
            met,
        });
    } else {
        v.push(Verdict {
            item: "2".into(),
            goal: "added latency p50 ≤ 150 µs, p99 ≤ 1 ms".into(),
            measured: String::new(),
            met: None,
        });
    }
    let rev = r.revocation.as_ref();
    v.push(Verdict {
        item: "3".into(),
        goal: "revocation reaches both replicas: p99 ≤ 100 ms".into(),
        measured: rev
            .map(|x| format!("p99 {:.1} ms (max {:.1} ms)", x.propagation_ms.p99, x.propagation_ms.max))
            .unwrap_or_default(),
        met: rev.map(|x| x.propagation_ms.p99 <= 100.0),
    });
    let cold = r.cold_start.as_ref();
    v.push(Verdict {
        item: "4".into(),
        goal: "cold start ≤ 3 s and ≤ 300 MiB".into(),
        measured: cold
            .map(|c| {
                format!(
                    "{:.2} s from the snapshots (whole streams: {:.2} s), {:.0} MiB resident (peak {:.0} MiB)",
                    c.ready_s, c.full_replay_ready_s, c.rss_mib, c.peak_rss_mib
                )
            })
            .unwrap_or_default(),
        met: cold.map(|c| c.ready_s <= 3.0 && c.rss_mib <= 300.0 && c.peak_rss_mib <= 300.0),
    });
    let w = r.watch.as_ref();
    v.push(Verdict {
        item: "5".into(),
        goal: format!("{} watches through one replica ≤ 1 GiB", r.plan.watches),
        measured: w
            .map(|w| format!("{:.0} MiB resident (peak {:.0} MiB)", w.rss_open_mib, w.rss_peak_mib))
            .unwrap_or_default(),
        met: w.map(|w| w.rss_peak_mib <= 1024.0),
    });
    let d = r.downloads.as_ref();
    v.push(Verdict {
        item: "6".into(),
        goal: "≥ 1,000 kubeconfig downloads/s".into(),
        measured: d.map(|d| format!("{:.0} downloads/s", d.per_second)).unwrap_or_default(),
        met: d.map(|d| d.per_second >= 1000.0),
    });
    let a = r.audit.as_ref();
    v.push(Verdict {
        item: "7".into(),
        goal: format!("audit replay of {} records ≤ 30 s", r.plan.audit_records),
        measured: a
            .map(|a| format!("{:.1} s ({:.0} records/s)", a.replay_s, a.records_per_second))
            .unwrap_or_default(),
        met: a.map(|a| a.replay_s <= 30.0),
    });
    let m = r.micro.as_ref().and_then(|m| m.get("token/check_cached"));
    v.push(Verdict {
        item: "8".into(),
        goal: "cached token check ≤ 1 µs".into(),
        measured: m.map(|m| format!("{:.0} ns", m.median_ns)).unwrap_or_default(),
        met: m.map(|m| m.median_ns <= 1000.0),
    });
    v
}

fn fmt_rps(x: f64) -> String {
    if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
}

fn fmt_us(x: f64) -> String {
    if x >= 10_000.0 { format!("{:.1} ms", x / 1000.0) } else { format!("{x:.0} µs") }
}

fn throughput_tables(out: &mut String, t: &ThroughputResult, r: &Results) {
    for (label, _) in PAYLOADS {
        let bytes = t.payload_bytes.iter().find(|p| p.0 == label).map(|p| p.1).unwrap_or(0);
        for &proto in &r.plan.protos {
            let tool = if proto == Proto::H1 { "wrk" } else { "h2load" };
            let _ = writeln!(out, "\n#### {label} pod list ({bytes} bytes), {} ({tool})\n", proto.as_str());
            let _ = writeln!(
                out,
                "| conns | target | req/s | p50 | p99 | p99.9 | kubegate/nginx req/s | kubegate/{NGINX_IMPERSONATING} \
                 req/s | kubegate/direct req/s |"
            );
            let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
            for &c in &r.plan.connections {
                for target in TARGETS {
                    let Some(cell) = t.cell(target, label, proto, c) else { continue };
                    let [vs_nginx, vs_impersonating, vs_direct] = if target == "kubegate" {
                        ["nginx", NGINX_IMPERSONATING, "direct"].map(|other| {
                            let o = t.cell(other, label, proto, c).map(|o| o.rps).unwrap_or(0.0);
                            format!("**{:.2}×**", ratio(cell.rps, o))
                        })
                    } else {
                        Default::default()
                    };
                    let flag = if cell.bad_answers > 0 {
                        format!(" ⚠ {} bad answers", cell.bad_answers)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        out,
                        "| {c} | {target}{flag} | {} | {} | {} | {} | {vs_nginx} | {vs_impersonating} | {vs_direct} |",
                        fmt_rps(cell.rps),
                        fmt_us(cell.p50_us),
                        fmt_us(cell.p99_us),
                        fmt_us(cell.p999_us),
                    );
                }
            }
        }
    }
}

/// CPU time per request of each process at the highest concurrency, where throughput is
/// decided by what the two cores spend per request.
fn cpu_table(out: &mut String, t: &ThroughputResult, r: &Results) {
    let Some(&c) = r.plan.connections.iter().max() else { return };
    let _ = writeln!(out, "\n#### CPU time per request at {c} connections\n");
    let _ = writeln!(
        out,
        "Read from `/proc/<pid>/task/*/schedstat` before and after each run, divided by the requests \
         answered; medians of the rounds. kube-sim runs inside the bench process, so its column is that \
         process's time. The load generator is not counted. Where the kubegate column's total exceeds \
         nginx's, the two cores can answer fewer requests per second through kubegate.\n"
    );
    let _ = writeln!(out, "| payload | protocol | target | replica | nginx | kube-sim | NATS | total |");
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|");
    let us = |x: f64| if x >= 0.05 { format!("{x:.1} µs") } else { String::new() };
    for (label, _) in PAYLOADS {
        for &proto in &r.plan.protos {
            for target in TARGETS {
                let Some(cell) = t.cell(target, label, proto, c) else { continue };
                let x = &cell.cpu;
                let _ = writeln!(
                    out,
                    "| {label} | {} | {target} | {} | {} | {} | {} | **{:.1} µs** |",
                    proto.as_str(),
                    us(x.replica_us),
                    us(x.nginx_us),
                    us(x.kube_sim_us),
                    us(x.nats_us),
                    x.total_us()
                );
            }
        }
    }
}

/// What one download cost each process.
fn download_cost(out: &mut String, c: &CostPerDownload) {
    let _ = writeln!(out, "\n#### CPU time per download\n");
    let _ = writeln!(
        out,
        "Read from `/proc/<pid>/task/*/schedstat` right before and after each run, divided by the \
         downloads; medians of the runs. PostgreSQL is every process of the server. The bench's own \
         client (TLS and HTTP) is listed apart and not in the total.\n"
    );
    let _ = writeln!(out, "| process | CPU time per download |\n|---|---:|");
    let rows = [
        ("identity", c.identity_us),
        ("kubeconfig", c.kubeconfig_us),
        ("proxy replicas (both)", c.replicas_us),
        ("HAProxy", c.haproxy_us),
        ("NATS", c.nats_us),
        ("PostgreSQL", c.postgres_us),
    ];
    for (name, us) in rows {
        let _ = writeln!(out, "| {name} | {us:.0} µs |");
    }
    let _ = writeln!(out, "| **total** | **{:.0} µs** |", c.total_us());
    let _ = writeln!(out, "| the bench's client (not in the total) | {:.0} µs |", c.bench_us);
}

/// The Markdown report.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(out, "# kubegate benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `make bench` (`kubegate-bench`, plan `{}`) on {} at commit `{}`; the run took {:.0} s.\n",
        r.plan.name, r.started_at, m.commit, r.duration_s
    );
    if !r.plan.service_env.is_empty() {
        let settings: Vec<String> = r.plan.service_env.iter().map(|e| format!("`{e}`")).collect();
        let _ = writeln!(
            out,
            "**The services ran with settings of this run's own** (`--env`), not their defaults: {}.\n",
            settings.join(", ")
        );
    }
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(
        out,
        "- **{} cores** ({}), {:.0} GiB memory, Linux {}",
        m.cores, m.cpu_model, m.memory_gib, m.kernel
    );
    let _ = writeln!(out, "- 1-minute load average when the run started: {:.2}", m.load_average_at_start);
    for (tool, version) in &m.tools {
        let _ = writeln!(out, "- {tool}: {version}");
    }
    let _ = writeln!(
        out,
        "- The load generator (one wrk or h2load thread), kubegate, nginx, kube-sim, NATS and PostgreSQL all \
         share these {} cores, and nothing stops other work on the machine during a run: absolute \
         numbers are low and noisy, the **ratios** between the three paths, measured in interleaved rounds, \
         are what matter.\n",
        m.cores
    );

    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| item | goal | measured | |\n|---|---|---|---|");
    for v in verdicts(r) {
        let _ = writeln!(out, "| {} | {} | {} | {} |", v.item, v.goal, v.measured, yes_no(v.met));
    }
    if !r.failures.is_empty() {
        let _ = writeln!(out, "\n**Scenarios that failed in this run:**\n");
        for (name, why) in &r.failures {
            let _ = writeln!(out, "- {name}: {}", why.lines().next().unwrap_or(""));
        }
    }

    let _ = writeln!(out, "\n## 1. Throughput and latency\n");
    let _ = writeln!(
        out,
        "GET of a pod list from kube-sim on three paths: **direct** (kube-sim's own TLS, a `system:masters` \
         token), **kubegate** (one proxy replica: token check, authorization of a standard user, \
         impersonation headers, audit record published to JetStream), and **nginx** (TLS-terminating reverse \
         proxy with upstream keep-alive and verified upstream TLS, forwarding with kube-sim's token; no checks). \
         Each cell is the median of {} interleaved rounds of {} s at a fixed number of connections with one \
         request in flight on each. Requests through kubegate carry impersonation headers, so kube-sim also \
         authorizes the impersonation on that path. For reference, **{NGINX_IMPERSONATING}** is the same nginx \
         forwarding as kubegate does for the bench user (kubegate's upstream credential, the same \
         `Impersonate-User` and `Impersonate-Group` headers, still no checks): there kube-sim does the same \
         work as on kubegate's path. Item 1's goal is against plain nginx.",
        r.plan.runs,
        r.plan.load_duration.as_secs()
    );
    match &r.throughput {
        Some(t) => {
            throughput_tables(&mut out, t, r);
            cpu_table(&mut out, t, r);
        }
        None => {
            let _ = writeln!(out, "\nNot measured in this run.");
        }
    }

    let _ = writeln!(out, "\n## 2. Added latency at light load (1 connection)\n");
    match &r.throughput {
        Some(t) if r.plan.connections.contains(&1) => {
            let _ = writeln!(out, "kubegate minus direct, from the medians above.\n");
            let _ = writeln!(
                out,
                "| payload | protocol | direct p50 | kubegate p50 | added p50 | direct p99 | kubegate p99 | added p99 |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
            for (label, _) in PAYLOADS {
                for &proto in &r.plan.protos {
                    if let (Some(k), Some(d)) =
                        (t.cell("kubegate", label, proto, 1), t.cell("direct", label, proto, 1))
                    {
                        let _ = writeln!(
                            out,
                            "| {label} | {} | {} | {} | **{:+.0} µs** | {} | {} | **{:+.0} µs** |",
                            proto.as_str(),
                            fmt_us(d.p50_us),
                            fmt_us(k.p50_us),
                            k.p50_us - d.p50_us,
                            fmt_us(d.p99_us),
                            fmt_us(k.p99_us),
                            k.p99_us - d.p99_us
                        );
                    }
                }
            }
        }
        _ => {
            let _ = writeln!(out, "Not measured in this run.");
        }
    }

    let _ = writeln!(out, "\n## 3. Revocation propagation\n");
    match &r.revocation {
        Some(x) => {
            let _ = writeln!(
                out,
                "{} tokens, one after the other: each is used on both replicas (its signature cached there), revoked \
                 with `DELETE /api/kubeconfig-tokens/{{jti}}` through the public origin, and from the moment that \
                 answer arrives both replicas are polled directly until each answers 401; a token's figure is the \
                 later replica.\n",
                x.revocations
            );
            let _ = writeln!(out, "| | p50 | p99 | max |\n|---|---:|---:|---:|");
            let _ = writeln!(
                out,
                "| revoke answer → refused by both replicas | {:.2} ms | {:.2} ms | {:.2} ms |",
                x.propagation_ms.p50, x.propagation_ms.p99, x.propagation_ms.max
            );
            let _ = writeln!(
                out,
                "| the revoke API call itself | {:.2} ms | {:.2} ms | {:.2} ms |",
                x.revoke_call_ms.p50, x.revoke_call_ms.p99, x.revoke_call_ms.max
            );
            let _ = writeln!(
                out,
                "\n{} of {} tokens were already refused by both replicas at the first poll after the answer.",
                x.refused_at_first_poll, x.revocations
            );
        }
        None => {
            let _ = writeln!(out, "Not measured in this run.");
        }
    }

    let _ = writeln!(out, "\n## 4. Cold start\n");
    match &r.cold_start {
        Some(c) => {
            let _ = writeln!(
                out,
                "A replica starts against streams holding {} identity events ({} users, a signing key, {} issued \
                 tokens, {} revocations still in force) and {} environment events ({} environments with sealed \
                 credentials, their access policies, and the `KubeconfigDownloaded` the kubeconfig service records \
                 with each download that made one of those tokens): {:.0} MiB in JetStream. The identity and \
                 kubeconfig services ran against that history first, as in a deployment, and wrote their \
                 snapshots, identity's directory and kubeconfig's environments ({:.1} MiB in `KUBEGATE_SNAPSHOTS`, \
                 {:.1} s after they started; then they were stopped): a replica loads both and follows each stream \
                 from its snapshot's message. Time from process start until `/readyz` answers 200 (the readiness \
                 gate is re-evaluated every 100 ms), resident memory then (VmRSS) and at its peak (VmHWM); median \
                 of {} starts, then as many with snapshots turned off (`KUBEGATE_CACHE_SNAPSHOTS=false`: both \
                 streams replayed whole).\n",
                c.identity_events,
                c.history.users,
                c.history.tokens,
                c.history.revocations,
                c.environment_events,
                c.history.environments,
                c.stream_mib,
                c.snapshot_mib,
                c.snapshot_written_s,
                c.runs.len()
            );
            let _ = writeln!(out, "| | time to ready | RSS at ready | peak RSS |\n|---|---:|---:|---:|");
            let rows = c
                .runs
                .iter()
                .map(|r| ("from the snapshot", r))
                .chain(c.full_replay_runs.iter().map(|r| ("whole stream", r)));
            for (i, (how, run)) in rows.enumerate() {
                let _ = writeln!(
                    out,
                    "| start {} ({how}) | {:.2} s | {:.0} MiB | {:.0} MiB |",
                    i + 1,
                    run.ready_s,
                    run.rss_mib,
                    run.peak_rss_mib
                );
            }
            let _ = writeln!(
                out,
                "| **median, from the snapshot** | **{:.2} s** | **{:.0} MiB** | **{:.0} MiB** |",
                c.ready_s, c.rss_mib, c.peak_rss_mib
            );
            let _ = writeln!(out, "| median, whole stream | {:.2} s | | |", c.full_replay_ready_s);
        }
        None => {
            let _ = writeln!(out, "Not measured in this run.");
        }
    }

    let _ = writeln!(out, "\n## 5. Watch fan-out\n");
    match &r.watch {
        Some(w) => {
            let _ = writeln!(
                out,
                "{} concurrent watches of one namespace through one replica, as h2 streams over {} connections \
                 (the edge allows 256 streams per connection). The replica runs with \
                 `KUBEGATE_MAX_WATCHES_PER_USER={}` (default 1000: all watches belong to one user here). Once all are \
                 open, kube-sim creates a pod; the delay is from that moment until the event reached each watcher. \
                 Figures are the median over {} events.\n",
                w.watches,
                w.connections,
                crate::stack::MAX_WATCHES_PER_USER,
                w.events.len()
            );
            let _ = writeln!(out, "| | value |\n|---|---:|");
            let _ = writeln!(out, "| replica RSS before the watches | {:.0} MiB |", w.rss_before_mib);
            let _ = writeln!(out, "| replica RSS with all watches open | **{:.0} MiB** |", w.rss_open_mib);
            let _ = writeln!(out, "| replica peak RSS | {:.0} MiB |", w.rss_peak_mib);
            let _ = writeln!(out, "| memory per watch | {:.1} KiB |", w.per_watch_kib);
            let _ = writeln!(out, "| time to open all watches | {:.1} s |", w.open_s);
            let _ = writeln!(out, "| event delay p50 | **{:.1} ms** |", w.delay_p50_ms);
            let _ = writeln!(out, "| event delay p99 | **{:.1} ms** |", w.delay_p99_ms);
            let _ = writeln!(out, "| event delay max (all events) | {:.1} ms |", w.delay_max_ms);
        }
        None => {
            let _ = writeln!(out, "Not measured in this run.");
        }
    }

    let _ = writeln!(out, "\n## 6. Kubeconfig downloads\n");
    match &r.downloads {
        Some(d) => {
            let _ = writeln!(
                out,
                "The user signs in once; then {} downloads per run with {} in flight, through the public origin \
                 (HAProxy → proxy → kubeconfig → NATS request to identity, which mints the token, appends \
                 `KubeconfigTokenIssued` to PostgreSQL and publishes it; kubeconfig appends and publishes \
                 `KubeconfigDownloaded`). Median of {} runs.\n",
                d.downloads_per_run,
                d.concurrency,
                d.runs_per_second.len()
            );
            let runs: Vec<String> = d.runs_per_second.iter().map(|x| format!("{x:.0}")).collect();
            let _ = writeln!(out, "| | value |\n|---|---:|");
            let _ = writeln!(out, "| downloads/s (median) | **{:.0}** |", d.per_second);
            let _ = writeln!(out, "| runs | {} |", runs.join(", "));
            let _ = writeln!(
                out,
                "| one download, p50 / p99 | {:.1} ms / {:.1} ms |",
                d.latency_ms.p50, d.latency_ms.p99
            );
            download_cost(&mut out, &d.cost);
        }
        None => {
            let _ = writeln!(out, "Not measured in this run.");
        }
    }

    let _ = writeln!(out, "\n## 7. Audit replay\n");
    match &r.audit {
        Some(a) => {
            let _ = writeln!(
                out,
                "{} `RequestAudited` records ({:.0} MiB in `KUBEGATE_AUDIT`, {} to a message as a proxy packs \
                 them under load) replayed from the first and written \
                 as JSON lines ({:.0} MiB) by {}, its output to a file; the time is the command's, from start \
                 to exit. Median of {} runs.\n",
                a.records,
                a.stream_mib,
                a.per_message,
                a.json_mib,
                a.engine,
                a.runs_s.len()
            );
            let runs: Vec<String> = a.runs_s.iter().map(|x| format!("{x:.2} s")).collect();
            let _ = writeln!(out, "| | value |\n|---|---:|");
            let _ = writeln!(out, "| replay time (median) | **{:.2} s** |", a.replay_s);
            let _ = writeln!(out, "| records/s | {:.0} |", a.records_per_second);
            let _ = writeln!(out, "| runs | {} |", runs.join(", "));
        }
        None => {
            let _ = writeln!(out, "Not measured in this run.");
        }
    }

    let _ = writeln!(out, "\n## 8. Micro-benchmarks (criterion)\n");
    match &r.micro {
        Some(mi) => {
            let _ = writeln!(
                out,
                "`cargo bench -p kubegate-proxy --bench hot_path` ({} profile). `token/*` is `Cache::authenticate` \
                 (cached: signature already verified; uncached: Ed25519 verification and cache insertion). \
                 `authz/*` is path classification plus the authorization decision for a standard user.\n",
                mi.profile
            );
            let _ = writeln!(out, "| benchmark | median | mean |\n|---|---:|---:|");
            for b in &mi.benches {
                let _ = writeln!(out, "| {} | {:.0} ns | {:.0} ns |", b.name, b.median_ns, b.mean_ns);
            }
        }
        None => {
            let _ = writeln!(out, "Not measured in this run.");
        }
    }

    let _ = writeln!(out, "\n## How to run\n");
    let _ = writeln!(
        out,
        "`make bench` builds the release binaries, installs wrk, h2load (nghttp2-client) and nginx when \
         missing, runs everything above and rewrites this file and `bench/results.json` (every run's raw \
         figures). `make test` includes a smoke run of every scenario (`tests/bench/tests/smoke.rs`, seconds, \
         debug binaries), which checks that each produces numbers, never how fast they are."
    );
    let _ = writeln!(out, "\n{}", CHANGES.trim_end());
    out
}
