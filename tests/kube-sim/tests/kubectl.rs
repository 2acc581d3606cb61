//! Real kubectl (every minor from 1.27 to 1.33) against kube-sim: version, get, watch, logs,
//! apply with validation, delete, typed create commands, auth can-i / whoami, and impersonation
//! allowed and denied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ADMIN, ALICE, Identity, KUBEGATE, Kubectl, kubeconfig};
use serde_json::json;

const POD_YAML: &str = "apiVersion: v1
kind: Pod
metadata:
  name: NAME
  labels:
    app: LABEL
spec:
  containers:
  - name: web
    image: nginx:1.25
    ports:
    - containerPort: 80
";

fn lines_with<'a>(out: &'a str, word: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.split_whitespace().any(|w| w == word)).collect()
}

async fn scenario(minor: u32) {
    let mut cfg = common::config();
    cfg.log_interval = Duration::from_millis(200);
    let sim = common::start_with(cfg).await;
    sim.knobs().set_pod_termination_delay(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let admin = Kubectl::new(
        minor,
        kubeconfig(dir.path(), "admin", &sim.url(), sim.ca_pem(), &Identity::token(ADMIN)),
    );
    let alice = Kubectl::new(
        minor,
        kubeconfig(dir.path(), "alice", &sim.url(), sim.ca_pem(), &Identity::token(ALICE)),
    );
    let as_alice = Kubectl::new(
        minor,
        kubeconfig(
            dir.path(),
            "gate",
            &sim.url(),
            sim.ca_pem(),
            &Identity::impersonating(KUBEGATE, "alice", &["dev-team"]),
        ),
    );
    let pod_name = format!("applied-{minor}");
    let sim = std::sync::Arc::new(sim);

    let s = sim.clone();
    let name = pod_name.clone();
    tokio::task::spawn_blocking(move || {
        // version
        let out = admin.ok(&["version"]);
        assert!(out.contains("v1.32.0"), "{out}");

        // get pods / -A / ns: tables as kubectl prints them
        let out = admin.ok(&["get", "pods"]);
        let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{out}");
        for pod in ["nginx", "busybox"] {
            let line = lines_with(&out, pod);
            assert_eq!(line.len(), 1, "{out}");
            assert!(line[0].contains("1/1") && line[0].contains("Running"), "{out}");
        }
        let out = admin.ok(&["get", "pods", "-A"]);
        assert!(out.starts_with("NAMESPACE"), "{out}");
        assert!(out.lines().any(|l| l.starts_with("kube-system") && l.contains("coredns-5d78c9869d-abcde")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("dev") && l.contains("worker") && l.contains("2/2")), "{out}");
        let out = admin.ok(&["get", "ns"]);
        assert!(out.lines().next().unwrap().split_whitespace().eq(["NAME", "STATUS", "AGE"]), "{out}");
        for ns in ["default", "kube-system", "dev"] {
            assert!(lines_with(&out, ns).iter().any(|l| l.contains("Active")), "{out}");
        }

        // get pods -w: an object applied during the watch shows up
        let mut w = admin.spawn(&["get", "pods", "-w"]);
        w.wait_for("the initial list", Duration::from_secs(20), |l| l.starts_with("nginx"));
        let watched = format!("watched-{minor}");
        s.apply_object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": watched, "namespace": "default"},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
            .unwrap();
        let line = w.wait_for("the watched pod", Duration::from_secs(20), |l| l.starts_with(&watched));
        assert!(line.contains("Running"), "{line}");
        w.stop();

        // logs -f: a new line appears while following
        let mut f = admin.spawn(&["logs", "-f", "nginx", "--tail", "1"]);
        let first = f.wait_for("a log line", Duration::from_secs(20), |l| l.contains("log line"));
        let n = |l: &str| l.split_whitespace().nth(3).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let first_n = n(&first);
        f.wait_for("a newer log line", Duration::from_secs(20), |l| n(l) > first_n);
        f.stop();

        // apply (validation on): create, then update
        let yaml = POD_YAML.replace("NAME", &name).replace("LABEL", "one");
        let out = admin.run_with(&["apply", "-f", "-"], Some(&yaml), Duration::from_secs(60));
        assert!(out.status.success(), "apply create: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("pod/{name} created"));
        let yaml = POD_YAML.replace("NAME", &name).replace("LABEL", "two");
        let out = admin.run_with(&["apply", "-f", "-"], Some(&yaml), Duration::from_secs(60));
        assert!(out.status.success(), "apply update: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("pod/{name} configured"));
        let stored = s.get_object("v1", "Pod", "default", &name).unwrap();
        assert_eq!(stored["metadata"]["labels"]["app"], "two");
        assert!(stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
        let applied: Vec<_> = s.requests().into_iter().filter(|r| r.method == "POST" && r.path == "/api/v1/namespaces/default/pods").collect();
        assert!(applied.iter().any(|r| r.query.contains("fieldValidation=Strict")), "validation stayed on");

        // delete waits for the pod to terminate
        let out = admin.ok(&["delete", "pod", &name]);
        assert_eq!(out.trim(), format!("pod \"{name}\" deleted"));
        assert!(s.get_object("v1", "Pod", "default", &name).is_none());

        // typed create commands (protobuf bodies from 1.32 on), scale, token, namespace deletion
        let ns = format!("team-{minor}");
        assert_eq!(admin.ok(&["create", "namespace", &ns]).trim(), format!("namespace/{ns} created"));
        admin.ok(&["create", "configmap", "cm", "--from-literal=k=v", "-n", &ns]);
        admin.ok(&["create", "secret", "generic", "sec", "--from-literal=a=b", "-n", &ns]);
        admin.ok(&["create", "deployment", "web", "--image=nginx:1.25", "-n", &ns]);
        admin.ok(&["create", "rolebinding", "rb", "--clusterrole=view", "--user=bob", "-n", &ns]);
        admin.ok(&["scale", "deployment", "web", "--replicas=2", "-n", &ns]);
        let out = admin.ok(&["get", "deployment", "web", "-n", &ns]);
        assert!(out.lines().nth(1).is_some_and(|l| l.split_whitespace().nth(1) == Some("2/2")), "{out}");
        assert_eq!(s.get_object("v1", "Secret", &ns, "sec").unwrap()["data"]["a"], "Yg==");
        let token = admin.ok(&["create", "token", "default", "-n", &ns]);
        assert!(token.trim().len() > 20, "{token}");
        assert_eq!(admin.ok(&["delete", "namespace", &ns]).trim(), format!("namespace \"{ns}\" deleted"));
        assert!(s.get_object("v1", "ConfigMap", &ns, "cm").is_none());

        // auth can-i: yes and no per RBAC
        assert_eq!(admin.ok(&["auth", "can-i", "get", "pods"]).trim(), "yes");
        assert_eq!(alice.ok(&["auth", "can-i", "list", "pods", "-n", "dev"]).trim(), "yes");
        let out = alice.run(&["auth", "can-i", "list", "pods", "-n", "kube-system"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
        let out = alice.run(&["auth", "can-i", "create", "pods/exec", "-n", "dev"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");

        // auth whoami: the kubeconfig impersonates alice through kubegate's credential
        let out = as_alice.ok(&["auth", "whoami"]);
        assert!(out.lines().any(|l| l.starts_with("Username") && l.trim_end().ends_with("alice")), "{out}");
        assert!(out.contains("[dev-team system:authenticated]"), "{out}");
        let out = as_alice.ok(&["get", "pods", "-n", "dev"]);
        assert!(out.contains("worker"), "{out}");
        let out = as_alice.run(&["get", "pods", "-n", "kube-system"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(
                "Error from server (Forbidden): pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
            ),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = admin.ok(&["auth", "whoami", "--as", "bob", "--as-group", "qa"]);
        assert!(out.contains("bob") && out.contains("[qa system:authenticated]"), "{out}");
        let seen = s.requests();
        let whoami = seen
            .iter()
            .rev()
            .find(|r| r.path.ends_with("/selfsubjectreviews") && r.header("impersonate-user") == Some("alice"))
            .expect("whoami request logged");
        assert_eq!(whoami.principal.as_ref().unwrap().name, "kubegate");
        assert_eq!(whoami.effective.as_ref().unwrap().name, "alice");

        // --as denied for a principal that may not impersonate
        let out = alice.run(&["--as", "bob", "get", "pods", "-n", "dev"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
            "{err}"
        );
    })
    .await
    .unwrap();
}

macro_rules! kubectl_version {
    ($name:ident, $minor:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            scenario($minor).await;
        }
    };
}

kubectl_version!(kubectl_1_27, 27);
kubectl_version!(kubectl_1_28, 28);
kubectl_version!(kubectl_1_29, 29);
kubectl_version!(kubectl_1_30, 30);
kubectl_version!(kubectl_1_31, 31);
kubectl_version!(kubectl_1_32, 32);
kubectl_version!(kubectl_1_33, 33);
