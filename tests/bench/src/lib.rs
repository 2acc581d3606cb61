//! kubegate's benchmarks, side by side: kube-sim reached directly, through kubegate (token
//! check, authorization, impersonation and audit on), and through nginx doing the same
//! TLS-in/TLS-out job without any of that. One run measures everything and writes
//! `bench/report.md` and `bench/results.json`; a [`Plan::smoke`] run does the same in seconds
//! (part of `make test`, so the benchmarks cannot rot).
//!
//! Load comes from public tools (`wrk`, `h2load`); micro-benchmarks use criterion
//! (`services/proxy/benches/hot_path.rs`). Every process started here is stopped on the way out.
#![allow(clippy::expect_used)]

pub mod load;
pub mod machine;
pub mod nginx;
pub mod report;
pub mod scenarios;
pub mod stack;
pub mod stats;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::Proto;

/// How much of everything to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: &'static str,
    /// Each load figure is the median of this many runs.
    pub runs: usize,
    #[serde(serialize_with = "secs")]
    pub load_duration: Duration,
    /// One short unmeasured run per target and protocol first.
    pub warm_up: bool,
    pub connections: Vec<usize>,
    pub protos: Vec<Proto>,
    pub revocations: usize,
    pub cold: ColdPlan,
    pub watches: usize,
    pub watch_connections: usize,
    pub watch_events: usize,
    pub downloads: usize,
    pub download_runs: usize,
    pub download_concurrency: usize,
    pub audit_records: usize,
    pub audit_runs: usize,
    pub micro: MicroPlan,
    /// Settings given to the services on top of their defaults (`--env`); printed in the report.
    pub service_env: Vec<ServiceEnv>,
}

/// A kubegate service the bench starts; serialized as [`ServiceName::as_str`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceName {
    Identity,
    Kubeconfig,
    Proxy,
}

impl ServiceName {
    pub const ALL: [ServiceName; 3] = [ServiceName::Identity, ServiceName::Kubeconfig, ServiceName::Proxy];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Identity => "identity",
            ServiceName::Kubeconfig => "kubeconfig",
            ServiceName::Proxy => "proxy",
        }
    }
}

impl Serialize for ServiceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One environment variable set on one service for the whole run, e.g.
/// `--env proxy:KUBEGATE_PROXY_SERVE_SPIN=0s` (every replica of that service gets it). The
/// settings the stack wires itself (listeners, URLs, keys, databases) cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEnv {
    pub service: ServiceName,
    pub name: String,
    pub value: String,
}

impl std::str::FromStr for ServiceEnv {
    type Err = String;

    fn from_str(s: &str) -> Result<ServiceEnv, String> {
        const FORM: &str = "give SERVICE:NAME=VALUE, e.g. proxy:KUBEGATE_PROXY_SERVE_SPIN=0s";
        let (service, setting) = s.split_once(':').ok_or_else(|| format!("{s:?}: {FORM}"))?;
        let (name, value) = setting.split_once('=').ok_or_else(|| format!("{s:?}: {FORM}"))?;
        let Some(service) = ServiceName::ALL.into_iter().find(|s| s.as_str() == service) else {
            let names: Vec<&str> = ServiceName::ALL.iter().map(|s| s.as_str()).collect();
            return Err(format!("unknown service {service:?}: one of {}", names.join(", ")));
        };
        let well_formed = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !well_formed {
            return Err(format!("{name:?} is not a variable name (upper-case letters, digits and _)"));
        }
        Ok(ServiceEnv { service, name: name.to_string(), value: value.to_string() })
    }
}

impl std::fmt::Display for ServiceEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}={}", self.service.as_str(), self.name, self.value)
    }
}

