//! `kubegate audit`: the timeline replayed from the event streams, written as it is merged.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use kubegate_audit::{AuditError, FilterSpec, Format, ReplayOptions, Stats};
use kubegate_bus::Bus;
use kubegate_config::NatsArgs;
use tokio_util::sync::CancellationToken;

use crate::CliError;

pub const AFTER_HELP: &str = "\
Examples:
  kubegate audit --since 1h --user alice --env prod
  kubegate audit --kind signin --decision denied --since 7d
  kubegate audit --correlation 0197a3c2e4b87d21a9c3f0e5d6b7a8c9
  kubegate audit --since 2025-06-01T00:00:00Z --format json > june.jsonl
  kubegate audit --kind request,session --follow

Records: sign-ins (good and bad), users, teams, settings, signing keys, kubeconfig tokens
issued and revoked (identity); environments, access policies, kubeconfig downloads
(kubeconfig); every request through the proxies, reads too, and exec/attach/port-forward
sessions. Oldest first; the table shows local time, JSON and CSV UTC. Each stream is in the
order it was recorded; the streams are merged by time. Reads NATS as the audit user
(KUBEGATE_NATS_USER=kubegate-audit with its password, or --nats-creds).";

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub filter: FilterSpec,
    /// How to print the records.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Keep printing new records as they happen, until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Connects to NATS as the command line (the audit user's reply inboxes unless told otherwise).
pub async fn connect(nats: &NatsArgs) -> Result<Bus, CliError> {
    let config = nats.to_config("kubegate-cli").with_service_inbox("audit");
    let bus = Bus::connect(&config).await.map_err(|e| CliError::Failed(e.to_string()))?;
    if !bus.wait_connected(Duration::from_secs(10)).await {
        return Err(CliError::Failed(format!(
            "cannot reach NATS at {} (check --nats-url and credentials)",
            config.url
        )));
    }
    Ok(bus)
}

fn progress_line(s: &Stats) -> String {
    let secs = s.elapsed.as_secs_f64().max(0.001);
    format!(
        "kubegate audit: {} records ({} read) in {:.1} s, {:.0}/s",
        s.rows,
        s.scanned,
        secs,
        s.rows as f64 / secs
    )
}

pub async fn run(args: AuditArgs) -> Result<(), CliError> {
    let bus = connect(&args.nats).await?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
    }
    // To a file or a pipe (not a person watching), a long replay says how far it is on stderr.
    let report = !std::io::stdout().is_terminal() && !args.follow;
    let progress: Option<kubegate_audit::Progress> =
        report.then(|| Box::new(|s: &Stats| eprintln!("{}", progress_line(s))) as kubegate_audit::Progress);
    let options = ReplayOptions {
        filter: args.filter,
        follow: args.follow,
        format: args.format,
        stop,
        progress,
        progress_every: 100_000,
    };
    match kubegate_audit::replay(&bus, options, std::io::stdout()).await {
        Ok(stats) => {
            if report && stats.rows >= 100_000 {
                eprintln!("{}", progress_line(&stats));
            }
            if stats.undecodable > 0 {
                eprintln!(
                    "kubegate audit: {} messages in the streams are not events this version can read (skipped)",
                    stats.undecodable
                );
            }
            Ok(())
        }
        Err(AuditError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(AuditError::Filter(e)) => Err(CliError::Usage(format!("--{}: {}", e.param, e.message))),
        Err(e) => Err(CliError::Failed(e.to_string())),
    }
}
