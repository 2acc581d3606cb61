//! A nats-server with JetStream per test, on a free port, with its own store directory;
//! stopped when dropped. Tests that bounce NATS call [`NatsServer::stop`] and [`NatsServer::start`].

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a JetStream-enabled nats-server on a free loopback port.
    pub fn start_new() -> NatsServer {
        Self::start_with(Vec::new())
    }

    /// Starts one with extra command-line arguments (e.g. `-c <config file>`).
    pub fn start_with(extra_args: Vec<String>) -> NatsServer {
        let mut s = NatsServer {
            port: crate::net::free_port(),
            store: tempfile::tempdir().expect("tempdir"),
            extra_args,
            child: None,
        };
        s.start();
        s
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start on {}", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
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
