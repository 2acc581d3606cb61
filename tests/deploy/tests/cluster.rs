//! deploy/cluster: what an administrator applies in each managed cluster. The files are valid,
//! rbac.yaml holds RBAC objects only, kubegate's ServiceAccount may only impersonate, and the
//! kubegate:role:* groups get what MISSION.md's role table gives, as far as RBAC can say it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use kubegate_deploy_tests::k8s::{find, id, kind, name, of_kind};
use kubegate_deploy_tests::render::documents_of;
use kubegate_deploy_tests::{deploy_dir, tools};
use serde_json::Value;

const ROLES: &[&str] = &["environment-admin", "operator", "helpdesk", "standard", "read-only"];
/// Roles whose namespaced rights are granted per namespace (per-namespace/<role>.yaml).
const PER_NAMESPACE: &[&str] = &["operator", "standard", "read-only"];

fn cluster_dir() -> PathBuf {
    deploy_dir().join("cluster")
}

fn rbac() -> Vec<Value> {
    documents_of(&cluster_dir().join("rbac.yaml"))
}

/// A per-namespace template, applied to `namespace`.
fn per_namespace(role: &str, namespace: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(cluster_dir().join("per-namespace").join(format!("{role}.yaml"))).unwrap();
    assert!(
        text.contains("REPLACE_NAMESPACE"),
        "per-namespace/{role}.yaml: the namespace is the placeholder"
    );
    kubegate_deploy_tests::render::documents(&text.replace("REPLACE_NAMESPACE", namespace)).unwrap()
}

#[test]
fn the_files_are_valid_and_rbac_yaml_holds_only_rbac() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("per-namespace.yaml");
    let mut text = String::new();
    for role in PER_NAMESPACE {
        let t = std::fs::read_to_string(cluster_dir().join("per-namespace").join(format!("{role}.yaml")))
            .unwrap();
        text.push_str(&t.replace("REPLACE_NAMESPACE", "dev"));
        text.push_str("\n---\n");
    }
    std::fs::write(&templates, text).unwrap();
    let rbac_file = cluster_dir().join("rbac.yaml");
    let sa_file = cluster_dir().join("serviceaccount.yaml");
    for version in tools::KUBERNETES_VERSIONS {
        if let Err(report) = tools::validate_schemas(&[&rbac_file, &sa_file, &templates], version) {
            panic!("deploy/cluster is not valid for Kubernetes {version}:\n{report}");
        }
    }
    for obj in rbac() {
        assert_eq!(obj["apiVersion"], "rbac.authorization.k8s.io/v1", "rbac.yaml: {}", id(&obj));
        assert!(
            matches!(kind(&obj), "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"),
            "rbac.yaml: {}",
            id(&obj)
        );
    }
    // Every file applied with `kubectl apply -f deploy/cluster/` is listed here: nothing else
    // lands in a managed cluster by surprise.
    let top: BTreeSet<String> = std::fs::read_dir(cluster_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(top, BTreeSet::from(["rbac.yaml".to_string(), "serviceaccount.yaml".to_string()]));

    let sa = documents_of(&sa_file);
    let account = find(&sa, "ServiceAccount", "kubegate").expect("ServiceAccount kubegate");
    assert_eq!(account["metadata"]["namespace"], "kubegate-system");
    assert!(find(&sa, "Namespace", "kubegate-system").is_some());
    let token = of_kind(&sa, "Secret").next().expect("a token Secret");
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    assert_eq!(token["metadata"]["namespace"], "kubegate-system");
    assert_eq!(token["metadata"]["annotations"]["kubernetes.io/service-account.name"], "kubegate");
    assert!(
        token["data"].is_null() && token["stringData"].is_null(),
        "the token is filled in by the cluster"
    );
}

#[test]
fn kubegates_account_may_only_impersonate() {
    let objects = rbac();
    let sa_bindings: Vec<&Value> = objects
        .iter()
        .filter(|o| kind(o).ends_with("Binding"))
        .filter(|o| o["subjects"].as_array().unwrap().iter().any(|s| s["kind"] == "ServiceAccount"))
        .collect();
    assert_eq!(sa_bindings.len(), 1, "kubegate's ServiceAccount has exactly one binding");
    let binding = sa_bindings[0];
    assert_eq!(kind(binding), "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "kubegate", "namespace": "kubegate-system"}])
    );
    let role = find(&objects, "ClusterRole", binding["roleRef"]["name"].as_str().unwrap())
        .expect("the bound ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(
            rule["verbs"],
            serde_json::json!(["impersonate"]),
            "{}: only the impersonate verb",
            name(role)
        );
        assert!(rule["resourceNames"].is_null() && rule["nonResourceURLs"].is_null());
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                granted.insert(format!("{}/{}", group.as_str().unwrap(), resource.as_str().unwrap()));
            }
        }
    }
    // users and groups live in the core group; uids and user extras in authentication.k8s.io.
    // Service accounts are not impersonated.
    let wanted: BTreeSet<String> =
        ["/users", "/groups", "authentication.k8s.io/uids", "authentication.k8s.io/userextras/*"]
            .map(String::from)
            .into();
    assert_eq!(granted, wanted);
}

