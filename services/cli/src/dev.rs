//! Local setup: the development PKI, keys and the admin password under `.kubegate/`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Subcommand;

use crate::CliError;

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Create (once) the development CA and certificates, the master key, the fleet key pair and
    /// the admin password in DIR. Existing files are kept.
    ///
    /// Example: kubegate dev init --dir .kubegate
    Init {
        #[arg(long, default_value = ".kubegate")]
        dir: PathBuf,
        /// Use this admin password instead of generating one (e.g. $KUBEGATE_ADMIN_PASSWORD).
        #[arg(long, env = "KUBEGATE_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum FleetKeyCommand {
    /// Print a new key pair: the secret key (for the proxies' KUBEGATE_FLEET_KEY) on the first
    /// line, the public key (for the kubeconfig service's KUBEGATE_FLEET_PUBLIC_KEY) on the second.
    ///
    /// Example: kubegate fleet-key generate > fleet-key && chmod 600 fleet-key
    Generate,
}

pub fn random_base64(n: usize) -> Result<String, CliError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| CliError::Failed(format!("no system randomness: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn write_secret(path: &Path, content: &str) -> Result<(), CliError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(content.as_bytes()).map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))
}

fn ensure(path: &Path, make: impl FnOnce() -> Result<String, CliError>) -> Result<bool, CliError> {
    if path.exists() {
        return Ok(false);
    }
    write_secret(path, &make()?)?;
    Ok(true)
}

pub fn run(command: DevCommand) -> Result<(), CliError> {
    match command {
        DevCommand::Init { dir, admin_password } => init(&dir, admin_password),
    }
}

pub fn init(dir: &Path, admin_password: Option<String>) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    kubegate_tls::DevPki::ensure(dir).map_err(|e| CliError::Failed(e.to_string()))?;
    ensure(&dir.join("master-key"), || random_base64(32))?;
    let fleet = dir.join("fleet-key");
    if !fleet.exists() {
        let (public, secret) = kubegate_seal::generate_fleet_key();
        write_secret(&fleet, &format!("{}\n", secret.to_secret_string().expose_secret()))?;
        std::fs::write(dir.join("fleet-key.pub"), format!("{public}\n"))
            .map_err(|e| CliError::Failed(format!("cannot write fleet-key.pub: {e}")))?;
    }
    let password_file = dir.join("admin-password");
    let created = ensure(&password_file, || match admin_password {
        Some(p) => Ok(p),
        None => Ok(random_base64(18)?.replace(['+', '/'], "x")),
    })?;
    if created {
        println!("admin password written to {}", password_file.display());
    }
    Ok(())
}

pub fn run_fleet_key(command: FleetKeyCommand) -> Result<(), CliError> {
    match command {
        FleetKeyCommand::Generate => {
            let (public, secret) = kubegate_seal::generate_fleet_key();
            println!("{}", secret.to_secret_string().expose_secret());
            println!("{public}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn init_creates_everything_once_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), None).unwrap();
        for f in ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "master-key", "fleet-key", "fleet-key.pub", "admin-password"] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        let before = std::fs::read_to_string(dir.path().join("fleet-key")).unwrap();
        let password = std::fs::read_to_string(dir.path().join("admin-password")).unwrap();
        assert!(password.len() >= 20);
        init(dir.path(), Some("ignored-now".into())).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("fleet-key")).unwrap(), before);
        assert_eq!(std::fs::read_to_string(dir.path().join("admin-password")).unwrap(), password);
        let public = std::fs::read_to_string(dir.path().join("fleet-key.pub")).unwrap();
        assert!(public.starts_with("age1"));
        assert!(kubegate_seal::FleetSecretKey::parse(before.trim()).is_ok());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join("master-key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
