//! The NetworkPolicies, evaluated as a matrix of who may open a connection to whom: only the
//! proxy is reachable from outside; each service reaches only NATS, its PostgreSQL and (for the
//! proxy) the other services and the managed clusters' API servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use kubegate_deploy_tests::k8s::{of_kind, workloads};
use kubegate_deploy_tests::netpol::{Endpoint, allowed};
use kubegate_deploy_tests::render::{Rendered, overlays};
use serde_json::{Map, Value, json};

/// The ports worth asking about: every port anything here listens on, plus DNS and the API
/// servers'.
const PORTS: &[(u64, &str)] = &[
    (53, "UDP"),
    (53, "TCP"),
    (443, "TCP"),
    (4222, "TCP"),
    (5432, "TCP"),
    (6222, "TCP"),
    (6443, "TCP"),
    (8080, "TCP"),
    (8222, "TCP"),
    (9441, "TCP"),
    (9442, "TCP"),
    (9443, "TCP"),
];

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// The pods of the overlay (one per workload, named by component), and what is around them.
fn endpoints(r: &Rendered) -> Vec<Endpoint> {
    let namespace = "kubegate";
    let mut out: Vec<Endpoint> = workloads(&r.objects)
        .iter()
        .map(|w| Endpoint::pod(w.component(), namespace, json!({}), w.pod_labels.clone(), w.named_ports()))
        .collect();
    // A pod someone starts in kubegate's namespace (a debug shell): it gets nothing but DNS.
    out.push(Endpoint::pod("stray", namespace, json!({}), labels(json!({"run": "debug"})), vec![]));
    // A pod of another namespace that copies the NATS client label: labels do not cross namespaces.
    out.push(Endpoint::pod(
        "other-namespace",
        "default",
        json!({}),
        labels(json!({"kubegate.io/nats-client": "true", "app.kubernetes.io/name": "kubegate", "app.kubernetes.io/component": "proxy"})),
        vec![],
    ));
    out.push(Endpoint::pod("dns", "kube-system", json!({}), labels(json!({"k8s-app": "kube-dns"})), vec![]));
    out.push(Endpoint::pod(
        "scraper",
        "monitoring",
        json!({"kubegate.io/scrape-metrics": "true"}),
        labels(json!({"app": "prometheus"})),
        vec![],
    ));
    // The internet, a managed cluster's API server, the production PostgreSQL: all outside.
    out.push(Endpoint::outside("outside", Ipv4Addr::new(203, 0, 113, 7)));
    out
}

/// What must be allowed, as `from -> to:port/proto`; everything else must be denied.
fn expected(r: &Rendered) -> BTreeSet<String> {
    let mut e = BTreeSet::new();
    let mut add = |from: &str, to: &str, port: u64, proto: &str| {
        e.insert(format!("{from} -> {to}:{port}/{proto}"));
    };
    let in_namespace = ["identity", "kubeconfig", "proxy", "nats", "stray"]
        .into_iter()
        .chain((r.overlay == "dev").then_some("postgres"));
    for pod in in_namespace {
        add(pod, "dns", 53, "UDP");
        add(pod, "dns", 53, "TCP");
    }
    // The public entry, from anywhere.
    for from in ["outside", "other-namespace", "dns", "scraper"] {
        add(from, "proxy", 9443, "TCP");
    }
    add("proxy", "identity", 9441, "TCP");
    add("proxy", "kubeconfig", 9442, "TCP");
    for client in ["identity", "kubeconfig", "proxy"] {
        add(client, "nats", 4222, "TCP");
    }
    add("proxy", "outside", 443, "TCP");
    add("proxy", "outside", 6443, "TCP");
    add("nats", "nats", 6222, "TCP");
    for store in ["identity", "kubeconfig"] {
        if r.overlay == "dev" {
            add(store, "postgres", 5432, "TCP");
        } else {
            add(store, "outside", 5432, "TCP");
        }
    }
    // Metrics, from namespaces that are labelled for it.
    let scraped = ["identity", "kubeconfig", "proxy", "nats"]
        .into_iter()
        .chain((r.overlay == "dev").then_some("postgres"));
    for pod in scraped {
        add("scraper", pod, 8080, "TCP");
        add("scraper", pod, 8222, "TCP");
    }
    // Outside the namespace nothing is ours to restrict: what they send elsewhere is allowed.
    for from in ["outside", "other-namespace", "dns", "scraper"] {
        for to in ["outside", "other-namespace", "dns", "scraper"] {
            for (port, proto) in PORTS {
                add(from, to, *port, proto);
            }
        }
    }
    e
}

#[test]
fn only_the_intended_paths_are_open() {
    for r in overlays().values() {
        let policies: Vec<Value> = of_kind(&r.objects, "NetworkPolicy").cloned().collect();
        let default_deny = policies.iter().any(|p| {
            p["spec"]["podSelector"].as_object().is_some_and(Map::is_empty)
                && p["spec"]["ingress"].is_null()
                && p["spec"]["egress"].is_null()
                && p["spec"]["policyTypes"] == json!(["Ingress", "Egress"])
        });
        assert!(default_deny, "{}: no default-deny NetworkPolicy", r.overlay);

        let endpoints = endpoints(r);
        let want = expected(r);
        let mut wrong = Vec::new();
        for from in &endpoints {
            for to in &endpoints {
                for (port, proto) in PORTS {
                    let key = format!("{} -> {}:{port}/{proto}", from.label, to.label);
                    let is = allowed(&policies, from, to, *port, proto);
                    if is != want.contains(&key) {
                        wrong.push(format!(
                            "{key}: {}",
                            if is { "allowed, must be denied" } else { "denied, must be allowed" }
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{} overlay network policies:\n  {}", r.overlay, wrong.join("\n  "));
    }
}

#[test]
fn the_evaluator_knows_isolation_named_ports_and_ip_blocks() {
    let pod = |name: &str, l: Value| {
        Endpoint::pod(name, "ns", json!({}), labels(l), vec![("web".into(), 8000, "TCP".into())])
    };
    let a = pod("a", json!({"app": "a"}));
    let b = pod("b", json!({"app": "b"}));
    let out = Endpoint::outside("out", Ipv4Addr::new(10, 1, 2, 3));
    // No policy: everything flows.
    assert!(allowed(&[], &a, &b, 8000, "TCP"));
    let policies = vec![
        json!({"metadata": {"namespace": "ns"}, "spec": {"podSelector": {"matchLabels": {"app": "b"}},
            "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
            "ports": [{"port": "web"}]}]}}),
        json!({"metadata": {"namespace": "ns"}, "spec": {"podSelector": {"matchLabels": {"app": "a"}},
            "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}]},
            {"to": [{"podSelector": {}}], "ports": [{"port": 8000, "protocol": "TCP"}]}]}}),
    ];
    assert!(allowed(&policies, &a, &b, 8000, "TCP"));
    assert!(!allowed(&policies, &a, &b, 8001, "TCP"));
    // b's egress is not restricted and a is isolated for egress only: b reaches a.
    assert!(allowed(&policies, &b, &a, 8000, "TCP"));
    assert!(!allowed(&policies, &out, &b, 8000, "TCP"), "b only takes a");
    assert!(allowed(&policies, &a, &out, 1, "UDP"));
    let excepted = Endpoint::outside("x", Ipv4Addr::new(10, 9, 0, 1));
    assert!(!allowed(&policies, &a, &excepted, 1, "TCP"));
}
