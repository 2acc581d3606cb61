//! The official Python client (`kubernetes.stream`) against exec and port-forward: output,
//! stdin with the v5 close signal, the exit code, and the WebSocket channel port-forward.
//! The interpreter comes from the shared test support (a virtualenv made on first use).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "streams_harness.rs"]
mod harness;

use std::time::Duration;

use harness::*;

const SCRIPT: &str = r#"
import json, sys
from kubernetes import client, config
from kubernetes.stream import stream, portforward

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
res = {}
res["exec"] = stream(v1.connect_get_namespaced_pod_exec, "nginx", "default",
                     command=["sh", "-c", "echo hi-from-python"], container="nginx",
                     stderr=True, stdin=False, stdout=True, tty=False)

r = stream(v1.connect_get_namespaced_pod_exec, "nginx", "default",
           command=["sh", "-c", "cat; echo oops >&2; exit 5"], container="nginx",
           stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
res["protocol"] = r.subprotocol if hasattr(r, "subprotocol") else None
r.write_stdin("ping\n")
r.close_channel(0)
r.run_forever(timeout=20)
res["stdout"] = r.read_stdout()
res["stderr"] = r.read_stderr()
res["returncode"] = r.returncode

pf = portforward(v1.connect_get_namespaced_pod_portforward, "nginx", "default", ports="9000")
s = pf.socket(9000)
s.setblocking(True)
s.sendall(b"echo-me")
got = b""
while len(got) < 7:
    chunk = s.recv(100)
    if not chunk:
        break
    got += chunk
res["portforward"] = got.decode()
s.close()
print(json.dumps(res))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_python_client_exec_and_port_forward() {
    let python = tokio::task::spawn_blocking(kubegate_testsupport::python::kubernetes_python).await.unwrap();
    let sim = Sim::start().await;
    let script = sim.dir.path().join("streams.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(&script).arg(sim.kubeconfig()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let res: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(res["exec"], "hi-from-python\n");
    assert_eq!(res["stdout"], "ping\n");
    assert_eq!(res["stderr"], "oops\n");
    assert_eq!(res["returncode"], 5);
    assert_eq!(res["portforward"], "echo-me");

    let upgrades = sim.streams().upgrades();
    let summary: Vec<(&str, &str, &str, u16)> =
        upgrades.iter().map(|u| (u.subresource, u.transport, u.protocol.as_str(), u.status)).collect();
    assert_eq!(
        summary,
        vec![
            ("exec", "websocket", "v5.channel.k8s.io", 101),
            ("exec", "websocket", "v5.channel.k8s.io", 101),
            ("portforward", "websocket", "v4.channel.k8s.io", 101),
        ]
    );
    assert_torn_down(&sim).await;
}
