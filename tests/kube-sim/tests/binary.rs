//! The `kube-sim` binary: flag errors exit 64 with one line, a normal start writes the CA,
//! tokens and an admin kubeconfig and prints one ready line, kubectl works with them, and
//! SIGTERM stops it cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Identity, Kubectl, kubeconfig};

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_kube-sim")
}

/// Kills the child when the test ends, passing or not.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bad_flags_exit_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["--bogus".into()],
        vec![],
        vec!["--state-dir".into(), dir.path().display().to_string(), "--listen".into(), "nowhere".into()],
        vec!["--state-dir".into(), dir.path().display().to_string(), "--token".into(), "justaname".into()],
        vec![
            "--state-dir".into(),
            dir.path().display().to_string(),
            "--rbac".into(),
            "/nonexistent/rbac.yaml".into(),
        ],
        vec!["--state-dir".into(), dir.path().display().to_string(), "--stall".into(), "sometimes".into()],
    ];
    for args in cases {
        let out = Command::new(binary()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("kube-sim: "), "{err}");
    }
}

#[test]
fn starts_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = kubegate_testsupport::net::free_port();
    let mut child = Guard(
        Command::new(binary())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
            .arg(dir.path())
            .args(["--token", "admin=admin-secret:system:masters", "--token", "kubegate=gate-secret:"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        format!("kube-sim ready on https://127.0.0.1:{port} (CA {}/ca.pem)", dir.path().display())
    );
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let tokens = std::fs::read_to_string(dir.path().join("tokens")).unwrap();
    assert!(tokens.contains("admin=admin-secret:system:masters"), "{tokens}");
    assert_eq!(std::fs::read_to_string(dir.path().join("kubegate.token")).unwrap(), "gate-secret");

    let admin = Kubectl::new(32, dir.path().join("kubeconfig"));
    let out = admin.ok(&["get", "pods", "-n", "kube-system"]);
    assert!(out.contains("coredns-5d78c9869d-abcde"), "{out}");
    let url = format!("https://127.0.0.1:{port}");
    let gate = Kubectl::new(32, kubeconfig(dir.path(), "gate", &url, &ca, &Identity::token("gate-secret")));
    let out = gate.run(&["get", "pods"]);
    assert_eq!(out.status.code(), Some(1), "kubegate may not read pods itself");
    let out = gate.ok(&["auth", "whoami", "--as", "someone"]);
    assert!(out.contains("someone"), "{out}");

    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "kube-sim did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn generates_tokens_when_none_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let port = kubegate_testsupport::net::free_port();
    let mut child = Guard(
        Command::new(binary())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-seed", "--state-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("kube-sim ready on"), "{line}");
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let gate = std::fs::read_to_string(dir.path().join("kubegate.token")).unwrap();
    assert!(admin.len() >= 32 && gate.len() >= 32 && admin != gate);
    let out = Kubectl::new(32, dir.path().join("kubeconfig")).ok(&["get", "pods", "-A"]);
    assert!(out.trim().is_empty() || out.starts_with("No resources"), "--no-seed starts empty: {out}");
}
