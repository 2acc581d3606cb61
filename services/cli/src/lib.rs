//! The `kubegate` command line: local setup (`dev init`), key generation, and (over NATS and the
//! REST API) the operator's everyday jobs.

pub mod dev;

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
#[command(name = "kubegate", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Local development helpers.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// The proxy fleet's key pair: upstream credentials are sealed to its public key.
    #[command(subcommand, name = "fleet-key")]
    FleetKey(dev::FleetKeyCommand),
    /// Print a fresh master key (base64 of 32 random bytes) for KUBEGATE_MASTER_KEY.
    ///
    /// Example: kubegate master-key > master-key && chmod 600 master-key
    #[command(name = "master-key")]
    MasterKey,
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Dev(c) => dev::run(c),
        Command::FleetKey(c) => dev::run_fleet_key(c),
        Command::MasterKey => {
            println!("{}", dev::random_base64(32)?);
            Ok(())
        }
    }
}