/// A request as the RBAC authorizer sees it.
struct Req<'a> {
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    namespace: &'a str,
}

fn req<'a>(verb: &'a str, group: &'a str, resource: &'a str, namespace: &'a str) -> Req<'a> {
    Req { verb, group, resource, namespace }
}

fn rule_allows(rule: &Value, r: &Req) -> bool {
    let has =
        |key: &str, want: &str| rule[key].as_array().into_iter().flatten().any(|v| v == "*" || v == want);
    let resource_ok = rule["resources"].as_array().into_iter().flatten().any(|v| {
        let v = v.as_str().unwrap();
        v == "*" || v == r.resource || (v.ends_with("/*") && r.resource.starts_with(&v[..v.len() - 1]))
    });
    has("verbs", r.verb) && has("apiGroups", r.group) && resource_ok && rule["resourceNames"].is_null()
}

/// Whether a user in `groups` may make `r`, under RBAC `objects`.
fn authorized(objects: &[Value], groups: &[&str], r: &Req) -> bool {
    let subject_matches = |b: &Value| {
        b["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["kind"] == "Group" && groups.iter().any(|g| s["name"] == *g))
    };
    let role_rules = |b: &Value| -> Vec<Value> {
        let role_ref = &b["roleRef"];
        let role_name = role_ref["name"].as_str().unwrap();
        let role = match role_ref["kind"].as_str().unwrap() {
            "ClusterRole" => find(objects, "ClusterRole", role_name),
            _ => objects.iter().find(|o| {
                kind(o) == "Role"
                    && name(o) == role_name
                    && o["metadata"]["namespace"] == b["metadata"]["namespace"]
            }),
        };
        role.unwrap_or_else(|| panic!("{} refers to missing {role_name}", id(b)))["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    objects
        .iter()
        .filter(|o| kind(o) == "ClusterRoleBinding" && subject_matches(o))
        .any(|b| role_rules(b).iter().any(|rule| rule_allows(rule, r)))
        || (!r.namespace.is_empty()
            && objects
                .iter()
                .filter(|o| {
                    kind(o) == "RoleBinding"
                        && o["metadata"]["namespace"] == r.namespace
                        && subject_matches(o)
                })
                .any(|b| role_rules(b).iter().any(|rule| rule_allows(rule, r))))
}

#[test]
fn the_role_groups_get_what_the_role_table_gives() {
    // The cluster-wide file, plus the per-namespace bindings in "dev" (operator also in "team").
    let mut objects = rbac();
    for role in PER_NAMESPACE {
        objects.extend(per_namespace(role, "dev"));
    }
    objects.extend(per_namespace("operator", "team"));

    // (role, request, allowed)
    let table: Vec<(&str, Req, bool)> = vec![
        // environment-admin: everything
        ("environment-admin", req("delete", "", "nodes", ""), true),
        ("environment-admin", req("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), true),
        ("environment-admin", req("get", "", "secrets", "kube-system"), true),
        ("environment-admin", req("create", "", "pods/exec", "kube-system"), true),
        // operator: all verbs in its namespaces, none in system ones; read cluster-scoped
        ("operator", req("create", "apps", "deployments", "dev"), true),
        ("operator", req("delete", "", "secrets", "team"), true),
        ("operator", req("create", "", "pods/exec", "dev"), true),
        ("operator", req("get", "", "pods", "kube-system"), false),
        ("operator", req("get", "", "secrets", "kube-system"), false),
        ("operator", req("list", "", "nodes", ""), true),
        ("operator", req("list", "", "namespaces", ""), true),
        ("operator", req("get", "rbac.authorization.k8s.io", "clusterroles", ""), true),
        ("operator", req("delete", "", "nodes", ""), false),
        ("operator", req("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), false),
        ("operator", req("list", "", "secrets", ""), false),
        // helpdesk: read everything but Secrets; logs; no exec, attach, port-forward
        ("helpdesk", req("list", "", "pods", ""), true),
        ("helpdesk", req("get", "", "pods/log", "kube-system"), true),
        ("helpdesk", req("list", "apps", "deployments", ""), true),
        ("helpdesk", req("list", "", "nodes", ""), true),
        ("helpdesk", req("get", "", "secrets", "dev"), false),
        ("helpdesk", req("list", "", "secrets", ""), false),
        ("helpdesk", req("create", "", "pods/exec", "dev"), false),
        ("helpdesk", req("get", "", "pods/exec", "dev"), false),
        ("helpdesk", req("create", "", "pods/attach", "dev"), false),
        ("helpdesk", req("create", "", "pods/portforward", "dev"), false),
        ("helpdesk", req("delete", "", "pods", "dev"), false),
        ("helpdesk", req("update", "apps", "deployments", "dev"), false),
        // standard: everything, exec and port-forward in granted namespaces; read namespaces, nodes
        ("standard", req("create", "", "pods", "dev"), true),
        ("standard", req("create", "", "pods/exec", "dev"), true),
        ("standard", req("create", "", "pods/portforward", "dev"), true),
        ("standard", req("get", "", "secrets", "dev"), true),
        ("standard", req("list", "", "namespaces", ""), true),
        ("standard", req("list", "", "nodes", ""), true),
        ("standard", req("get", "", "pods", "team"), false),
        ("standard", req("list", "", "pods", ""), false),
        ("standard", req("delete", "", "nodes", ""), false),
        ("standard", req("list", "rbac.authorization.k8s.io", "clusterroles", ""), false),
        // read-only: get/list/watch in granted namespaces but Secrets; logs
        ("read-only", req("list", "", "pods", "dev"), true),
        ("read-only", req("watch", "apps", "deployments", "dev"), true),
        ("read-only", req("get", "", "pods/log", "dev"), true),
        ("read-only", req("get", "", "secrets", "dev"), false),
        ("read-only", req("delete", "", "pods", "dev"), false),
        ("read-only", req("create", "", "pods/exec", "dev"), false),
        ("read-only", req("create", "", "pods/portforward", "dev"), false),
        ("read-only", req("list", "", "pods", "team"), false),
        ("read-only", req("list", "", "pods", ""), false),
        ("read-only", req("list", "", "nodes", ""), false),
    ];
    let mut wrong = Vec::new();
    for (role, r, want) in &table {
        let group = format!("kubegate:role:{role}");
        let is = authorized(&objects, &[group.as_str(), "system:authenticated"], r);
        if is != *want {
            wrong.push(format!(
                "{role}: {} {}{} in {:?}: {}",
                r.verb,
                if r.group.is_empty() { String::new() } else { format!("{}/", r.group) },
                r.resource,
                r.namespace,
                if is { "allowed, must be denied" } else { "denied, must be allowed" }
            ));
        }
    }
    assert!(wrong.is_empty(), "RBAC differs from the role table:\n  {}", wrong.join("\n  "));

    // Nobody outside the role groups, and no group but its own, gets a role.
    assert!(!authorized(&objects, &["system:authenticated"], &req("get", "", "pods", "dev")));
    assert!(!authorized(&objects, &["kubegate:team:ops"], &req("get", "", "pods", "dev")));
}

#[test]
fn namespaced_parts_are_never_bound_cluster_wide() {
    let objects = rbac();
    for role in ROLES {
        assert!(
            objects
                .iter()
                .any(|o| kind(o) == "ClusterRole" && name(o).starts_with(&format!("kubegate:{role}"))),
            "no ClusterRole for {role}"
        );
    }
    for b in of_kind(&objects, "ClusterRoleBinding") {
        let role = b["roleRef"]["name"].as_str().unwrap();
        for namespaced in PER_NAMESPACE {
            assert_ne!(
                role,
                format!("kubegate:{namespaced}"),
                "{} binds a namespaced role cluster-wide",
                id(b)
            );
        }
    }
    for role in PER_NAMESPACE {
        let docs = per_namespace(role, "dev");
        assert_eq!(docs.len(), 1);
        let b = &docs[0];
        assert_eq!(kind(b), "RoleBinding");
        assert_eq!(b["roleRef"]["name"], format!("kubegate:{role}"));
        assert!(find(&objects, "ClusterRole", &format!("kubegate:{role}")).is_some());
        assert_eq!(b["subjects"][0]["name"], format!("kubegate:role:{role}"));
    }
}
