//! nginx as the baseline: a TLS-terminating reverse proxy (HTTP/1.1 and h2 on one listener) to
//! the same kube-sim, with upstream keep-alive and upstream TLS verified against kube-sim's CA.
//! It forwards with kube-sim's own credential (as kubegate forwards with its own), without any
//! token check, authorization, impersonation or audit. A second location, under
//! [`IMPERSONATING`], forwards as kubegate does for one user instead: with kubegate's upstream
//! credential and that user's impersonation headers, so that kube-sim does the work there that it
//! does for kubegate's requests. Runs in the foreground with its config, pid and logs in a
//! temporary directory, on a free port, and is stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// What nginx fronts and how.
pub struct NginxSite<'a> {
    /// `127.0.0.1:<port>` of kube-sim.
    pub upstream: String,
    pub upstream_ca: &'a str,
    /// Bearer token nginx sends upstream (replaces the client's Authorization).
    pub upstream_token: &'a str,
    /// The path prefix kubegate uses for the environment (`/api/endpoints/<id>/kubernetes`);
    /// nginx strips it the same way, so the same client paths work on both.
    pub prefix: String,
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Whom the impersonating location forwards as.
    pub impersonating: Impersonating<'a>,
}

/// The path prefix, before the environment's, of nginx's impersonating location.
pub const IMPERSONATING: &str = "/impersonating";

/// Whom nginx's impersonating location forwards as, and with what credential.
pub struct Impersonating<'a> {
    /// Bearer token sent upstream: kubegate's credential for the environment.
    pub upstream_token: &'a str,
    /// `Impersonate-User`.
    pub user: String,
    /// One `Impersonate-Group` header each, in this order.
    pub groups: Vec<String>,
}

impl Nginx {
    pub fn start(binary: &Path, site: &NginxSite<'_>) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let port = kubegate_testsupport::net::free_port();
        let d = dir.path();
        let ca = d.join("upstream-ca.pem");
        std::fs::write(&ca, site.upstream_ca).map_err(|e| format!("writing {}: {e}", ca.display()))?;
        let config = config(port, d, &ca, site);
        let conf = d.join("nginx.conf");
        std::fs::write(&conf, config).map_err(|e| format!("writing {}: {e}", conf.display()))?;
        // nginx with its prefix, error log and configuration in `d`.
        let nginx = || {
            let mut c = Command::new(binary);
            c.arg("-p").arg(d).arg("-e").arg(d.join("error.log")).arg("-c").arg(&conf);
            c
        };
        let test = nginx().arg("-t").output().map_err(|e| format!("running {} -t: {e}", binary.display()))?;
        if !test.status.success() {
            return Err(format!(
                "nginx rejected its configuration:\n{}",
                String::from_utf8_lossy(&test.stderr)
            ));
        }
        let child = nginx()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting nginx: {e}"))?;
        let mut nginx = Nginx { port, child: Some(child), dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        // The master listens before it forks its workers; the runs charge nginx with the CPU
        // time of the processes `pids` finds, so all the workers must be there first.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || nginx.pids().len() < workers() + 1
        {
            if Instant::now() > deadline {
                let log = nginx.error_log();
                nginx.stop();
                return Err(format!("nginx did not listen on {port} with its {} workers:\n{log}", workers()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    /// The master's PID and its workers'.
    pub fn pids(&self) -> Vec<u32> {
        let Some(master) = self.child.as_ref().map(|c| c.id()) else { return Vec::new() };
        let mut pids = crate::stack::children(master);
        pids.push(master);
        pids
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Fast shutdown of the master and its workers (SIGTERM), SIGKILL if that takes too long.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// nginx's worker processes: one per CPU, as `worker_processes auto` gives and as the proxy's
/// serving threads are by default. Written out so that `start` knows how many to wait for.
fn workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn config(port: u16, d: &Path, ca: &Path, site: &NginxSite<'_>) -> String {
    let temp = |name: &str| -> PathBuf { d.join(name) };
    let who = &site.impersonating;
    let mut impersonation = format!("\n            proxy_set_header Impersonate-User \"{}\";", who.user);
    for group in &who.groups {
        impersonation.push_str(&format!("\n            proxy_set_header Impersonate-Group \"{group}\";"));
    }
    let locations = [
        location(&site.prefix, &site.upstream, site.upstream_token, "", ca),
        location(
            &format!("{IMPERSONATING}{}", site.prefix),
            &site.upstream,
            who.upstream_token,
            &impersonation,
            ca,
        ),
    ]
    .concat();
    format!(
        r#"# kubegate-bench: nginx as a TLS-terminating reverse proxy to kube-sim.
worker_processes {workers};
daemon off;
master_process on;
pid {pid};
error_log {error_log} warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    # Room for the impersonating location's headers (nginx warns at start with the defaults).
    proxy_headers_hash_max_size 1024;
    proxy_headers_hash_bucket_size 128;

    upstream kubesim {{
        server {upstream};
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 120s;
    }}

    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
{locations}
    }}
}}
"#,
        workers = workers(),
        pid = path(&d.join("nginx.pid")),
        error_log = path(&d.join("error.log")),
        body = path(&temp("client_body")),
        proxy = path(&temp("proxy")),
        fastcgi = path(&temp("fastcgi")),
        uwsgi = path(&temp("uwsgi")),
        scgi = path(&temp("scgi")),
        upstream = site.upstream,
        cert = path(site.cert),
        key = path(site.key),
    )
}

/// One location forwarding `prefix/…` to kube-sim as `/…` with `token` and the `extra`
/// directives.
fn location(prefix: &str, upstream: &str, token: &str, extra: &str, ca: &Path) -> String {
    format!(
        r#"
        location {prefix}/ {{
            proxy_pass https://kubesim/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {upstream};
            proxy_set_header Authorization "Bearer {token}";{extra}
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            # A Kubernetes proxy must stream (watch, logs -f): no buffering either way.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
        }}"#,
        ca = path(ca),
    )
}
