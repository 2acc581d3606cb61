//! The operator's everyday jobs over the REST API, so nobody needs curl: users, teams,
//! environments, access policies, settings and kubeconfig tokens. Users, teams and environments
//! are named by name (any letter case) or id.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use kubegate_config::Secret;
use serde_json::{Value, json};

use crate::CliError;
use crate::api::{Api, ApiArgs, Output, prompt_secret};

fn read_file(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", path.display())))
}

/// Prints a table: a header and rows of cells, columns as wide as their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_control() { '?' } else { c }).collect::<String>();
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let _ = write!(l, "{c}");
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, header.to_vec());
    for r in &rows {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}

fn show(api: &Api, value: &Value, header: &[&str], rows: impl FnOnce(&Value) -> Vec<Vec<String>>) {
    match api.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Table => print!("{}", table(header, rows(value))),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The id of the item of `list` (from `path`) whose `field` is `name` (any letter case), or
/// `name` as an id.
async fn find(api: &Api, path: &str, field: &str, what: &str, name: &str) -> Result<u64, CliError> {
    let list = api.get(path).await?;
    let found = items(&list)
        .find(|i| i[field].as_str().is_some_and(|n| n.to_lowercase() == name.to_lowercase()))
        .and_then(|i| i["id"].as_u64());
    match found
        .or_else(|| name.parse::<u64>().ok().filter(|id| items(&list).any(|i| i["id"].as_u64() == Some(*id))))
    {
        Some(id) => Ok(id),
        None => Err(CliError::Failed(format!("no {what} named {name:?}"))),
    }
}

async fn user_id(api: &Api, name: &str) -> Result<u64, CliError> {
    find(api, "/api/users", "username", "user", name).await
}

async fn team_id(api: &Api, name: &str) -> Result<u64, CliError> {
    find(api, "/api/teams", "name", "team", name).await
}

async fn environment_id(api: &Api, name: &str) -> Result<u64, CliError> {
    find(api, "/api/endpoints", "name", "environment", name).await
}

/// id → name of every user (or team), for tables.
async fn names(
    api: &Api,
    path: &str,
    field: &str,
) -> Result<std::collections::HashMap<u64, String>, CliError> {
    let list = api.get(path).await?;
    Ok(items(&list).filter_map(|i| Some((i["id"].as_u64()?, i[field].as_str()?.to_string()))).collect())
}

fn label(names: &std::collections::HashMap<u64, String>, id: &Value) -> String {
    id.as_u64().and_then(|i| names.get(&i).cloned()).unwrap_or_else(|| format!("#{}", text(id)))
}

/// A new password: from a file, KUBEGATE_NEW_PASSWORD, or asked twice.
fn new_password(file: &Option<PathBuf>, given: &Option<Secret>) -> Result<Secret, CliError> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    if let Some(f) = file {
        return Ok(Secret::new(read_file(f)?.trim_end_matches(['\r', '\n'])));
    }
    let first = prompt_secret("New password").map_err(|_| {
        CliError::Usage("no password: give --new-password-file or set KUBEGATE_NEW_PASSWORD".into())
    })?;
    let again = prompt_secret("Again")?;
    if first != again {
        return Err(CliError::Usage("the passwords differ".into()));
    }
    Ok(first)
}

#[derive(Args, Debug, Clone)]
pub struct NewPassword {
    /// A file holding the new password (otherwise KUBEGATE_NEW_PASSWORD, otherwise a prompt).
    #[arg(long = "new-password-file", value_name = "FILE")]
    file: Option<PathBuf>,
    #[arg(long = "new-password", env = "KUBEGATE_NEW_PASSWORD", hide = true, hide_env_values = true)]
    given: Option<Secret>,
}

