//! `kube-sim`: runs the stand-in API server until SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kube_sim::{Config, KubeSim, Stall, TokenUser};

/// mimalloc, as in kubegate's services: every request builds and drops many small strings
/// (request info, user info, the answer), and glibc's allocator took a quarter of the
/// instructions per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A stand-in Kubernetes API server (kubectl 1.27–1.33 and client libraries).
#[derive(Debug, Parser)]
#[command(name = "kube-sim", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Directory for ca.pem, tokens and an admin kubeconfig.
    #[arg(long)]
    state_dir: PathBuf,
    /// NAME=TOKEN:group1,group2 (repeatable). Without any, tokens are generated for `kubegate`
    /// (may only impersonate) and `admin` (system:masters).
    #[arg(long = "token", value_name = "NAME=TOKEN:GROUPS")]
    tokens: Vec<String>,
    /// Multi-document YAML of RBAC (or other) objects to apply at start (repeatable).
    #[arg(long = "rbac", value_name = "FILE")]
    rbac: Vec<PathBuf>,
    /// PEM CA that signs accepted client certificates (CN = user, O = groups).
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// Start with an empty cluster (no demo workload).
    #[arg(long)]
    no_seed: bool,
    /// Also seed namespaces bench-2k and bench-100k (pod lists of about 2 KB and 100 KB).
    #[arg(long)]
    bench_namespaces: bool,
    /// Treat requests without credentials as system:anonymous instead of answering 401.
    #[arg(long)]
    anonymous: bool,
    /// Root directory for exec sandboxes.
    #[arg(long, value_name = "DIR")]
    exec_root: Option<PathBuf>,
    /// Interval between container log lines.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    log_interval: Duration,
    /// Lists of RESOURCE[/NAMESPACE] return a generated list of BYTES.
    #[arg(long, value_name = "RESOURCE[/NAMESPACE]=BYTES")]
    large_list: Option<String>,
    /// Delay before each watch event is sent.
    #[arg(long, value_parser = humantime::parse_duration)]
    watch_event_delay: Option<Duration>,
    /// Misbehave: `accept` (never speak) or `response` (never answer).
    #[arg(long, value_name = "accept|response")]
    stall: Option<String>,
    /// Cut connections halfway through response bodies.
    #[arg(long)]
    drop_mid_response: bool,
    /// How long a deleted pod stays Terminating.
    #[arg(long, value_parser = humantime::parse_duration)]
    pod_termination_delay: Option<Duration>,
    /// Interval of watch BOOKMARK events.
    #[arg(long, value_parser = humantime::parse_duration)]
    bookmark_interval: Option<Duration>,
    /// Do not keep a request log (for benchmarks).
    #[arg(long)]
    no_request_log: bool,
    /// Also require `create` for WebSocket exec/attach/port-forward (Kubernetes 1.35 behaviour).
    #[arg(long)]
    websocket_requires_create: bool,
}

fn parse_token(s: &str) -> Result<TokenUser, String> {
    let (name, rest) =
        s.split_once('=').ok_or_else(|| format!("--token {s:?}: expected NAME=TOKEN:GROUPS"))?;
    let (token, groups) = rest.split_once(':').unwrap_or((rest, ""));
    if name.is_empty() || token.is_empty() {
        return Err(format!("--token {s:?}: name and token must not be empty"));
    }
    let groups: Vec<&str> = groups.split(',').filter(|g| !g.is_empty()).collect();
    Ok(TokenUser::new(token, name, &groups))
}

fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

