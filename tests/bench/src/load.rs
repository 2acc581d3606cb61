//! The public load generators: `wrk` for HTTP/1.1 (percentiles from its latency histogram,
//! p99.9 through a Lua `done` hook) and `h2load` for h2 (percentiles computed from its
//! per-request `--log-file`, since its own summary is coarse). Both run at a fixed number of
//! connections, one request in flight on each, for a fixed time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::stats::Spread;

/// HTTP version of a load run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Proto {
    #[serde(rename = "http/1.1")]
    H1,
    #[serde(rename = "h2")]
    H2,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::H1 => "http/1.1",
            Proto::H2 => "h2",
        }
    }
}

/// One load run's figures. Latencies in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LoadRun {
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Socket errors and timeouts.
    pub errors: u64,
    /// Answers other than 2xx.
    pub non_2xx: u64,
}

/// A load generator found on this machine.
#[derive(Debug, Clone)]
pub struct Tools {
    pub wrk: PathBuf,
    pub h2load: PathBuf,
    pub nginx: PathBuf,
    /// Where wrk's Lua script is written.
    script: PathBuf,
}

const WRK_SCRIPT: &str = r#"-- Prints what kubegate-bench reads: totals and the p50/p99/p99.9 of wrk's latency histogram (µs).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("KGBENCH requests=%d duration_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status))
  io.write(string.format("KGBENCH p50=%d p99=%d p999=%d\n",
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// Where a tool is: PATH, then the usual Debian places.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

impl Tools {
    /// Finds wrk, h2load and nginx; the error names every missing one and its Debian package.
    pub fn find(workdir: &Path) -> Result<Tools, String> {
        let mut missing = Vec::new();
        let mut get = |name: &str, package: &str| {
            let found = find_tool(name);
            if found.is_none() {
                missing.push(format!("{name} (Debian package {package})"));
            }
            found.unwrap_or_default()
        };
        let wrk = get("wrk", "wrk");
        let h2load = get("h2load", "nghttp2-client");
        let nginx = get("nginx", "nginx");
        if !missing.is_empty() {
            return Err(format!("missing load tools: {}", missing.join(", ")));
        }
        let script = workdir.join("kgbench.lua");
        std::fs::write(&script, WRK_SCRIPT).map_err(|e| format!("writing {}: {e}", script.display()))?;
        Ok(Tools { wrk, h2load, nginx, script })
    }

    /// Versions, for the report.
    pub fn versions(&self) -> Vec<(String, String)> {
        let first_line = |out: std::io::Result<std::process::Output>| {
            out.map(|o| {
                let text =
                    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                text.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_default()
        };
        vec![
            ("wrk".into(), first_line(Command::new(&self.wrk).arg("--version").output())),
            ("h2load".into(), first_line(Command::new(&self.h2load).arg("--version").output())),
            ("nginx".into(), first_line(Command::new(&self.nginx).arg("-v").output())),
        ]
    }

    /// Runs one load: `connections` connections, one request at a time on each, for `duration`.
    pub fn run(
        &self,
        proto: Proto,
        url: &str,
        authorization: &str,
        connections: usize,
        duration: Duration,
        log_dir: &Path,
    ) -> Result<LoadRun, String> {
        match proto {
            Proto::H1 => self.wrk(url, authorization, connections, duration),
            Proto::H2 => self.h2load(url, authorization, connections, duration, log_dir),
        }
    }

    fn wrk(
        &self,
        url: &str,
        authorization: &str,
        connections: usize,
        duration: Duration,
    ) -> Result<LoadRun, String> {
        let text = run(
            "wrk",
            Command::new(&self.wrk)
                .args(["-t1", &format!("-c{connections}"), &format!("-d{}s", duration.as_secs().max(1))])
                .args(["--timeout", "10s", "--latency", "-s"])
                .arg(&self.script)
                .args(["-H", &format!("Authorization: {authorization}")])
                .arg(url),
        )?;
        parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))
    }

    fn h2load(
        &self,
        url: &str,
        authorization: &str,
        connections: usize,
        duration: Duration,
        log_dir: &Path,
    ) -> Result<LoadRun, String> {
        let log = log_dir.join(format!("h2load-{}.log", uuid::Uuid::new_v4().simple()));
        let text = run(
            "h2load",
            Command::new(&self.h2load)
                .args(["-t1", &format!("-c{connections}"), "-m1"])
                .args(["-D", &format!("{}", duration.as_secs().max(1))])
                .args(["-H", &format!("authorization: {authorization}")])
                .arg("--log-file")
                .arg(&log)
                .arg(url),
        )?;
        let log_text =
            std::fs::read_to_string(&log).map_err(|e| format!("reading {}: {e}", log.display()))?;
        let _ = std::fs::remove_file(&log);
        parse_h2load(&text, &log_text).ok_or_else(|| format!("cannot read h2load's output:\n{text}"))
    }
}

/// Reads the lines the Lua `done` hook prints.
pub fn parse_wrk(text: &str) -> Option<LoadRun> {
    let mut run = LoadRun::default();
    let mut duration_us = 0f64;
    let mut seen = 0;
    for line in text.lines().filter_map(|l| l.strip_prefix("KGBENCH ")) {
        for field in line.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            let v: f64 = v.parse().ok()?;
            match k {
                "requests" => run.requests = v as u64,
                "duration_us" => duration_us = v,
                "errors" => run.errors = v as u64,
                "non2xx" => run.non_2xx = v as u64,
                "p50" => run.p50_us = v,
                "p99" => run.p99_us = v,
                "p999" => run.p999_us = v,
                _ => {}
            }
            seen += 1;
        }
    }
    if seen < 7 || duration_us <= 0.0 {
        return None;
    }
    run.rps = run.requests as f64 / (duration_us / 1e6);
    Some(run)
}

/// Reads h2load's summary (`finished in …, N req/s`, `status codes: …`, `requests: …`) and
/// computes percentiles from its per-request log (start µs, status, duration µs).
pub fn parse_h2load(summary: &str, log: &str) -> Option<LoadRun> {
    let mut run = LoadRun::default();
    for line in summary.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let rps = rest.split(',').nth(1)?.trim().strip_suffix(" req/s")?;
            run.rps = rps.trim().parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(',').map(str::trim) {
                let mut it = part.split_whitespace();
                let n: u64 = it.next()?.parse().ok()?;
                match it.next()? {
                    "succeeded" => run.requests = n,
                    "errored" | "timeout" => run.errors += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            for part in rest.split(',').map(str::trim) {
                let mut it = part.split_whitespace();
                let n: u64 = it.next()?.parse().ok()?;
                if it.next()? != "2xx" {
                    run.non_2xx += n;
                }
            }
        }
    }
    let durations: Vec<f64> = log
        .lines()
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let _start = cols.next()?;
            let _status = cols.next()?;
            cols.next()?.trim().parse::<f64>().ok()
        })
        .collect();
    let spread = Spread::of(&durations)?;
    run.p50_us = spread.p50;
    run.p99_us = spread.p99;
    run.p999_us = spread.p999;
    (run.rps > 0.0).then_some(run)
}

