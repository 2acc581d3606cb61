//! Identity's configuration: flags or `KUBEGATE_*` variables, parsed once in `main`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use kubegate_config::{
    NatsArgs, Secret, ServerTlsArgs, SnapshotArgs, TelemetryArgs, TrustedProxyArgs, parse_duration,
};

/// kubegate identity service: users, teams, settings, signing keys and tokens.
#[derive(Parser, Debug, Clone)]
#[command(name = "kubegate-identity", version, about)]
pub struct Config {
    /// HTTPS listen address of the REST API.
    #[arg(long, env = "KUBEGATE_IDENTITY_LISTEN", default_value = "127.0.0.1:9441")]
    pub listen: SocketAddr,
    /// PostgreSQL URL of identity's own event store (the database is created if missing).
    #[arg(
        long = "database-url",
        env = "KUBEGATE_IDENTITY_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/kubegate_identity"
    )]
    pub database_url: String,
    /// Base64 of 32 random bytes; seals password hashes and signing keys at rest.
    #[arg(long = "master-key", env = "KUBEGATE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Secret,
    /// Password of the `admin` user created on first start (required then, ignored after).
    #[arg(long = "admin-password", env = "KUBEGATE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,
    /// Lifetime of session tokens.
    #[arg(long = "session-ttl", env = "KUBEGATE_SESSION_TTL", default_value = "8h", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// Failed sign-ins per user name within the throttle window before refusing.
    #[arg(
        long = "signin-max-failures-per-user",
        env = "KUBEGATE_SIGNIN_MAX_FAILURES_PER_USER",
        default_value_t = 5
    )]
    pub signin_max_failures_per_user: u32,
    /// Failed sign-ins per client address within the throttle window before refusing.
    #[arg(
        long = "signin-max-failures-per-address",
        env = "KUBEGATE_SIGNIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 20
    )]
    pub signin_max_failures_per_address: u32,
    /// Length of the sign-in throttle window.
    #[arg(long = "signin-throttle-window", env = "KUBEGATE_SIGNIN_THROTTLE_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub signin_throttle_window: Duration,
    /// How long to wait for PostgreSQL at start.
    #[arg(long = "database-wait", env = "KUBEGATE_DATABASE_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub database_wait: Duration,
    #[command(flatten)]
    pub snapshots: SnapshotArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    #[command(flatten)]
    pub trusted: TrustedProxyArgs,
}
