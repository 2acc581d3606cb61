//! The `kubegate` command line: local setup (`dev init`), key generation, the audit timeline and
//! the log-replay check (over NATS), and the operator's everyday jobs (over the REST API).

pub mod admin;
pub mod api;
pub mod audit;
pub mod dev;
pub mod verify;

use clap::{Parser, Subcommand};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 64,
            CliError::Failed(_) => 1,
        }
    }
}

/// kubegate's admin command line.
#[derive(Parser, Debug)]
#[command(
    name = "kubegate",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:\n  kubegate audit --since 1h --user alice --env prod\n  kubegate replay verify --identity-admin http://127.0.0.1:9541\n  kubegate users list --url https://127.0.0.1:9443 --ca .kubegate/ca.pem\n\nEvery command has --help with an example."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Who did what, where, when: one timeline of sign-ins, admin changes, kubeconfig downloads
    /// and every request through the proxies, replayed from the event streams.
    #[command(after_help = audit::AFTER_HELP)]
    Audit(audit::AuditArgs),
    /// Rebuild state from the event logs alone.
    #[command(
        subcommand,
        after_help = "Example:\n  kubegate replay verify --identity-admin http://127.0.0.1:9541 --kubeconfig-admin http://127.0.0.1:9542"
    )]
    Replay(verify::ReplayCommand),
    /// Users: list, create, change, delete.
    Users(admin::Users),
    /// Teams and their members.
    Teams(admin::Teams),
    /// Environments (clusters): list, register, change, remove.
    Environments(admin::Environments),
    /// Who may reach an environment, with which role and namespaces.
    Access(admin::Access),
    /// Settings (the kubeconfig expiry).
    Settings(admin::Settings),
    /// Kubeconfig tokens: list, revoke one, revoke all of a user's.
    Tokens(admin::Tokens),
    /// Local development helpers.
    #[command(subcommand, after_help = "Example:\n  kubegate dev init --dir .kubegate")]
    Dev(dev::DevCommand),
    /// The proxy fleet's key pair: upstream credentials are sealed to its public key.
    #[command(
        subcommand,
        name = "fleet-key",
        after_help = "Example:\n  kubegate fleet-key generate > fleet-key && chmod 600 fleet-key"
    )]
    FleetKey(dev::FleetKeyCommand),
    /// Print a fresh master key (base64 of 32 random bytes) for KUBEGATE_MASTER_KEY.
    #[command(
        name = "master-key",
        after_help = "Example:\n  kubegate master-key > master-key && chmod 600 master-key"
    )]
    MasterKey,
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the runtime: {e}")))
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Dev(c) => dev::run(c),
        Command::FleetKey(c) => dev::run_fleet_key(c),
        Command::MasterKey => {
            println!("{}", dev::random_base64(32)?);
            Ok(())
        }
        Command::Audit(args) => runtime()?.block_on(audit::run(args)),
        Command::Replay(verify::ReplayCommand::Verify(args)) => {
            if runtime()?.block_on(verify::run(args))? {
                Ok(())
            } else {
                Err(CliError::Failed("the services differ from the logs".into()))
            }
        }
        Command::Users(args) => runtime()?.block_on(admin::users(args)),
        Command::Teams(args) => runtime()?.block_on(admin::teams(args)),
        Command::Environments(args) => runtime()?.block_on(admin::environments(args)),
        Command::Access(args) => runtime()?.block_on(admin::access(args)),
        Command::Settings(args) => runtime()?.block_on(admin::settings(args)),
        Command::Tokens(args) => runtime()?.block_on(admin::tokens(args)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every command, group or leaf, shows an example in its --help.
    #[test]
    fn every_command_has_help_with_an_example() {
        fn walk(cmd: &mut clap::Command, path: String, missing: &mut Vec<String>) {
            let help = cmd.render_long_help().to_string();
            if !help.contains("Example") {
                missing.push(path.clone());
            }
            for sub in cmd.get_subcommands_mut().filter(|s| s.get_name() != "help") {
                let name = format!("{path} {}", sub.get_name());
                walk(sub, name, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&mut cmd, "kubegate".into(), &mut missing);
        assert!(missing.is_empty(), "no example in the help of: {missing:?}");
    }

    #[test]
    fn the_audit_flags_parse() {
        let cli = Cli::try_parse_from([
            "kubegate",
            "audit",
            "--since",
            "1h",
            "--user",
            "alice",
            "--env",
            "2",
            "--namespace",
            "dev",
            "--kind",
            "request,session",
            "--decision",
            "denied",
            "--format",
            "csv",
            "--follow",
            "--correlation",
            "abc",
            "--nats-url",
            "nats://127.0.0.1:1",
        ])
        .unwrap();
        let Command::Audit(a) = cli.command else { panic!("not audit") };
        assert_eq!(a.filter.since.as_deref(), Some("1h"));
        assert_eq!(a.filter.env.as_deref(), Some("2"));
        assert_eq!(a.filter.kind.as_deref(), Some("request,session"));
        assert_eq!(a.format, kubegate_audit::Format::Csv);
        assert!(a.follow);
        assert_eq!(a.nats.nats_url, "nats://127.0.0.1:1");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let cli = Cli::try_parse_from(["kubegate", "users", "list", "--password", "hunter2-secret"]).unwrap();
        assert!(!format!("{cli:?}").contains("hunter2-secret"));
    }
}