/// The `(name, value)` pairs of `settings` meant for `service`.
pub fn env_for(settings: &[ServiceEnv], service: ServiceName) -> Vec<(String, String)> {
    settings.iter().filter(|e| e.service == service).map(|e| (e.name.clone(), e.value.clone())).collect()
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The synthetic history a cold-starting replica replays.
#[derive(Debug, Clone, Serialize)]
pub struct ColdPlan {
    pub users: usize,
    pub environments: usize,
    pub tokens: usize,
    pub revocations: usize,
    pub starts: usize,
}

/// Criterion's settings (seconds), and whether to build in release (`cargo bench`) or debug.
#[derive(Debug, Clone, Serialize)]
pub struct MicroPlan {
    pub enabled: bool,
    pub release: bool,
    pub warm_up_s: f64,
    pub measurement_s: f64,
    pub sample_size: usize,
}

impl Plan {
    /// The whole benchmark (well under 20 minutes on 2 cores once built).
    pub fn full() -> Plan {
        Plan {
            name: "full",
            runs: 3,
            load_duration: Duration::from_secs(2),
            warm_up: true,
            connections: vec![1, 16, 64],
            protos: vec![Proto::H1, Proto::H2],
            revocations: 1000,
            cold: ColdPlan {
                users: 10_000,
                environments: 100,
                tokens: 1_000_000,
                revocations: 100_000,
                starts: 3,
            },
            watches: 10_000,
            watch_connections: 40,
            watch_events: 5,
            downloads: 1000,
            download_runs: 3,
            download_concurrency: 16,
            audit_records: 1_000_000,
            audit_runs: 3,
            micro: MicroPlan {
                enabled: true,
                release: true,
                warm_up_s: 1.0,
                measurement_s: 2.0,
                sample_size: 50,
            },
            service_env: Vec::new(),
        }
    }

    /// Every scenario in a tiny configuration: checks that each produces numbers, in seconds.
    pub fn smoke() -> Plan {
        Plan {
            name: "smoke",
            runs: 1,
            load_duration: Duration::from_secs(1),
            warm_up: false,
            connections: vec![2],
            protos: vec![Proto::H1, Proto::H2],
            revocations: 5,
            cold: ColdPlan { users: 20, environments: 3, tokens: 500, revocations: 50, starts: 1 },
            watches: 20,
            watch_connections: 2,
            watch_events: 2,
            downloads: 10,
            download_runs: 1,
            download_concurrency: 4,
            audit_records: 500,
            audit_runs: 1,
            micro: MicroPlan {
                enabled: true,
                release: false,
                warm_up_s: 0.01,
                measurement_s: 0.05,
                sample_size: 10,
            },
            service_env: Vec::new(),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub plan: Plan,
    pub machine: machine::Machine,
    pub started_at: String,
    pub duration_s: f64,
    pub micro: Option<scenarios::micro::MicroResult>,
    pub throughput: Option<scenarios::throughput::ThroughputResult>,
    pub downloads: Option<scenarios::downloads::DownloadResult>,
    pub revocation: Option<scenarios::revocation::RevocationResult>,
    pub watch: Option<scenarios::watch::WatchResult>,
    pub cold_start: Option<scenarios::cold::ColdResult>,
    pub audit: Option<scenarios::cold::AuditResult>,
    /// Scenarios that failed, with why (a failed scenario leaves the others running).
    pub failures: Vec<(String, String)>,
}

/// The workspace root (the bench crate sits at `tests/bench`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Prints progress to stderr with the time since start.
pub fn say(start: Instant, what: impl std::fmt::Display) {
    eprintln!("[{:>6.1}s] {what}", start.elapsed().as_secs_f64());
}

/// Runs `plan`: micro-benchmarks first (quiet machine), then the stack scenarios, then the
/// cold-start and audit-replay scenarios on their own nats-server. `only` limits the scenarios
/// by name (empty: all).
pub async fn run(plan: Plan, only: &[String]) -> Results {
    let start = Instant::now();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let work = tempfile::tempdir().expect("temporary directory");
    let mut results = Results {
        plan: plan.clone(),
        machine: machine::Machine::describe(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_s: 0.0,
        micro: None,
        throughput: None,
        downloads: None,
        revocation: None,
        watch: None,
        cold_start: None,
        audit: None,
        failures: Vec::new(),
    };
    let fail = |results: &mut Results, name: &str, e: String| {
        say(start, format!("{name} FAILED: {e}"));
        results.failures.push((name.to_string(), e));
    };

    if plan.micro.enabled && want("micro") {
        say(start, "micro-benchmarks (criterion)");
        match scenarios::micro::run(&plan.micro, work.path()) {
            Ok(r) => results.micro = Some(r),
            Err(e) => fail(&mut results, "micro", e),
        }
    }

    let stack_scenarios = ["throughput", "downloads", "revocation", "watch"];
    if stack_scenarios.iter().any(|s| want(s)) {
        say(
            start,
            "starting the stack (nats, PostgreSQL, identity, kubeconfig, 2 proxies, HAProxy, kube-sim)",
        );
        let bench = stack::BenchStack::start(&plan.service_env).await;
        say(start, "stack ready");
        if want("throughput") {
            match load::Tools::find(work.path()) {
                Ok(tools) => {
                    results.machine.tools = tools.versions();
                    match scenarios::throughput::run(&plan, &bench, &tools, work.path(), start).await {
                        Ok(r) => results.throughput = Some(r),
                        Err(e) => fail(&mut results, "throughput", e),
                    }
                }
                Err(e) => fail(&mut results, "throughput", e),
            }
        }
        let mut minted = Vec::new();
        if want("downloads") || want("revocation") {
            say(start, "kubeconfig downloads");
            match scenarios::downloads::run(&plan, &bench).await {
                Ok((r, tokens)) => {
                    results.downloads = Some(r);
                    minted = tokens;
                }
                Err(e) => fail(&mut results, "downloads", e),
            }
        }
        if want("revocation") {
            say(start, "revocation propagation");
            match scenarios::revocation::run(&plan, &bench, minted).await {
                Ok(r) => results.revocation = Some(r),
                Err(e) => fail(&mut results, "revocation", e),
            }
        }
        if want("watch") {
            say(start, format!("watch fan-out: {} watches", plan.watches));
            match scenarios::watch::run(&plan, &bench, start).await {
                Ok(r) => results.watch = Some(r),
                Err(e) => fail(&mut results, "watch", e),
            }
        }
        say(start, "stopping the stack");
        drop(bench);
    }

    if want("cold") || want("audit") {
        match scenarios::cold::run(&plan, want("cold"), want("audit"), start).await {
            Ok((cold, audit)) => {
                results.cold_start = cold;
                results.audit = audit;
            }
            Err(e) => fail(&mut results, "cold", e),
        }
    }
    results.duration_s = start.elapsed().as_secs_f64();
    say(start, "done");
    results
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_setting_names_its_service_variable_and_value() {
        let s: ServiceEnv = "proxy:KUBEGATE_PROXY_SERVE_SPIN=0s".parse().unwrap();
        assert_eq!(
            s,
            ServiceEnv {
                service: ServiceName::Proxy,
                name: "KUBEGATE_PROXY_SERVE_SPIN".into(),
                value: "0s".into()
            }
        );
        assert_eq!(s.to_string(), "proxy:KUBEGATE_PROXY_SERVE_SPIN=0s");
        // The value is everything after the first `=`, and may be empty.
        let s: ServiceEnv = "identity:KUBEGATE_X=a=b:c".parse().unwrap();
        assert_eq!((s.service, s.value.as_str()), (ServiceName::Identity, "a=b:c"));
        assert_eq!("kubeconfig:TOKIO_WORKER_THREADS=".parse::<ServiceEnv>().unwrap().value, "");
    }

    #[test]
    fn results_name_a_setting_s_service_as_the_command_line_does() {
        for service in ServiceName::ALL {
            let s: ServiceEnv = format!("{}:A=1", service.as_str()).parse().unwrap();
            assert_eq!(
                serde_json::to_value(&s).unwrap(),
                serde_json::json!({ "service": service.as_str(), "name": "A", "value": "1" })
            );
        }
    }

    #[test]
    fn malformed_settings_are_refused_with_the_form() {
        for (bad, says) in [
            ("KUBEGATE_PROXY_SERVE_SPIN=0s", "give SERVICE:NAME=VALUE"),
            ("proxy:KUBEGATE_PROXY_SERVE_SPIN", "give SERVICE:NAME=VALUE"),
            ("nginx:WORKERS=1", "unknown service \"nginx\""),
            ("proxy:=1", "is not a variable name"),
            ("proxy:kubegate_log=debug", "is not a variable name"),
            ("proxy:1ABC=1", "is not a variable name"),
            ("proxy:A B=1", "is not a variable name"),
        ] {
            let err = bad.parse::<ServiceEnv>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn each_service_gets_only_its_own_settings() {
        let settings: Vec<ServiceEnv> =
            ["proxy:A=1", "identity:B=2", "proxy:C=3"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(
            env_for(&settings, ServiceName::Proxy),
            vec![("A".to_string(), "1".to_string()), ("C".to_string(), "3".to_string())]
        );
        assert_eq!(env_for(&settings, ServiceName::Identity), vec![("B".to_string(), "2".to_string())]);
        assert!(env_for(&settings, ServiceName::Kubeconfig).is_empty());
    }
}
