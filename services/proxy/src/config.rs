//! The proxy's configuration: flags or `KUBEGATE_*` variables, parsed once in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kubegate_config::{NatsArgs, Secret, ServerTlsArgs, TelemetryArgs, parse_duration};

/// kubegate proxy: the public origin. Serves the Kubernetes API of every environment with the
/// user's own identity, and passes the REST API and the web page to identity and kubeconfig.
#[derive(Parser, Debug, Clone)]
#[command(name = "kubegate-proxy", version, about)]
pub struct Config {
    /// HTTPS listen address (the public origin).
    #[arg(long, env = "KUBEGATE_PROXY_LISTEN", default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// The fleet's secret key (`AGE-SECRET-KEY-1…`): opens the sealed upstream credentials.
    #[arg(long = "fleet-key", env = "KUBEGATE_FLEET_KEY", hide_env_values = true)]
    pub fleet_key: Secret,
    /// Where the identity service's REST API is.
    #[arg(long = "identity-url", env = "KUBEGATE_IDENTITY_URL", default_value = "https://127.0.0.1:9441")]
    pub identity_url: String,
    /// Where the kubeconfig service's REST API and web page are.
    #[arg(
        long = "kubeconfig-url",
        env = "KUBEGATE_KUBECONFIG_URL",
        default_value = "https://127.0.0.1:9442"
    )]
    pub kubeconfig_url: String,
    /// CA that identity's and kubeconfig's certificates chain to.
    #[arg(long = "services-ca-file", env = "KUBEGATE_SERVICES_CA_FILE")]
    pub services_ca_file: Option<PathBuf>,
    /// This replica's name in audit records (default: host name and a random suffix).
    #[arg(long = "replica-id", env = "KUBEGATE_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Where audit records wait while NATS is away.
    #[arg(
        long = "audit-spool-dir",
        env = "KUBEGATE_AUDIT_SPOOL_DIR",
        default_value = "/var/lib/kubegate/spool"
    )]
    pub audit_spool_dir: PathBuf,
    /// Most bytes the audit spool may hold; beyond it the replica says so loudly (metric, log,
    /// readiness) and refuses new requests rather than lose records.
    #[arg(long = "audit-spool-max-bytes", env = "KUBEGATE_AUDIT_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    pub audit_spool_max_bytes: u64,
    /// How long KUBEGATE_AUDIT keeps records.
    #[arg(long = "audit-max-age", env = "KUBEGATE_AUDIT_MAX_AGE", default_value = "90d", value_parser = parse_duration)]
    pub audit_max_age: Duration,
    /// Most bytes KUBEGATE_AUDIT keeps (oldest go first); -1 for no limit.
    #[arg(long = "audit-max-bytes", env = "KUBEGATE_AUDIT_MAX_BYTES", default_value_t = -1, allow_hyphen_values = true)]
    pub audit_max_bytes: i64,
    /// Strict mode: refuse (503) once the cache may be older than this because NATS is away.
    /// Unset: keep serving from what the replica knows.
    #[arg(long = "max-staleness", env = "KUBEGATE_MAX_STALENESS", value_parser = parse_duration)]
    pub max_staleness: Option<Duration>,
    /// Start from the latest snapshots in KUBEGATE_SNAPSHOTS (identity's directory, kubeconfig's
    /// environments) and replay only the events after them; `false` replays both streams whole.
    #[arg(long = "cache-snapshots", env = "KUBEGATE_CACHE_SNAPSHOTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub cache_snapshots: bool,
    /// Simultaneous client connections.
    #[arg(long = "max-connections", env = "KUBEGATE_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,
    /// Threads serving the public listener (at most 1024), each with a single-threaded runtime
    /// of its own: a connection goes to the one serving the fewest, and it and everything it
    /// starts stay there. Default: one per CPU the process may use. 0 serves on one
    /// work-stealing runtime instead, where one connection's requests may run on every core
    /// (for a few clients multiplexing very many requests over one h2 connection each).
    #[arg(
        long = "serve-threads",
        env = "KUBEGATE_PROXY_SERVE_THREADS",
        value_parser = clap::value_parser!(u16).range(0..=1024)
    )]
    pub serve_threads: Option<u16>,
    /// How long a serving thread keeps polling its connections without blocking after a
    /// request arrived or was answered on it (at most 10ms). At light load this spares the
    /// two thread wake-ups per request that are most of the latency a hop adds, for some CPU
    /// while requests come; an idle replica does not poll. 0 turns it off.
    #[arg(long = "serve-spin", env = "KUBEGATE_PROXY_SERVE_SPIN", default_value = "250us", value_parser = parse_spin)]
    pub serve_spin: Duration,
    /// Concurrent watches of one user (a per-identity limit, 429 beyond it).
    #[arg(long = "max-watches-per-user", env = "KUBEGATE_MAX_WATCHES_PER_USER", default_value_t = 1000)]
    pub max_watches_per_user: usize,
    /// Largest request body accepted (streams and upgrades excepted).
    #[arg(long = "max-body-bytes", env = "KUBEGATE_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: u64,
    /// Time an upstream has to start answering an ordinary request (watches, logs -f and
    /// upgrades are exempt).
    #[arg(long = "request-timeout", env = "KUBEGATE_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long = "shutdown-grace", env = "KUBEGATE_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
}

fn parse_spin(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > Duration::from_millis(10) {
        return Err(format!("{s:?} is longer than the 10ms a serving thread may poll without blocking"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Config;

    fn parse(extra: &[&str]) -> Result<Config, clap::Error> {
        let mut args = vec!["kubegate-proxy", "--fleet-key", "AGE-SECRET-KEY-1TEST"];
        args.extend_from_slice(extra);
        Config::try_parse_from(args)
    }

    #[test]
    fn serve_spin_defaults_to_250us_and_is_bounded() {
        assert_eq!(parse(&[]).unwrap().serve_spin, std::time::Duration::from_micros(250));
        assert_eq!(parse(&["--serve-spin", "0s"]).unwrap().serve_spin, std::time::Duration::ZERO);
        assert_eq!(
            parse(&["--serve-spin", "10ms"]).unwrap().serve_spin,
            std::time::Duration::from_millis(10)
        );
        let err = parse(&["--serve-spin", "11ms"]).unwrap_err().to_string();
        assert!(err.contains("longer than the 10ms"), "{err}");
        assert!(parse(&["--serve-spin", "soon"]).is_err());
    }

    #[test]
    fn serve_threads_default_to_the_cpus_and_are_bounded() {
        assert_eq!(parse(&[]).unwrap().serve_threads, None);
        assert_eq!(parse(&["--serve-threads", "0"]).unwrap().serve_threads, Some(0));
        assert_eq!(parse(&["--serve-threads", "8"]).unwrap().serve_threads, Some(8));
        let err = parse(&["--serve-threads", "5000"]).unwrap_err().to_string();
        assert!(err.contains("5000 is not in 0..=1024"), "{err}");
        assert!(parse(&["--serve-threads", "many"]).is_err());
    }
}
