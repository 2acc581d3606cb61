//! The REST API as the admin commands use it: sign in once (a password from `KUBEGATE_PASSWORD`,
//! a file or a prompt; or a session token from `KUBEGATE_TOKEN`), then JSON calls whose errors
//! carry the server's own message.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use kubegate_config::Secret;
use serde_json::{Value, json};

use crate::CliError;

/// Where kubegate is and who signs in.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// kubegate's public origin.
    #[arg(long, env = "KUBEGATE_URL", default_value = "https://127.0.0.1:9443", global = true)]
    pub url: String,
    /// CA certificate (PEM) the origin's certificate chains to; default: the system's roots.
    #[arg(long, env = "KUBEGATE_CA", global = true, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Sign in as this user.
    #[arg(long, env = "KUBEGATE_USER", default_value = "admin", global = true)]
    pub username: String,
    /// A file holding the password (otherwise KUBEGATE_PASSWORD, otherwise a prompt).
    #[arg(long = "password-file", env = "KUBEGATE_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The password (set KUBEGATE_PASSWORD rather than this flag: flags show in `ps`).
    #[arg(long = "password", env = "KUBEGATE_PASSWORD", hide = true, hide_env_values = true, global = true)]
    pub password: Option<Secret>,
    /// A session token to use instead of signing in.
    #[arg(long = "token", env = "KUBEGATE_TOKEN", hide = true, hide_env_values = true, global = true)]
    pub token: Option<Secret>,
    /// Print JSON instead of a table.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

fn fail(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Failed(format!("{what}: {e}"))
}

/// A signed-in connection to the REST API.
pub struct Api {
    client: reqwest::Client,
    url: String,
    token: Secret,
    pub output: Output,
}

/// A password read from the terminal without echo.
pub fn prompt_secret(label: &str) -> Result<Secret, CliError> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let no_terminal = || CliError::Usage("no terminal to ask for a password on".into());
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal());
    }
    let mut tty =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(|_| no_terminal())?;
    let original = tcgetattr(&tty).map_err(|_| no_terminal())?;
    let mut silent = original.clone();
    silent.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&tty, OptionalActions::Now, &silent).map_err(|_| no_terminal())?;
    let _ = write!(tty, "{label}: ");
    let _ = tty.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, OptionalActions::Now, &original);
    let _ = writeln!(tty);
    read.map_err(|e| fail("reading the password", e))?;
    Ok(Secret::new(line.trim_end_matches(['\r', '\n'])))
}

fn read_secret_file(path: &PathBuf) -> Result<Secret, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(&format!("cannot read {}", path.display()), e))?;
    Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
}

fn client(args: &ApiArgs) -> Result<reqwest::Client, CliError> {
    kubegate_tls::install_crypto_provider();
    let tls = match &args.ca {
        Some(ca) => {
            let pem =
                std::fs::read_to_string(ca).map_err(|e| fail(&format!("cannot read {}", ca.display()), e))?;
            kubegate_tls::client_config(&pem, None, &[b"h2", b"http/1.1"]).map_err(|e| fail("--ca", e))?
        }
        None => {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let mut config =
                rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            config
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| fail("HTTP client", e))
}

/// The `message` of a JSON error answer, or the start of the body.
fn server_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| text.chars().take(300).collect())
}

impl Api {
    /// Signs in (or takes the session token given).
    pub async fn connect(args: &ApiArgs) -> Result<Api, CliError> {
        let client = client(args)?;
        let url = args.url.trim_end_matches('/').to_string();
        let token = match &args.token {
            Some(token) => token.clone(),
            None => {
                let password = match (&args.password, &args.password_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(file)) => read_secret_file(file)?,
                    (None, None) => prompt_secret(&format!("Password for {} at {url}", args.username)).map_err(|_| {
                        CliError::Usage(
                            "no password: set KUBEGATE_PASSWORD, give --password-file, or set KUBEGATE_TOKEN".into(),
                        )
                    })?,
                };
                let resp = client
                    .post(format!("{url}/api/auth"))
                    .json(&json!({"username": args.username, "password": password.expose()}))
                    .send()
                    .await
                    .map_err(|e| fail(&format!("cannot reach {url}"), e))?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(CliError::Failed(format!(
                        "sign in as {} failed ({}): {}",
                        args.username,
                        status.as_u16(),
                        server_message(&text)
                    )));
                }
                let jwt = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["jwt"].as_str().map(str::to_string))
                    .ok_or_else(|| CliError::Failed("sign in: the answer holds no token".into()))?;
                Secret::new(jwt)
            }
        };
        Ok(Api { client, url, token, output: args.output })
    }

    /// One call; JSON in and out (`Null` for an empty answer). Errors carry the server's message.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let m: reqwest::Method = method.parse().map_err(|e| fail("method", e))?;
        let mut req = self.client.request(m, format!("{}{path}", self.url)).bearer_auth(self.token.expose());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| fail(&format!("cannot reach {}", self.url), e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| fail(&format!("{method} {path}"), e))?;
        if !status.is_success() {
            return Err(CliError::Failed(format!(
                "{method} {path}: {} {}",
                status.as_u16(),
                server_message(&text)
            )));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| fail(&format!("{method} {path}: the answer is not JSON"), e))
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call("GET", path, None).await
    }
}
