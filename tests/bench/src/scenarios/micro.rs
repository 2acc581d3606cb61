//! Item 8: criterion micro-benchmarks of the proxy's hot path (`services/proxy/benches/hot_path.rs`):
//! token check from the cache (hit and miss), and path classification plus the authorization
//! decision for representative requests. Run through cargo with criterion's output in a
//! directory of our own; the estimates are read from its `estimates.json` files.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::MicroPlan;

#[derive(Debug, Clone, Serialize)]
pub struct Micro {
    /// `group/function`.
    pub name: String,
    /// Criterion's estimates (ns per iteration).
    pub mean_ns: f64,
    pub median_ns: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MicroResult {
    pub profile: String,
    pub benches: Vec<Micro>,
}

impl MicroResult {
    pub fn get(&self, name: &str) -> Option<&Micro> {
        self.benches.iter().find(|b| b.name == name)
    }
}

pub const BENCH_TARGET: &str = "hot_path";

pub fn run(plan: &MicroPlan, work: &Path) -> Result<MicroResult, String> {
    let home = work.join("criterion");
    // `make bench` builds the benchmark first (`cargo bench --no-run`); running that executable
    // directly keeps this step off cargo's build lock, which other builds on the machine may hold.
    // Otherwise: `cargo bench` (bench profile, release settings), or for the smoke run `cargo test
    // --bench` (test profile), which still measures when given `--bench`.
    let mut cmd = match prebuilt().filter(|_| plan.release) {
        Some(exe) => {
            let mut cmd = Command::new(exe);
            cmd.arg("--bench");
            cmd
        }
        None => {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            if plan.release {
                cmd.args(["bench", "--locked", "-p", "kubegate-proxy", "--bench", BENCH_TARGET, "--"]);
            } else {
                cmd.args([
                    "test",
                    "--locked",
                    "-p",
                    "kubegate-proxy",
                    "--bench",
                    BENCH_TARGET,
                    "--",
                    "--bench",
                ]);
            }
            cmd
        }
    };
    cmd.args(["--noplot", "--warm-up-time", &plan.warm_up_s.to_string()])
        .args(["--measurement-time", &plan.measurement_s.to_string()])
        .args(["--sample-size", &plan.sample_size.to_string()])
        .current_dir(crate::workspace_root())
        .env("CRITERION_HOME", &home);
    let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo {} --bench {BENCH_TARGET} failed ({}):\n{}\n{}",
            if plan.release { "bench" } else { "test" },
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut benches = Vec::new();
    collect(&home, &mut benches)?;
    benches.sort_by(|a, b| a.name.cmp(&b.name));
    if benches.is_empty() {
        return Err(format!("criterion wrote no estimates under {}", home.display()));
    }
    Ok(MicroResult {
        profile: if plan.release { "bench (release)".into() } else { "test (debug)".into() },
        benches,
    })
}

/// The newest `hot_path-<hash>` executable in `deps/` beside this program (built by `cargo bench
/// --no-run` in the same target directory), if any.
fn prebuilt() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if !dir.ends_with("deps") {
        dir.push("deps");
    }
    let prefix = format!("{BENCH_TARGET}-");
    std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.starts_with(&prefix) && !name.contains('.')
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, path)| path)
}

/// Finds every `<…>/new/estimates.json` with its `benchmark.json` beside it.
fn collect(dir: &Path, out: &mut Vec<Micro>) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            let estimates = path.join("estimates.json");
            let benchmark = path.join("benchmark.json");
            if estimates.is_file() && benchmark.is_file() {
                let read = |p: &Path| -> Result<serde_json::Value, String> {
                    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
                };
                let e = read(&estimates)?;
                let b = read(&benchmark)?;
                out.push(Micro {
                    name: b["full_id"].as_str().unwrap_or("?").to_string(),
                    mean_ns: e["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN),
                    median_ns: e["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN),
                });
            }
        } else if path.file_name().is_some_and(|n| n != "report") {
            collect(&path, out)?;
        }
    }
    Ok(())
}
