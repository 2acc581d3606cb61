//! A nats-server with JetStream per test, on a free port, with its own store directory;
//! stopped when dropped. Tests that bounce NATS call [`NatsServer::stop`] and [`NatsServer::start`].

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a JetStream-enabled nats-server on a free loopback port.
    pub fn start_new() -> NatsServer {
        Self::start_with(Vec::new())
    }

    /// Starts one with extra command-line arguments (e.g. `-c <config file>`).
    pub fn start_with(extra_args: Vec<String>) -> NatsServer {
        Self::start_with_env(extra_args, Vec::new())
    }

    /// Starts one with extra arguments and environment variables (a config file's `$VARIABLE`s).
    pub fn start_with_env(extra_args: Vec<String>, env: Vec<(String, String)>) -> NatsServer {
        let mut s = Self::prepare(extra_args, env);
        s.start();
        s
    }

    /// A server not started yet: its port and store directory are known (to write a config
    /// file naming them), [`NatsServer::start`] starts it.
    pub fn prepare(extra_args: Vec<String>, env: Vec<(String, String)>) -> NatsServer {
        NatsServer {
            port: crate::net::free_port(),
            store: tempfile::tempdir().expect("tempdir"),
            extra_args,
            env,
            child: None,
        }
    }

    pub fn set_args(&mut self, extra_args: Vec<String>) {
        self.extra_args = extra_args;
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    /// (Re)starts the server on the same port and store; waits until it accepts connections.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(self.log_file())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "nats-server did not start on {}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    fn log_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    }

    /// What the server has logged (errors and warnings; it runs without -D).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nats_server_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"] {
        let p = PathBuf::from(candidate);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("nats-server")
}