fn write(path: PathBuf, contents: &str) -> Result<(), String> {
    std::fs::write(&path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

struct Prepared {
    config: Config,
    tokens: Vec<TokenUser>,
    cli: Cli,
}

fn prepare(cli: Cli) -> Result<Prepared, String> {
    let mut tokens = cli.tokens.iter().map(|t| parse_token(t)).collect::<Result<Vec<_>, _>>()?;
    if tokens.is_empty() {
        tokens.push(TokenUser::new(&random_token(), "kubegate", &[]));
        tokens.push(TokenUser::new(&random_token(), "admin", &["system:masters"]));
    }
    for f in &cli.rbac {
        if !f.is_file() {
            return Err(format!("--rbac {}: no such file", f.display()));
        }
    }
    let client_ca_pem = match &cli.client_ca {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("--client-ca {}: {e}", p.display()))?),
        None => None,
    };
    if let Some(s) = &cli.stall
        && s != "accept"
        && s != "response"
    {
        return Err(format!("--stall {s:?}: expected accept or response"));
    }
    if let Some(l) = &cli.large_list {
        let (_, bytes) = l
            .split_once('=')
            .ok_or_else(|| format!("--large-list {l:?}: expected RESOURCE[/NAMESPACE]=BYTES"))?;
        bytes.parse::<u64>().map_err(|_| format!("--large-list {l:?}: BYTES must be a number"))?;
    }
    std::fs::create_dir_all(&cli.state_dir)
        .map_err(|e| format!("--state-dir {}: {e}", cli.state_dir.display()))?;
    let config = Config {
        listen: cli.listen,
        tokens: tokens.clone(),
        client_ca_pem,
        anonymous: cli.anonymous,
        seed: !cli.no_seed,
        bench_namespaces: cli.bench_namespaces,
        rbac_files: cli.rbac.clone(),
        exec_root: cli.exec_root.clone(),
        log_interval: cli.log_interval,
        websocket_requires_create: cli.websocket_requires_create,
        ..Config::default()
    };
    Ok(Prepared { config, tokens, cli })
}

fn kubeconfig(url: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: admin\ncurrent-context: kube-sim\n"
    )
}

async fn run(p: Prepared) -> Result<(), String> {
    let sim = KubeSim::start(p.config).await.map_err(|e| e.to_string())?;
    let knobs = sim.knobs();
    if let Some(l) = &p.cli.large_list
        && let Some((target, bytes)) = l.split_once('=')
    {
        let (resource, ns) = match target.split_once('/') {
            Some((r, n)) => (r, Some(n)),
            None => (target, None),
        };
        knobs.set_large_list(resource, ns, bytes.parse().unwrap_or(0));
    }
    if let Some(d) = p.cli.watch_event_delay {
        knobs.set_watch_event_delay(d);
    }
    match p.cli.stall.as_deref() {
        Some("accept") => knobs.set_stall(Stall::Accept),
        Some("response") => knobs.set_stall(Stall::Response),
        _ => {}
    }
    knobs.set_drop_mid_response(p.cli.drop_mid_response);
    if let Some(d) = p.cli.pod_termination_delay {
        knobs.set_pod_termination_delay(d);
    }
    if let Some(d) = p.cli.bookmark_interval {
        knobs.set_bookmark_interval(d);
    }
    knobs.set_request_log(!p.cli.no_request_log);

    let dir = &p.cli.state_dir;
    write(dir.join("ca.pem"), sim.ca_pem())?;
    let mut lines = String::new();
    for t in &p.tokens {
        lines.push_str(&format!("{}={}:{}\n", t.user, t.token, t.groups.join(",")));
        write(dir.join(format!("{}.token", t.user)), &t.token)?;
    }
    write(dir.join("tokens"), &lines)?;
    if let Some(admin) = p.tokens.iter().find(|t| t.groups.iter().any(|g| g == "system:masters")) {
        write(dir.join("kubeconfig"), &kubeconfig(&sim.url(), sim.ca_pem(), &admin.token))?;
    }
    println!("kube-sim ready on {} (CA {}/ca.pem)", sim.url(), dir.display());
    let _ = std::io::stdout().flush();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    sim.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            eprintln!(
                "kube-sim: {}",
                text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ")
            );
            return ExitCode::from(64);
        }
    };
    let prepared = match prepare(cli) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kube-sim: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kube-sim: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(prepared)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
