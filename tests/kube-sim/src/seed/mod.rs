//! Seed data: the bootstrap RBAC policy every cluster has, the RBAC a kubegate-managed cluster
//! is given, and the demo workload (namespaces `default`, `kube-system`, `dev` with running
//! pods, config maps, secrets and services, plus `bench-2k` / `bench-100k` for benchmarks).

use serde_json::{Value, json};

/// Parses multi-document YAML into objects (empty documents are skipped).
pub fn parse_yaml(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| d.is_object()).collect())
}

fn embedded(text: &str) -> Vec<Value> {
    // The embedded files are tested to parse; a failure here yields no objects.
    parse_yaml(text).unwrap_or_default()
}

/// cluster-admin, discovery, basic-user, public-info-viewer and the admin/edit/view roles.
pub fn bootstrap_rbac() -> Vec<Value> {
    embedded(include_str!("bootstrap-rbac.yaml"))
}

/// kubegate's impersonator principal and one binding set per kubegate role; the operator role
/// is bound in each of `operator_namespaces`.
pub fn kubegate_rbac(operator_namespaces: &[&str]) -> Vec<Value> {
    let mut out = embedded(include_str!("kubegate-rbac.yaml"));
    for ns in operator_namespaces {
        out.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "kubegate:operator", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubegate:operator"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubegate:role:operator"}]
        }));
    }
    out
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn pod(ns: &str, name: &str, labels: Value, containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"containers": containers}})
}

fn container(name: &str, image: &str, ports: &[u16]) -> Value {
    let ports: Vec<Value> = ports.iter().map(|p| json!({"containerPort": p})).collect();
    if ports.is_empty() {
        json!({"name": name, "image": image})
    } else {
        json!({"name": name, "image": image, "ports": ports})
    }
}

fn service(ns: &str, name: &str, selector: Value, port: u16, target: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": target}]}})
}

fn configmap(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data})
}

fn secret(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": "Opaque", "stringData": data})
}

/// Namespaces the demo workload lives in (kubegate's operator role is bound in the ones that
/// are not system namespaces).
pub const DEMO_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease", "dev"];
pub const OPERATOR_NAMESPACES: &[&str] = &["default", "dev"];

/// The node, namespaces and workloads of the demo cluster.
pub fn demo_objects() -> Vec<Value> {
    let mut out = vec![json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "kube-sim-node",
        "labels": {"kubernetes.io/hostname": "kube-sim-node", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                   "node-role.kubernetes.io/control-plane": ""}}})];
    out.extend(DEMO_NAMESPACES.iter().map(|n| namespace(n)));
    out.extend([
        pod("default", "nginx", json!({"app": "nginx"}), json!([container("nginx", "nginx:1.25", &[80])])),
        pod("default", "busybox", json!({"app": "busybox"}), json!([container("busybox", "busybox:1.36", &[])])),
        service("default", "nginx", json!({"app": "nginx"}), 80, 80),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default",
               "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
        configmap("default", "app-config", json!({"LOG_LEVEL": "info", "FEATURE_X": "true"})),
        secret("default", "app-secret", json!({"password": "s3cr3t"})),
        pod(
            "kube-system",
            "coredns-5d78c9869d-abcde",
            json!({"k8s-app": "kube-dns", "pod-template-hash": "5d78c9869d"}),
            json!([container("coredns", "registry.k8s.io/coredns/coredns:v1.11.3", &[53, 9153])]),
        ),
        pod("kube-system", "etcd-kube-sim-node", json!({"component": "etcd", "tier": "control-plane"}),
            json!([container("etcd", "registry.k8s.io/etcd:3.5.16-0", &[2379])])),
        pod("kube-system", "kube-apiserver-kube-sim-node", json!({"component": "kube-apiserver", "tier": "control-plane"}),
            json!([container("kube-apiserver", "registry.k8s.io/kube-apiserver:v1.32.0", &[6443])])),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
               "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": "10.96.0.10",
                        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}, {"name": "metrics", "port": 9153}]}}),
        configmap("kube-system", "coredns", json!({"Corefile": ".:53 {\n    errors\n    health\n    kubernetes cluster.local in-addr.arpa ip6.arpa\n    forward . /etc/resolv.conf\n    cache 30\n}\n"})),
        secret("kube-system", "bootstrap-token-abcdef", json!({"token-id": "abcdef", "token-secret": "0123456789abcdef"})),
        pod("dev", "api", json!({"app": "api"}), json!([container("api", "ghcr.io/example/api:2.3.1", &[8080])])),
        pod(
            "dev",
            "worker",
            json!({"app": "worker"}),
            json!([container("worker", "ghcr.io/example/worker:2.3.1", &[]), container("log-shipper", "fluent/fluent-bit:3.1", &[2020])]),
        ),
        service("dev", "api", json!({"app": "api"}), 80, 8080),
        configmap("dev", "api-config", json!({"DATABASE_HOST": "db.dev.svc", "WORKERS": "4"})),
        secret("dev", "db-credentials", json!({"username": "api", "password": "dev-password"})),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "dev", "labels": {"app": "api"}},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                        "template": {"metadata": {"labels": {"app": "api"}},
                                     "spec": {"containers": [container("api", "ghcr.io/example/api:2.3.1", &[8080])]}}}}),
    ]);
    out
}

/// Pod number `i` of a benchmark namespace.
pub fn bench_pod(ns: &str, i: usize) -> Value {
    pod(ns, &format!("bench-{i:04}"), json!({"app": "bench"}), json!([container("app", "nginx:1.25", &[80])]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_yaml_parses() {
        let b = bootstrap_rbac();
        assert!(b.len() >= 10, "{}", b.len());
        assert!(
            b.iter().any(|o| o["kind"] == "ClusterRoleBinding" && o["metadata"]["name"] == "cluster-admin")
        );
        let k = kubegate_rbac(&["default"]);
        assert!(k.iter().any(|o| o["kind"] == "RoleBinding" && o["metadata"]["namespace"] == "default"));
        assert!(k.iter().all(|o| o["apiVersion"] == "rbac.authorization.k8s.io/v1"));
    }

    #[test]
    fn yaml_errors_are_reported() {
        assert!(parse_yaml("a: [").is_err());
        assert_eq!(parse_yaml("---\n---\nkind: X\n").map(|v| v.len()), Ok(1));
    }
}