// ---------------------------------------------------------------------------------------- users

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kubegate users list\n  KUBEGATE_NEW_PASSWORD=... kubegate users create alice --role user\n  kubegate users update alice --disable"
)]
pub struct Users {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// List users: id, name, role, disabled, teams.
    #[command(after_help = "Example:\n  kubegate users list --url https://kubegate.example:9443 --ca ca.pem")]
    List,
    /// Create a user (its password from --new-password-file, KUBEGATE_NEW_PASSWORD or a prompt).
    #[command(
        after_help = "Example:\n  kubegate users create alice --role user --new-password-file alice.pw"
    )]
    Create {
        name: String,
        #[arg(long, default_value = "user", value_parser = ["user", "admin"])]
        role: String,
        #[command(flatten)]
        password: NewPassword,
    },
    /// Change a user's role, enable or disable them, or set a new password. Each change also
    /// revokes the user's kubeconfig tokens issued before it.
    #[command(
        after_help = "Examples:\n  kubegate users update alice --role admin\n  kubegate users update bob --disable\n  kubegate users update bob --reset-password --new-password-file bob.pw"
    )]
    Update {
        user: String,
        #[arg(long, value_parser = ["user", "admin"])]
        role: Option<String>,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// Set a new password.
        #[arg(long = "reset-password")]
        reset_password: bool,
        #[command(flatten)]
        password: NewPassword,
    },
    /// Delete a user (their tokens stop working at once).
    #[command(after_help = "Example:\n  kubegate users delete bob")]
    Delete { user: String },
}

