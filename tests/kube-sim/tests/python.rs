//! The official Python client (`kubernetes` on PyPI) against kube-sim: list, watch (an object
//! applied during the watch arrives), logs, a 404, and exec over WebSocket when the streams
//! module serves it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ADMIN, Identity, kubeconfig};
use serde_json::{Value, json};

const SCRIPT: &str = r#"
import json, sys
from kubernetes import client, config, watch
from kubernetes.stream import stream

def say(**kw):
    print(json.dumps(kw), flush=True)

config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
pods = v1.list_namespaced_pod("default")
say(step="list", names=sorted(p.metadata.name for p in pods.items), rv=pods.metadata.resource_version)
every = v1.list_pod_for_all_namespaces()
say(step="list-all", names=sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in every.items))

w = watch.Watch()
say(step="watching")
for ev in w.stream(v1.list_namespaced_pod, "default", resource_version=pods.metadata.resource_version, timeout_seconds=20):
    say(step="event", type=ev["type"], name=ev["object"].metadata.name, phase=ev["object"].status.phase)
    if ev["object"].metadata.name == "py-watched":
        w.stop()

log = v1.read_namespaced_pod_log("nginx", "default", tail_lines=2)
say(step="log", text=log)
try:
    v1.read_namespaced_pod("nosuch", "default")
except client.ApiException as e:
    say(step="404", status=e.status, body=json.loads(e.body))

try:
    out = stream(v1.connect_get_namespaced_pod_exec, "nginx", "default", command=["echo", "hi-from-python"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    say(step="exec", output=out)
except Exception as e:
    say(step="exec-failed", error=str(e))
say(step="done")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_lists_watches_and_reads_logs() {
    let python = tokio::task::spawn_blocking(kubegate_testsupport::python::kubernetes_python).await.unwrap();
    let sim = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = kubeconfig(dir.path(), "admin", &sim.url(), sim.ca_pem(), &Identity::token(ADMIN));
    let script = dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();

    let mut child = Command::new(&python)
        .arg(&script)
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let sim = std::sync::Arc::new(sim);
    let s = sim.clone();
    let steps = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut steps = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(v) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("python stopped early; steps {steps:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
            };
            if v["step"] == "watching" {
                s.apply_object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "py-watched", "namespace": "default"},
                                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
                    .unwrap();
            }
            let done = v["step"] == "done";
            steps.push(v);
            if done {
                let status = child.wait().unwrap();
                assert!(status.success());
                return steps;
            }
        }
    })
    .await
    .unwrap();

    let step = |name: &str| {
        steps.iter().find(|s| s["step"] == name).unwrap_or_else(|| panic!("no {name} in {steps:?}")).clone()
    };
    assert_eq!(step("list")["names"], json!(["busybox", "nginx"]));
    let all = step("list-all")["names"].as_array().unwrap().clone();
    assert!(
        all.contains(&json!("kube-system/coredns-5d78c9869d-abcde")) && all.contains(&json!("dev/worker"))
    );
    let ev = steps.iter().find(|s| s["step"] == "event" && s["name"] == "py-watched").expect("watch event");
    assert_eq!((ev["type"].as_str(), ev["phase"].as_str()), (Some("ADDED"), Some("Running")));
    assert!(step("log")["text"].as_str().unwrap().contains("nginx log line"));
    let nf = step("404");
    assert_eq!(nf["status"], 404);
    assert_eq!(nf["body"]["message"], "pods \"nosuch\" not found");
    // exec goes through the streams module; it must work unless that module still answers 501
    let upgrades_501 = sim.requests().iter().any(|r| r.path.ends_with("/exec") && r.status == 501);
    if upgrades_501 {
        assert!(steps.iter().any(|s| s["step"] == "exec-failed"));
    } else {
        assert_eq!(step("exec")["output"], "hi-from-python\n");
    }
    let watch = sim.requests().into_iter().find(|r| r.query.contains("watch=true")).expect("watch logged");
    assert!(watch.query.contains("timeoutSeconds=20"));
    assert_eq!(watch.header("user-agent").map(|u| u.contains("python")), Some(true));
}
