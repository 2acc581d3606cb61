//! `kubegate-bench`: runs the benchmarks and writes `bench/report.md` and `bench/results.json`.
//!
//! ```text
//! kubegate-bench [--smoke] [--out DIR] [--only NAME[,NAME…]] [--env SERVICE:VAR=VALUE]…
//! ```
//! NAME is one of micro, throughput, downloads, revocation, watch, cold, audit. `--env` sets a
//! variable on every instance of a service (identity, kubeconfig or proxy) for the whole run, to
//! measure a setting; the report lists such settings. Run it as a release build (`make bench`
//! does): it starts the binaries found next to itself.

use std::path::PathBuf;
use std::process::ExitCode;

use kubegate_bench::{Plan, ServiceEnv, report, run};

/// kube-sim serves the benchmarks from inside this process, so it gets the allocator its own
/// binary has.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn usage() -> ExitCode {
    eprintln!(
        "usage: kubegate-bench [--smoke] [--out DIR] [--only micro,throughput,downloads,revocation,watch,cold,audit] [--env SERVICE:VAR=VALUE]..."
    );
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let mut plan = Plan::full();
    let mut out = kubegate_bench::workspace_root().join("bench");
    let mut only = Vec::new();
    let mut service_env = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => plan = Plan::smoke(),
            "--out" => match args.next() {
                Some(d) => out = PathBuf::from(d),
                None => return usage(),
            },
            "--only" => match args.next() {
                Some(list) => only.extend(list.split(',').map(str::to_string)),
                None => return usage(),
            },
            "--env" => match args.next().map(|s| s.parse::<ServiceEnv>()) {
                Some(Ok(setting)) => service_env.push(setting),
                Some(Err(e)) => {
                    eprintln!("kubegate-bench: --env {e}");
                    return ExitCode::from(64);
                }
                None => return usage(),
            },
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    plan.service_env = service_env;
    if cfg!(debug_assertions) && plan.name == "full" {
        eprintln!("kubegate-bench: warning: a debug build measures debug binaries; run `make bench`");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kubegate-bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let results = runtime.block_on(run(plan, &only));
    drop(runtime);
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("kubegate-bench: {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let json = serde_json::json!({
        "results": &results,
        "verdicts": report::verdicts(&results),
    });
    let written =
        std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&json).unwrap_or_default())
            .and_then(|_| std::fs::write(out.join("report.md"), report::markdown(&results)));
    if let Err(e) = written {
        eprintln!("kubegate-bench: writing to {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("kubegate-bench: wrote {}/report.md and results.json", out.display());
    if results.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