pub async fn users(args: Users) -> Result<(), CliError> {
    let api = Api::connect(&args.api).await?;
    match args.command {
        UsersCommand::List => {
            let users = api.get("/api/users").await?;
            let teams = names(&api, "/api/teams", "name").await?;
            show(&api, &users, &["ID", "USERNAME", "ROLE", "DISABLED", "TEAMS", "CREATED"], |v| {
                items(v)
                    .map(|u| {
                        let t: Vec<String> = items(&u["teamIds"]).map(|id| label(&teams, id)).collect();
                        vec![
                            text(&u["id"]),
                            text(&u["username"]),
                            text(&u["role"]),
                            text(&u["disabled"]),
                            if t.is_empty() { "-".into() } else { t.join(",") },
                            text(&u["createdAt"]),
                        ]
                    })
                    .collect()
            });
        }
        UsersCommand::Create { name, role, password } => {
            let password = new_password(&password.file, &password.given)?;
            let created = api
                .call(
                    "POST",
                    "/api/users",
                    Some(json!({"username": name, "password": password.expose(), "role": role})),
                )
                .await?;
            println!("created user {name} (id {})", text(&created["id"]));
        }
        UsersCommand::Update { user, role, disable, enable, reset_password, password } => {
            let id = user_id(&api, &user).await?;
            let mut body = serde_json::Map::new();
            if let Some(r) = role {
                body.insert("role".into(), json!(r));
            }
            if disable || enable {
                body.insert("disabled".into(), json!(disable));
            }
            if reset_password || password.file.is_some() || password.given.is_some() {
                body.insert(
                    "password".into(),
                    json!(new_password(&password.file, &password.given)?.expose()),
                );
            }
            if body.is_empty() {
                return Err(CliError::Usage(
                    "nothing to change: give --role, --disable, --enable or --reset-password".into(),
                ));
            }
            let updated = api.call("PUT", &format!("/api/users/{id}"), Some(Value::Object(body))).await?;
            println!(
                "updated user {} (role {}, {})",
                text(&updated["username"]),
                text(&updated["role"]),
                if updated["disabled"] == json!(true) { "disabled" } else { "enabled" }
            );
        }
        UsersCommand::Delete { user } => {
            let id = user_id(&api, &user).await?;
            api.call("DELETE", &format!("/api/users/{id}"), None).await?;
            println!("deleted user {user}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------- teams

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kubegate teams create ops\n  kubegate teams add-member ops alice\n  kubegate teams list"
)]
pub struct Teams {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: TeamsCommand,
}

#[derive(Subcommand, Debug)]
pub enum TeamsCommand {
    /// List teams and their members.
    #[command(after_help = "Example:\n  kubegate teams list -o json")]
    List,
    /// Create a team.
    #[command(after_help = "Example:\n  kubegate teams create ops")]
    Create { name: String },
    /// Add a user to a team.
    #[command(name = "add-member", after_help = "Example:\n  kubegate teams add-member ops alice")]
    AddMember { team: String, user: String },
    /// Remove a user from a team.
    #[command(name = "remove-member", after_help = "Example:\n  kubegate teams remove-member ops alice")]
    RemoveMember { team: String, user: String },
    /// Delete a team (its entries in access policies stop giving anything).
    #[command(after_help = "Example:\n  kubegate teams delete ops")]
    Delete { team: String },
}

pub async fn teams(args: Teams) -> Result<(), CliError> {
    let api = Api::connect(&args.api).await?;
    match args.command {
        TeamsCommand::List => {
            let teams = api.get("/api/teams").await?;
            let users = names(&api, "/api/users", "username").await?;
            show(&api, &teams, &["ID", "NAME", "MEMBERS"], |v| {
                items(v)
                    .map(|t| {
                        let m: Vec<String> = items(&t["memberIds"]).map(|id| label(&users, id)).collect();
                        vec![
                            text(&t["id"]),
                            text(&t["name"]),
                            if m.is_empty() { "-".into() } else { m.join(",") },
                        ]
                    })
                    .collect()
            });
        }
        TeamsCommand::Create { name } => {
            let created = api.call("POST", "/api/teams", Some(json!({"name": name}))).await?;
            println!("created team {name} (id {})", text(&created["id"]));
        }
        TeamsCommand::AddMember { team, user } => {
            let (t, u) = (team_id(&api, &team).await?, user_id(&api, &user).await?);
            api.call("POST", &format!("/api/teams/{t}/members"), Some(json!({"userId": u}))).await?;
            println!("added {user} to team {team}");
        }
        TeamsCommand::RemoveMember { team, user } => {
            let (t, u) = (team_id(&api, &team).await?, user_id(&api, &user).await?);
            api.call("DELETE", &format!("/api/teams/{t}/members/{u}"), None).await?;
            println!("removed {user} from team {team}");
        }
        TeamsCommand::Delete { team } => {
            let t = team_id(&api, &team).await?;
            api.call("DELETE", &format!("/api/teams/{t}"), None).await?;
            println!("deleted team {team}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------- environments

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kubegate environments list\n  kubegate environments create prod --server https://10.0.0.1:6443 --ca-file prod-ca.pem --token-file prod.token"
)]
pub struct Environments {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: EnvironmentsCommand,
}

/// The credential kubegate uses upstream (sealed to the proxy fleet's key as it arrives).
#[derive(Args, Debug, Clone)]
pub struct Credential {
    /// A file holding a bearer token.
    #[arg(long = "token-file", value_name = "FILE", conflicts_with_all = ["client_cert", "client_key"])]
    token_file: Option<PathBuf>,
    /// A client certificate (PEM), with --client-key.
    #[arg(long = "client-cert", value_name = "PEM", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long = "client-key", value_name = "PEM", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl Credential {
    fn into_body(self, body: &mut serde_json::Map<String, Value>) -> Result<(), CliError> {
        if let Some(f) = self.token_file {
            body.insert("token".into(), json!(read_file(&f)?.trim()));
        }
        if let (Some(c), Some(k)) = (self.client_cert, self.client_key) {
            body.insert("clientCert".into(), json!(read_file(&c)?));
            body.insert("clientKey".into(), json!(read_file(&k)?));
        }
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
pub enum EnvironmentsCommand {
    /// List environments.
    #[command(after_help = "Example:\n  kubegate environments list")]
    List,
    /// Register a cluster as an environment.
    #[command(
        after_help = "Example:\n  kubegate environments create prod --server https://10.0.0.1:6443 \\\n    --ca-file prod-ca.pem --token-file prod.token"
    )]
    Create {
        name: String,
        /// The cluster's API server (https).
        #[arg(long)]
        server: String,
        /// The CA (PEM) the API server's certificate chains to.
        #[arg(long = "ca-file", value_name = "PEM")]
        ca_file: Option<PathBuf>,
        /// Do not check the API server's certificate (only when you must).
        #[arg(long = "insecure-skip-tls-verify")]
        insecure: bool,
        #[command(flatten)]
        credential: Credential,
    },
    /// Rename an environment, move it, or replace its CA or credential.
    #[command(
        after_help = "Examples:\n  kubegate environments update prod --name production\n  kubegate environments update prod --token-file new.token"
    )]
    Update {
        environment: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        server: Option<String>,
        #[arg(long = "ca-file", value_name = "PEM")]
        ca_file: Option<PathBuf>,
        #[arg(long = "insecure-skip-tls-verify", value_name = "true|false")]
        insecure: Option<bool>,
        #[command(flatten)]
        credential: Credential,
    },
    /// Remove an environment (open streams to it are closed).
    #[command(after_help = "Example:\n  kubegate environments delete staging")]
    Delete { environment: String },
}

pub async fn environments(args: Environments) -> Result<(), CliError> {
    let api = Api::connect(&args.api).await?;
    match args.command {
        EnvironmentsCommand::List => {
            let envs = api.get("/api/endpoints").await?;
            show(&api, &envs, &["ID", "NAME", "URL", "CA", "CREDENTIAL"], |v| {
                items(v)
                    .map(|e| {
                        let ca = if e["insecureSkipTlsVerify"] == json!(true) {
                            "insecure".to_string()
                        } else if e["hasCaCert"] == json!(true) {
                            "yes".into()
                        } else {
                            "system".into()
                        };
                        vec![
                            text(&e["id"]),
                            text(&e["name"]),
                            text(&e["url"]),
                            ca,
                            text(&e["credential"]["kind"]),
                        ]
                    })
                    .collect()
            });
        }
        EnvironmentsCommand::Create { name, server, ca_file, insecure, credential } => {
            let mut body = serde_json::Map::new();
            body.insert("name".into(), json!(name));
            body.insert("url".into(), json!(server));
            if let Some(f) = ca_file {
                body.insert("caCert".into(), json!(read_file(&f)?));
            }
            if insecure {
                body.insert("insecureSkipTlsVerify".into(), json!(true));
            }
            credential.into_body(&mut body)?;
            let created = api.call("POST", "/api/endpoints", Some(Value::Object(body))).await?;
            println!("registered environment {name} (id {})", text(&created["id"]));
        }
        EnvironmentsCommand::Update { environment, name, server, ca_file, insecure, credential } => {
            let id = environment_id(&api, &environment).await?;
            let mut body = serde_json::Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(s) = server {
                body.insert("url".into(), json!(s));
            }
            if let Some(f) = ca_file {
                body.insert("caCert".into(), json!(read_file(&f)?));
            }
            if let Some(i) = insecure {
                body.insert("insecureSkipTlsVerify".into(), json!(i));
            }
            credential.into_body(&mut body)?;
            if body.is_empty() {
                return Err(CliError::Usage("nothing to change".into()));
            }
            let updated = api.call("PUT", &format!("/api/endpoints/{id}"), Some(Value::Object(body))).await?;
            println!("updated environment {} ({})", text(&updated["name"]), text(&updated["url"]));
        }
        EnvironmentsCommand::Delete { environment } => {
            let id = environment_id(&api, &environment).await?;
            api.call("DELETE", &format!("/api/endpoints/{id}"), None).await?;
            println!("removed environment {environment}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------- access

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kubegate access get prod\n  kubegate access set prod --user alice=standard:dev,qa --team ops=operator"
)]
pub struct Access {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: AccessCommand,
}

#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Show who may reach an environment, with which role and namespaces.
    #[command(after_help = "Example:\n  kubegate access get prod")]
    Get { environment: String },
    /// Replace an environment's whole access policy. Entries are NAME=ROLE[:NS,NS...]; roles:
    /// environment-admin, operator, helpdesk, standard, read-only (the last two need namespaces).
    #[command(
        after_help = "Examples:\n  kubegate access set prod --user alice=standard:dev,qa --user bob=read-only:dev\n  kubegate access set prod --team ops=operator\n  kubegate access set prod --clear"
    )]
    Set {
        environment: String,
        #[arg(long = "user", value_name = "NAME=ROLE[:NS,...]")]
        users: Vec<String>,
        #[arg(long = "team", value_name = "NAME=ROLE[:NS,...]")]
        teams: Vec<String>,
        /// Nobody (but admins) may reach the environment.
        #[arg(long, conflicts_with_all = ["users", "teams"])]
        clear: bool,
    },
}

fn parse_entry(entry: &str) -> Result<(String, String, Vec<String>), CliError> {
    let bad = || CliError::Usage(format!("{entry:?}: write NAME=ROLE or NAME=ROLE:NS,NS"));
    let (name, rest) = entry.split_once('=').ok_or_else(bad)?;
    let (role, namespaces) = match rest.split_once(':') {
        Some((r, ns)) => {
            (r, ns.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect())
        }
        None => (rest, Vec::new()),
    };
    if name.trim().is_empty() || role.trim().is_empty() {
        return Err(bad());
    }
    Ok((name.trim().to_string(), role.trim().to_string(), namespaces))
}

pub async fn access(args: Access) -> Result<(), CliError> {
    let api = Api::connect(&args.api).await?;
    match args.command {
        AccessCommand::Get { environment } => {
            let id = environment_id(&api, &environment).await?;
            let policy = api.get(&format!("/api/endpoints/{id}/access")).await?;
            let users = names(&api, "/api/users", "username").await?;
            let teams = names(&api, "/api/teams", "name").await?;
            show(&api, &policy, &["WHO", "ROLE", "NAMESPACES"], |v| {
                let row =
                    |kind: &str, names: &std::collections::HashMap<u64, String>, e: &Value, id: &str| {
                        let ns: Vec<String> = items(&e["namespaces"]).map(text).collect();
                        vec![
                            format!("{kind} {}", label(names, &e[id])),
                            text(&e["role"]),
                            if ns.is_empty() { "-".into() } else { ns.join(",") },
                        ]
                    };
                items(&v["users"])
                    .map(|e| row("user", &users, e, "userId"))
                    .chain(items(&v["teams"]).map(|e| row("team", &teams, e, "teamId")))
                    .collect()
            });
        }
        AccessCommand::Set { environment, users, teams, clear } => {
            if users.is_empty() && teams.is_empty() && !clear {
                return Err(CliError::Usage("give --user or --team entries, or --clear".into()));
            }
            let id = environment_id(&api, &environment).await?;
            let mut user_entries = Vec::new();
            for e in &users {
                let (name, role, namespaces) = parse_entry(e)?;
                user_entries.push(
                    json!({"userId": user_id(&api, &name).await?, "role": role, "namespaces": namespaces}),
                );
            }
            let mut team_entries = Vec::new();
            for e in &teams {
                let (name, role, namespaces) = parse_entry(e)?;
                team_entries.push(
                    json!({"teamId": team_id(&api, &name).await?, "role": role, "namespaces": namespaces}),
                );
            }
            api.call(
                "PUT",
                &format!("/api/endpoints/{id}/access"),
                Some(json!({"users": user_entries, "teams": team_entries})),
            )
            .await?;
            println!(
                "set the access policy of {environment}: {} user and {} team entries",
                users.len(),
                teams.len()
            );
        }
    }
    Ok(())
}

// -------------------------------------------------------------------------------------- settings

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  kubegate settings get\n  kubegate settings set --kubeconfig-expiry 24h")]
pub struct Settings {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: SettingsCommand,
}

#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// Show the settings.
    #[command(after_help = "Example:\n  kubegate settings get")]
    Get,
    /// Change settings. The kubeconfig expiry (24h, 168h, 720h, 8760h, or 0/never) applies to
    /// kubeconfigs downloaded from now on; files already issued keep theirs.
    #[command(after_help = "Example:\n  kubegate settings set --kubeconfig-expiry 168h")]
    Set {
        #[arg(long = "kubeconfig-expiry", value_name = "24h|168h|720h|8760h|0")]
        kubeconfig_expiry: String,
    },
}

