//! The kubeconfig service's configuration: flags or `KUBEGATE_*` variables, parsed once in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kubegate_config::{
    NatsArgs, Secret, ServerTlsArgs, SnapshotArgs, TelemetryArgs, TrustedProxyArgs, parse_duration,
};

/// kubegate kubeconfig service: environments, access policies and the kubeconfig download.
#[derive(Parser, Debug, Clone)]
#[command(name = "kubegate-kubeconfig", version, about)]
pub struct Config {
    /// HTTPS listen address of the REST API.
    #[arg(long, env = "KUBEGATE_KUBECONFIG_LISTEN", default_value = "127.0.0.1:9442")]
    pub listen: SocketAddr,
    /// PostgreSQL URL of the service's own event store (the database is created if missing).
    #[arg(
        long = "database-url",
        env = "KUBEGATE_KUBECONFIG_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/kubegate_kubeconfig"
    )]
    pub database_url: String,
    /// The proxy fleet's age public key (`age1…`); upstream credentials are sealed to it. Held as
    /// a `Secret` so that a secret key pasted here by mistake is never printed.
    #[arg(long = "fleet-public-key", env = "KUBEGATE_FLEET_PUBLIC_KEY", hide_env_values = true)]
    pub fleet_public_key: Secret,
    /// The public origin written into every kubeconfig as the clusters' server base. Never taken
    /// from a request's Host header.
    #[arg(long = "public-url", env = "KUBEGATE_PUBLIC_URL", default_value = "https://127.0.0.1:9443")]
    pub public_url: String,
    /// PEM of the CA that issued the public endpoint's certificate; written into every kubeconfig
    /// as `certificate-authority-data`.
    #[arg(long = "public-ca-file", env = "KUBEGATE_PUBLIC_CA_FILE")]
    pub public_ca_file: PathBuf,
    /// How long a download waits for the identity service to issue the token.
    #[arg(long = "token-request-timeout", env = "KUBEGATE_TOKEN_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub token_request_timeout: Duration,
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