/// Runs a load tool to its end; its standard output, or an error with both outputs.
fn run(name: &str, command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("running {name}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!(
            "{name} failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_wrk_hook_output() {
        let text = "Running 2s test\nKGBENCH requests=20000 duration_us=2000000 errors=1 non2xx=0\nKGBENCH p50=180 p99=900 p999=2100\n";
        let run = parse_wrk(text).unwrap();
        assert_eq!((run.requests, run.errors, run.non_2xx), (20000, 1, 0));
        assert_eq!((run.rps, run.p50_us, run.p99_us, run.p999_us), (10000.0, 180.0, 900.0, 2100.0));
        assert!(parse_wrk("Running 2s test\n").is_none());
    }

    #[test]
    fn reads_h2load_summary_and_log() {
        let summary = "finished in 2.00s, 5123.45 req/s, 10.2MB/s\nrequests: 10247 total, 10247 started, 10247 done, 10246 succeeded, 1 failed, 0 errored, 0 timeout\nstatus codes: 10246 2xx, 0 3xx, 1 4xx, 0 5xx\n";
        let log: String = (1..=100).map(|i| format!("1700000000000000\t200\t{i}\n")).collect();
        let run = parse_h2load(summary, &log).unwrap();
        assert_eq!(run.rps, 5123.45);
        assert_eq!((run.requests, run.non_2xx, run.errors), (10246, 1, 0));
        assert_eq!((run.p50_us, run.p99_us, run.p999_us), (50.0, 99.0, 100.0));
    }
}