pub async fn settings(args: Settings) -> Result<(), CliError> {
    let api = Api::connect(&args.api).await?;
    let settings = match args.command {
        SettingsCommand::Get => api.get("/api/settings").await?,
        SettingsCommand::Set { kubeconfig_expiry } => {
            let expiry = if kubeconfig_expiry == "never" { "0".to_string() } else { kubeconfig_expiry };
            api.call("PUT", "/api/settings", Some(json!({"kubeconfigExpiry": expiry}))).await?
        }
    };
    show(&api, &settings, &["SETTING", "VALUE"], |v| {
        vec![vec![
            "kubeconfig expiry".into(),
            format!("{} ({})", text(&v["kubeconfigExpiry"]), text(&v["kubeconfigExpiryDescription"])),
        ]]
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------- tokens

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kubegate tokens list --user alice\n  kubegate tokens revoke 01978f3c-...\n  kubegate tokens revoke-user alice"
)]
pub struct Tokens {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// List kubeconfig tokens (newest first).
    #[command(after_help = "Example:\n  kubegate tokens list --user alice")]
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke one kubeconfig token (by its id, the token's jti).
    #[command(after_help = "Example:\n  kubegate tokens revoke 01978f3c-5d2a-7c1e-9a51-3f0c2d9e8b71")]
    Revoke { id: String },
    /// Revoke every kubeconfig token a user holds now.
    #[command(name = "revoke-user", after_help = "Example:\n  kubegate tokens revoke-user alice")]
    RevokeUser { user: String },
}

pub async fn tokens(args: Tokens) -> Result<(), CliError> {
    let api = Api::connect(&args.api).await?;
    match args.command {
        TokensCommand::List { user } => {
            let path = match user {
                Some(u) => format!("/api/kubeconfig-tokens?userId={}", user_id(&api, &u).await?),
                None => "/api/kubeconfig-tokens".into(),
            };
            let tokens = api.get(&path).await?;
            show(&api, &tokens, &["ID", "USER", "ENVIRONMENTS", "ISSUED", "EXPIRES", "STATE"], |v| {
                items(v)
                    .map(|t| {
                        let state = if t["revoked"] == json!(true) {
                            "revoked"
                        } else if t["expired"] == json!(true) {
                            "expired"
                        } else {
                            "valid"
                        };
                        let envs: Vec<String> = items(&t["environmentIds"]).map(text).collect();
                        vec![
                            text(&t["id"]),
                            text(&t["username"]),
                            envs.join(","),
                            text(&t["issuedAt"]),
                            if t["expiresAt"].is_null() { "never".into() } else { text(&t["expiresAt"]) },
                            state.into(),
                        ]
                    })
                    .collect()
            });
        }
        TokensCommand::Revoke { id } => {
            let path = format!("/api/kubeconfig-tokens/{}", percent_encode(&id));
            api.call("DELETE", &path, None).await?;
            println!("revoked kubeconfig token {id}");
        }
        TokensCommand::RevokeUser { user } => {
            let id = user_id(&api, &user).await?;
            api.call("POST", &format!("/api/users/{id}/kubeconfig-tokens/revoke"), None).await?;
            println!("revoked every kubeconfig token of {user}");
        }
    }
    Ok(())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_entries_parse() {
        assert_eq!(
            parse_entry("alice=standard:dev, qa").unwrap(),
            ("alice".into(), "standard".into(), vec!["dev".into(), "qa".into()])
        );
        assert_eq!(parse_entry("ops=operator").unwrap(), ("ops".into(), "operator".into(), vec![]));
        assert!(parse_entry("nobody").is_err());
        assert!(parse_entry("=operator").is_err());
    }

    #[test]
    fn tables_align_and_hide_control_characters() {
        let t =
            table(&["ID", "NAME"], vec![vec!["1".into(), "a\u{1b}b".into()], vec!["22".into(), "c".into()]]);
        assert_eq!(t, "ID  NAME\n1   a?b\n22  c\n");
    }
}
