//! kubegate's binaries as child processes: started with their configuration in the environment,
//! output captured to a file (shown when a test fails), ready when the admin `/readyz` says so,
//! killed when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Service {
    pub name: String,
    binary: PathBuf,
    env: BTreeMap<String, String>,
    args: Vec<String>,
    pub admin_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Service {
    /// Prepares (does not start) `binary` with `env`; an admin listener on a free port is added.
    pub fn new(name: &str, binary: impl AsRef<Path>, env: &[(&str, String)]) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin_port = crate::net::free_port();
        let mut map: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        map.insert("KUBEGATE_ADMIN_LISTEN".into(), format!("127.0.0.1:{admin_port}"));
        Service {
            name: name.to_string(),
            binary: binary.as_ref().to_path_buf(),
            env: map,
            args: Vec::new(),
            admin_port,
            log: dir.path().join(format!("{name}.log")),
            _dir: dir,
            child: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Service {
        self.args.push(arg.into());
        self
    }

    pub fn set_env(&mut self, key: &str, value: impl Into<String>) {
        self.env.insert(key.to_string(), value.into());
    }

    /// Sets each of `settings` on top of the service's own configuration. A setting may not
    /// replace what the service was prepared with (its listeners, URLs, keys): that panics,
    /// naming the setting.
    pub fn add_settings(&mut self, settings: &[(String, String)]) {
        for (key, _) in settings {
            assert!(
                !self.env.contains_key(key),
                "{key} is wired by the harness for {} and cannot be set as an extra setting",
                self.name
            );
        }
        for (key, value) in settings {
            self.env.insert(key.clone(), value.clone());
        }
    }

    pub fn remove_env(&mut self, key: &str) {
        self.env.remove(key);
    }

    pub fn start(&mut self) -> &mut Service {
        if self.child.is_some() {
            return self;
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBEGATE_LOG", "info")
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self
    }

    /// Starts and waits for `/readyz` = 200.
    pub fn start_ready(&mut self, timeout: Duration) -> &mut Service {
        self.start();
        self.wait_ready(timeout);
        self
    }

    pub fn is_ready(&self) -> bool {
        http_status(self.admin_port, "/readyz") == Some(200)
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_ready() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{} exited with {status} before it was ready:\n{}", self.name, self.logs());
            }
            if Instant::now() > deadline {
                panic!("{} not ready after {timeout:?}:\n{}", self.name, self.logs());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs to completion (for configuration-error tests); returns exit code and output.
    pub fn run_to_exit(&mut self, timeout: Duration) -> (Option<i32>, String) {
        self.start();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return (status.code(), self.logs());
            }
            if Instant::now() > deadline {
                self.kill();
                return (None, self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM, then wait up to `timeout` for a clean exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("----- {} log -----\n{}", self.name, self.logs());
        }
        self.kill();
    }
}

/// Status of a plain-HTTP GET on 127.0.0.1:`port`, without any HTTP client library.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&crate::net::loopback(port), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A binary of this workspace, built next to the running test (`make test` builds them all
/// first; `cargo build --workspace --bins` does the same).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared() -> Service {
        Service::new("svc", "/bin/true", &[("KUBEGATE_PROXY_LISTEN", "127.0.0.1:1".to_string())])
    }

    #[test]
    fn settings_add_to_what_the_service_was_prepared_with() {
        let mut s = prepared();
        s.add_settings(&[
            ("KUBEGATE_PROXY_SERVE_SPIN".into(), "0s".into()),
            ("KUBEGATE_LOG".into(), "debug".into()),
        ]);
        assert_eq!(s.env.get("KUBEGATE_PROXY_SERVE_SPIN").map(String::as_str), Some("0s"));
        assert_eq!(s.env.get("KUBEGATE_LOG").map(String::as_str), Some("debug"));
        assert_eq!(s.env.get("KUBEGATE_PROXY_LISTEN").map(String::as_str), Some("127.0.0.1:1"));
    }

    #[test]
    #[should_panic(expected = "KUBEGATE_PROXY_LISTEN is wired by the harness for svc")]
    fn a_setting_cannot_replace_the_wiring() {
        prepared().add_settings(&[("KUBEGATE_PROXY_LISTEN".into(), "127.0.0.1:2".into())]);
    }

    #[test]
    #[should_panic(expected = "KUBEGATE_ADMIN_LISTEN is wired by the harness")]
    fn nor_the_admin_listener_the_harness_adds() {
        prepared().add_settings(&[("KUBEGATE_ADMIN_LISTEN".into(), "127.0.0.1:2".into())]);
    }
}
