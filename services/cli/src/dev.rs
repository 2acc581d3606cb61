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
    /// Register the local stand-in API server as the environment "demo" (once), signing in as
    /// admin through the public origin.
    ///
    /// Example: kubegate dev register-demo --url https://127.0.0.1:9443 --ca .kubegate/ca.pem \
    ///   --password-file .kubegate/admin-password --kube-sim-dir .kubegate/kube-sim
    RegisterDemo {
        #[arg(long)]
        url: String,
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        password_file: PathBuf,
        #[arg(long)]
        kube_sim_dir: PathBuf,
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        kube_sim_url: String,
        #[arg(long, default_value = "demo")]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum FleetKeyCommand {
    /// Print a new key pair in age-keygen's format: a `# public key: age1…` line (for the
    /// kubeconfig service's KUBEGATE_FLEET_PUBLIC_KEY), then the `AGE-SECRET-KEY-1…` line (for the
    /// proxies' KUBEGATE_FLEET_KEY).
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
    f.write_all(content.as_bytes())
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))
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
        DevCommand::RegisterDemo { url, ca, password_file, kube_sim_dir, kube_sim_url, name } => {
            let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Failed(e.to_string()))?;
            runtime.block_on(register_demo(&url, &ca, &password_file, &kube_sim_dir, &kube_sim_url, &name))
        }
    }
}

pub fn init(dir: &Path, admin_password: Option<String>) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;
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
            println!("# public key: {public}");
            println!("{}", secret.to_secret_string().expose_secret());
            Ok(())
        }
    }
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", path.display())))
}

async fn register_demo(
    url: &str,
    ca: &Path,
    password_file: &Path,
    kube_sim_dir: &Path,
    kube_sim_url: &str,
    name: &str,
) -> Result<(), CliError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| CliError::Failed(format!("{what}: {e}"));
    let tls = kubegate_tls::client_config(&read(ca)?, None, &[]).map_err(|e| fail("CA", &e))?;
    let client =
        reqwest::Client::builder().use_preconfigured_tls(tls).build().map_err(|e| fail("client", &e))?;
    let password = read(password_file)?.trim().to_string();
    let resp = client
        .post(format!("{url}/api/auth"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .map_err(|e| fail("sign in", &e))?;
    if !resp.status().is_success() {
        return Err(CliError::Failed(format!("sign in as admin failed: {}", resp.status())));
    }
    let jwt = resp.json::<serde_json::Value>().await.map_err(|e| fail("sign in", &e))?["jwt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let existing: serde_json::Value = client
        .get(format!("{url}/api/endpoints"))
        .bearer_auth(&jwt)
        .send()
        .await
        .map_err(|e| fail("list environments", &e))?
        .json()
        .await
        .map_err(|e| fail("list environments", &e))?;
    let body = serde_json::json!({
        "name": name,
        "url": kube_sim_url,
        "caCert": read(&kube_sim_dir.join("ca.pem"))?,
        "token": read(&kube_sim_dir.join("kubegate.token"))?.trim(),
    });
    // kube-sim makes a new CA and token each time it starts: an environment registered by an
    // earlier start is brought up to date rather than left pointing at credentials now gone.
    let known =
        existing.as_array().and_then(|a| a.iter().find(|e| e["name"] == name)).and_then(|e| e["id"].as_u64());
    let request = match known {
        Some(id) => client.put(format!("{url}/api/endpoints/{id}")),
        None => client.post(format!("{url}/api/endpoints")),
    };
    let resp = request.bearer_auth(&jwt).json(&body).send().await.map_err(|e| fail("register", &e))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(CliError::Failed(format!("registering {name} failed ({status}): {text}")));
    }
    match known {
        Some(id) => println!("updated environment {name} ({id}) to kube-sim's current CA and token"),
        None => println!("registered environment {name}: {text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn init_creates_everything_once_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), None).unwrap();
        for f in [
            "ca.pem",
            "ca-key.pem",
            "server.pem",
            "server-key.pem",
            "master-key",
            "fleet-key",
            "fleet-key.pub",
            "admin-password",
        ] {
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
        assert_eq!(
            std::fs::metadata(dir.path().join("master-key")).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
