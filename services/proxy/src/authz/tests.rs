#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;

use super::*;
use crate::request_info::classify;

fn grant(role: &str) -> Grant {
    match role {
        "admin" => Grant { role: EnvironmentRole::EnvironmentAdmin, namespaces: vec![] },
        "operator" => Grant { role: EnvironmentRole::Operator, namespaces: vec![] },
        "helpdesk" => Grant { role: EnvironmentRole::Helpdesk, namespaces: vec![] },
        "standard" => Grant { role: EnvironmentRole::Standard, namespaces: vec!["dev".into(), "web".into()] },
        "read-only" => Grant { role: EnvironmentRole::ReadOnly, namespaces: vec!["dev".into()] },
        other => panic!("no grant {other}"),
    }
}

/// `allow`, `filtered`, `reject` (refused by classification: 400), or `deny:<part of the reason>`.
fn decide(role: &str, method: &str, path: &str, query: &str) -> String {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let classified = match classify(&method, path, (!query.is_empty()).then_some(query)) {
        Ok(c) => c,
        Err(_) => return "reject".to_string(),
    };
    let grant = grant(role);
    match authorize(&classified.info, &grant) {
        Decision::Allow => "allow".to_string(),
        Decision::AllowNamespacesFiltered { namespaces } => {
            assert_eq!(namespaces, grant.namespaces.as_slice());
            "filtered".to_string()
        }
        Decision::Deny { reason } => format!("deny:{reason}"),
    }
}

fn matches(expected: &str, got: &str) -> bool {
    match expected.strip_prefix("deny:") {
        Some(part) => got.starts_with("deny:") && got.contains(part),
        None => expected == got,
    }
}

const DEV_PODS: &str = "/api/v1/namespaces/dev/pods";
const SYS_PODS: &str = "/api/v1/namespaces/kube-system/pods";
const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const SSRR: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const NOT_GRANTED_SYS: &str =
    "deny:namespace \"kube-system\" is not granted to you in this environment (role standard: dev, web)";
const RO_NOT_GRANTED_WEB: &str =
    "deny:namespace \"web\" is not granted to you in this environment (role read-only: dev)";
const ESCAPE: &str = "deny:is cluster-scoped and cannot be requested inside namespace \"dev\"";

/// (role, method, path, query, expected)
const TABLE: &[(&str, &str, &str, &str, &str)] = &[
    // ================= environment-admin: everything
    ("admin", "GET", "/api/v1/secrets", "", "allow"),
    ("admin", "POST", "/api/v1/namespaces/kube-system/pods/etcd/exec", "command=sh", "allow"),
    ("admin", "GET", "/api/v1/nodes/n1/proxy/metrics", "", "allow"),
    ("admin", "GET", "/api/v1/namespaces/kube-system/services/dash/proxy/", "", "allow"),
    ("admin", "DELETE", "/api/v1/namespaces/kube-system", "", "allow"),
    ("admin", "GET", "/api/v1/namespaces/dev/nodes", "", ESCAPE),
    ("admin", "GET", "/metrics", "", "allow"),
    ("admin", "GET", "/", "", "allow"),
    ("admin", "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "", "allow"),
    ("admin", "GET", "/apis/example.com/v1/widgets", "", "allow"),
    ("admin", "GET", "/api/v1/namespaces", "", "allow"),
    ("admin", "DELETE", "/api/v1/pods", "", "allow"),
    ("admin", "GET", "/api/v1/namespaces/dev/pods/x/exec", "", "allow"),
    // ================= operator
    ("operator", "GET", DEV_PODS, "", "allow"),
    ("operator", "POST", DEV_PODS, "", "allow"),
    ("operator", "DELETE", DEV_PODS, "", "allow"),
    ("operator", "PATCH", "/apis/apps/v1/namespaces/dev/deployments/web", "", "allow"),
    ("operator", "GET", "/api/v1/namespaces/dev/secrets", "", "allow"),
    ("operator", "GET", "/api/v1/namespaces/dev/secrets/db", "", "allow"),
    ("operator", "POST", "/api/v1/namespaces/dev/pods/x/exec", "command=sh", "allow"),
    ("operator", "GET", "/api/v1/namespaces/dev/pods/x/exec", "command=sh", "allow"),
    ("operator", "POST", "/api/v1/namespaces/dev/pods/x/attach", "", "allow"),
    ("operator", "GET", "/api/v1/namespaces/dev/pods/x/portforward", "", "allow"),
    ("operator", "GET", "/api/v1/namespaces/dev/pods/x/log", "", "allow"),
    ("operator", "GET", "/api/v1/namespaces/dev/pods/x/proxy/healthz", "", "allow"),
    ("operator", "GET", "/api/v1/namespaces/dev/services/web/proxy/", "", "allow"),
    ("operator", "GET", "/api/v1/proxy/namespaces/dev/pods/x", "", "allow"),
    ("operator", "PATCH", "/api/v1/namespaces/dev/pods/x/ephemeralcontainers", "", "allow"),
    ("operator", "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings", "", "allow"),
    // operator in the system namespaces: read only, no Secrets, no connect, no proxy
    ("operator", "GET", SYS_PODS, "", "allow"),
    ("operator", "GET", "/api/v1/namespaces/kube-system/pods/etcd/log", "follow=true", "allow"),
    ("operator", "GET", "/api/v1/namespaces/kube-system/pods/etcd/ephemeralcontainers", "", "allow"),
    (
        "operator",
        "GET",
        "/api/v1/namespaces/kube-system/secrets",
        "",
        "deny:role operator may not read secrets in system namespace \"kube-system\"",
    ),
    (
        "operator",
        "DELETE",
        "/api/v1/namespaces/kube-system/pods/etcd",
        "",
        "deny:role operator may only read in system namespace \"kube-system\"; deleting pods there",
    ),
    (
        "operator",
        "POST",
        "/api/v1/namespaces/kube-system/pods/etcd/exec",
        "",
        "deny:role operator may not exec into pods in system namespace \"kube-system\"",
    ),
    (
        "operator",
        "GET",
        "/api/v1/namespaces/kube-system/pods/etcd/exec",
        "",
        "deny:role operator may not exec into pods in system namespace",
    ),
    (
        "operator",
        "POST",
        "/api/v1/namespaces/kube-system/pods/etcd/portforward",
        "",
        "deny:may not port-forward to pods in system namespace",
    ),
    (
        "operator",
        "GET",
        "/api/v1/namespaces/kube-system/services/dash/proxy/",
        "",
        "deny:may not use the proxy subresource of services in system namespace",
    ),
    (
        "operator",
        "PATCH",
        "/api/v1/namespaces/kube-system/pods/etcd/ephemeralcontainers",
        "",
        "deny:may only read in system namespace",
    ),
    ("operator", "GET", "/api/v1/namespaces/kube-public/configmaps", "", "allow"),
    (
        "operator",
        "POST",
        "/api/v1/namespaces/kube-public/configmaps",
        "",
        "deny:may only read in system namespace \"kube-public\"",
    ),
    ("operator", "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", "", "allow"),
    (
        "operator",
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
        "",
        "deny:may only read in system namespace \"kube-node-lease\"",
    ),
    ("operator", "POST", SYS_PODS, "dryRun=All", "deny:may only read in system namespace"),
    (
        "operator",
        "GET",
        "/apis/subresources.kubevirt.io/v1/namespaces/kube-system/virtualmachineinstances/vm/console",
        "",
        "deny:may not read the \"console\" subresource",
    ),
    (
        "operator",
        "GET",
        "/apis/subresources.kubevirt.io/v1/namespaces/dev/virtualmachineinstances/vm/console",
        "",
        "allow",
    ),
    // operator across all namespaces
    ("operator", "GET", "/api/v1/pods", "limit=500", "allow"),
    ("operator", "GET", "/api/v1/pods", "watch=true", "allow"),
    (
        "operator",
        "GET",
        "/api/v1/secrets",
        "",
        "deny:listing secrets across all namespaces is not allowed for role operator",
    ),
    ("operator", "GET", "/api/v1/watch/secrets", "", "deny:watching secrets across all namespaces"),
    (
        "operator",
        "DELETE",
        "/api/v1/pods",
        "",
        "deny:deleting pods across all namespaces is not allowed for role operator; use -n <namespace>",
    ),
    ("operator", "POST", "/api/v1/pods", "", "deny:creating pods across all namespaces"),
    // operator on cluster-scoped resources: read only
    ("operator", "GET", "/api/v1/nodes", "", "allow"),
    ("operator", "GET", "/api/v1/nodes/n1/status", "", "allow"),
    (
        "operator",
        "PATCH",
        "/api/v1/nodes/n1",
        "",
        "deny:role operator may only read cluster-scoped resources; patching nodes",
    ),
    (
        "operator",
        "GET",
        "/api/v1/nodes/n1/proxy/metrics",
        "",
        "deny:role operator may not use the proxy subresource of nodes",
    ),
    (
        "operator",
        "GET",
        "/api/v1/proxy/nodes/n1/stats",
        "",
        "deny:may not use the proxy subresource of nodes",
    ),
    ("operator", "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "", "allow"),
    (
        "operator",
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "",
        "deny:creating clusterrolebindings.rbac.authorization.k8s.io is not allowed",
    ),
    ("operator", "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "", "allow"),
    (
        "operator",
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        "",
        "deny:may only read cluster-scoped resources",
    ),
    ("operator", "GET", "/api/v1/namespaces", "", "allow"),
    ("operator", "GET", "/api/v1/namespaces/kube-system", "", "allow"),
    (
        "operator",
        "POST",
        "/api/v1/namespaces",
        "",
        "deny:may only read cluster-scoped resources; creating namespaces",
    ),
    (
        "operator",
        "DELETE",
        "/api/v1/namespaces/dev",
        "",
        "deny:may only read cluster-scoped resources; deleting namespaces",
    ),
    ("operator", "PUT", "/api/v1/namespaces/dev/finalize", "", "deny:updating namespaces/finalize"),
    ("operator", "GET", "/apis/storage.k8s.io/v1/storageclasses", "", "allow"),
    ("operator", "GET", "/api/v1/persistentvolumes", "", "allow"),
    // operator: cluster-scoped through a namespace, custom resources
    ("operator", "GET", "/api/v1/namespaces/dev/nodes", "", ESCAPE),
    ("operator", "GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterroles", "", ESCAPE),
    ("operator", "DELETE", "/api/v1/namespaces/dev/namespaces/kube-system", "", ESCAPE),
    ("operator", "GET", "/apis/example.com/v1/widgets", "", "allow"),
    (
        "operator",
        "POST",
        "/apis/example.com/v1/widgets",
        "",
        "deny:role operator may not create widgets.example.com without a namespace",
    ),
    ("operator", "GET", "/apis/example.com/v1/namespaces/dev/widgets", "", "allow"),
    ("operator", "DELETE", "/apis/example.com/v1/namespaces/dev/widgets/w1", "", "allow"),
    (
        "operator",
        "DELETE",
        "/apis/example.com/v1/namespaces/kube-system/widgets/w1",
        "",
        "deny:may only read in system namespace",
    ),
    ("operator", "GET", "/metrics", "", "deny:path \"/metrics\" is not available to role operator"),
    ("operator", "POST", SSAR, "", "allow"),
    // ================= helpdesk: read everything but Secrets; logs; no connect, no proxy
    ("helpdesk", "GET", DEV_PODS, "", "allow"),
    ("helpdesk", "GET", SYS_PODS, "", "allow"),
    ("helpdesk", "GET", "/api/v1/pods", "", "allow"),
    ("helpdesk", "GET", "/api/v1/pods", "watch=1", "allow"),
    ("helpdesk", "HEAD", "/api/v1/namespaces/dev/pods/x", "", "allow"),
    ("helpdesk", "GET", "/api/v1/namespaces/dev/pods/x/log", "", "allow"),
    ("helpdesk", "GET", "/api/v1/namespaces/kube-system/pods/etcd/log", "follow=true", "allow"),
    ("helpdesk", "GET", "/api/v1/namespaces/dev/secrets", "", "deny:role helpdesk may not read secrets"),
    ("helpdesk", "GET", "/api/v1/namespaces/dev/secrets/db", "", "deny:role helpdesk may not read secrets"),
    ("helpdesk", "GET", "/api/v1/secrets", "", "deny:role helpdesk may not read secrets"),
    (
        "helpdesk",
        "GET",
        "/api/v1/watch/namespaces/dev/secrets",
        "",
        "deny:role helpdesk may not read secrets",
    ),
    (
        "helpdesk",
        "GET",
        "/apis/example.com/v1/namespaces/dev/secrets",
        "",
        "deny:role helpdesk may not read secrets",
    ),
    (
        "helpdesk",
        "POST",
        "/api/v1/namespaces/dev/pods/x/exec",
        "command=sh",
        "deny:role helpdesk may not exec into pods",
    ),
    (
        "helpdesk",
        "GET",
        "/api/v1/namespaces/dev/pods/x/exec",
        "command=sh",
        "deny:role helpdesk may not exec into pods",
    ),
    (
        "helpdesk",
        "POST",
        "/api/v1/namespaces/dev/pods/x/attach",
        "",
        "deny:role helpdesk may not attach to pods",
    ),
    (
        "helpdesk",
        "GET",
        "/api/v1/namespaces/dev/pods/x/attach",
        "",
        "deny:role helpdesk may not attach to pods",
    ),
    (
        "helpdesk",
        "POST",
        "/api/v1/namespaces/dev/pods/x/portforward",
        "",
        "deny:role helpdesk may not port-forward to pods",
    ),
    (
        "helpdesk",
        "GET",
        "/api/v1/namespaces/dev/pods/x/portforward",
        "",
        "deny:role helpdesk may not port-forward to pods",
    ),
    (
        "helpdesk",
        "GET",
        "/api/v1/namespaces/dev/pods/x/proxy/",
        "",
        "deny:role helpdesk may not use the proxy subresource of pods",
    ),
    (
        "helpdesk",
        "GET",
        "/api/v1/namespaces/dev/services/web/proxy/api",
        "",
        "deny:may not use the proxy subresource of services",
    ),
    (
        "helpdesk",
        "GET",
        "/api/v1/proxy/namespaces/dev/services/web",
        "",
        "deny:may not use the proxy subresource of services",
    ),
    (
        "helpdesk",
        "GET",
        "/api/v1/nodes/n1/proxy/metrics",
        "",
        "deny:may not use the proxy subresource of nodes",
    ),
    (
        "helpdesk",
        "PATCH",
        "/api/v1/namespaces/dev/pods/x/ephemeralcontainers",
        "",
        "deny:role helpdesk may only read (get, list, watch); patching pods/ephemeralcontainers",
    ),
    ("helpdesk", "GET", "/api/v1/namespaces/dev/pods/x/ephemeralcontainers", "", "allow"),
    (
        "helpdesk",
        "DELETE",
        "/api/v1/namespaces/dev/pods/x",
        "",
        "deny:role helpdesk may only read (get, list, watch); deleting pods is not allowed",
    ),
    ("helpdesk", "DELETE", DEV_PODS, "", "deny:deleting pods is not allowed"),
    ("helpdesk", "POST", DEV_PODS, "dryRun=All", "deny:creating pods is not allowed"),
    ("helpdesk", "PUT", "/api/v1/namespaces/dev/pods/x/status", "", "deny:updating pods/status"),
    ("helpdesk", "GET", "/apis/apps/v1/namespaces/dev/deployments/web/scale", "", "allow"),
    (
        "helpdesk",
        "PATCH",
        "/apis/apps/v1/namespaces/dev/deployments/web/scale",
        "",
        "deny:patching deployments.apps/scale",
    ),
    (
        "helpdesk",
        "GET",
        "/api/v1/namespaces/dev/serviceaccounts/default/token",
        "",
        "deny:role helpdesk may not read the \"token\" subresource of serviceaccounts",
    ),
    ("helpdesk", "POST", "/api/v1/namespaces/dev/serviceaccounts/default/token", "", "deny:may only read"),
    ("helpdesk", "GET", "/api/v1/nodes", "", "allow"),
    ("helpdesk", "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "", "allow"),
    ("helpdesk", "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "", "allow"),
    ("helpdesk", "GET", "/api/v1/namespaces", "", "allow"),
    ("helpdesk", "GET", "/api/v1/namespaces/kube-system", "", "allow"),
    ("helpdesk", "DELETE", "/api/v1/namespaces/dev", "", "deny:may only read"),
    ("helpdesk", "GET", "/apis/example.com/v1/widgets", "", "allow"),
    ("helpdesk", "GET", "/apis/example.com/v1/namespaces/dev/widgets", "", "allow"),
    ("helpdesk", "GET", "/api/v1/namespaces/dev/nodes", "", ESCAPE),
    ("helpdesk", "GET", "/metrics", "", "deny:path \"/metrics\" is not available to role helpdesk"),
    ("helpdesk", "GET", "/api", "", "allow"),
    ("helpdesk", "POST", WHOAMI, "", "allow"),
    // ================= standard (dev, web): everything in its namespaces; read namespaces and nodes
    ("standard", "GET", DEV_PODS, "", "allow"),
    ("standard", "GET", "/api/v1/namespaces/web/pods", "", "allow"),
    ("standard", "POST", DEV_PODS, "", "allow"),
    ("standard", "PUT", "/api/v1/namespaces/dev/pods/x", "", "allow"),
    ("standard", "PATCH", "/api/v1/namespaces/dev/pods/x", "", "allow"),
    ("standard", "DELETE", "/api/v1/namespaces/dev/pods/x", "", "allow"),
    ("standard", "DELETE", DEV_PODS, "", "allow"),
    ("standard", "GET", "/api/v1/namespaces/dev/secrets", "", "allow"),
    ("standard", "POST", "/api/v1/namespaces/dev/secrets", "", "allow"),
    ("standard", "POST", "/api/v1/namespaces/dev/pods/x/exec", "command=sh", "allow"),
    ("standard", "GET", "/api/v1/namespaces/dev/pods/x/exec", "command=sh", "allow"),
    ("standard", "POST", "/api/v1/namespaces/dev/pods/x/attach", "", "allow"),
    ("standard", "GET", "/api/v1/namespaces/dev/pods/x/portforward", "", "allow"),
    ("standard", "POST", "/api/v1/namespaces/dev/pods/x/portforward", "", "allow"),
    ("standard", "GET", "/api/v1/namespaces/dev/pods/x/log", "follow=true", "allow"),
    ("standard", "PATCH", "/api/v1/namespaces/dev/pods/x/ephemeralcontainers", "", "allow"),
    ("standard", "POST", "/api/v1/namespaces/dev/pods/x/eviction", "", "allow"),
    ("standard", "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles", "", "allow"),
    ("standard", "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings", "", "allow"),
    (
        "standard",
        "POST",
        "/apis/authorization.k8s.io/v1/namespaces/dev/localsubjectaccessreviews",
        "",
        "allow",
    ),
    ("standard", "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/dev/pods", "", "allow"),
    (
        "standard",
        "GET",
        "/api/v1/namespaces/dev/pods/x/proxy/",
        "",
        "deny:role standard may not use the proxy subresource of pods",
    ),
    (
        "standard",
        "GET",
        "/api/v1/namespaces/dev/services/web/proxy/",
        "",
        "deny:role standard may not use the proxy subresource of services",
    ),
    (
        "standard",
        "GET",
        "/api/v1/proxy/namespaces/dev/pods/x",
        "",
        "deny:may not use the proxy subresource of pods",
    ),
    (
        "standard",
        "GET",
        "/api/v1/nodes/n1/proxy/metrics",
        "",
        "deny:may not use the proxy subresource of nodes",
    ),
    ("standard", "GET", SYS_PODS, "", NOT_GRANTED_SYS),
    ("standard", "POST", "/api/v1/namespaces/kube-system/pods/etcd/exec", "", NOT_GRANTED_SYS),
    ("standard", "GET", "/api/v1/namespaces/kube-system/secrets", "", NOT_GRANTED_SYS),
    ("standard", "GET", "/api/v1/namespaces/qa/pods", "", "deny:namespace \"qa\" is not granted to you"),
    ("standard", "GET", "/api/v1/namespaces/k%75be-system/pods", "", NOT_GRANTED_SYS),
    ("standard", "GET", "/api/v1/namespaces/d%65v/pods", "", "allow"),
    ("standard", "GET", SYS_PODS, "as=admin", NOT_GRANTED_SYS),
    ("standard", "GET", SYS_PODS, "impersonate-user=admin&impersonate-group=system:masters", NOT_GRANTED_SYS),
    ("standard", "DELETE", "/api/v1/namespaces/kube-system/pods/etcd", "dryRun=All", NOT_GRANTED_SYS),
    (
        "standard",
        "GET",
        "/api/v1/pods",
        "limit=500",
        "deny:listing pods across all namespaces is not allowed for role standard; use -n <namespace>",
    ),
    ("standard", "GET", "/api/v1/pods", "watch=true", "deny:watching pods across all namespaces"),
    ("standard", "GET", "/api/v1/watch/pods", "", "deny:watching pods across all namespaces"),
    ("standard", "DELETE", "/api/v1/pods", "", "deny:deleting pods across all namespaces"),
    ("standard", "POST", "/api/v1/pods", "", "deny:creating pods across all namespaces"),
    (
        "standard",
        "GET",
        "/api/v1/secrets",
        "impersonate-user=admin",
        "deny:listing secrets across all namespaces",
    ),
    (
        "standard",
        "GET",
        "/apis/apps/v1/deployments",
        "",
        "deny:listing deployments.apps across all namespaces",
    ),
    ("standard", "GET", "/api/v1/namespaces", "limit=500", "filtered"),
    ("standard", "GET", "/api/v1/namespaces", "watch=1", "filtered"),
    ("standard", "GET", "/api/v1/watch/namespaces", "", "filtered"),
    ("standard", "GET", "/api/v1/namespaces", "fieldSelector=metadata.name%3Dkube-system", "filtered"),
    ("standard", "GET", "/api/v1/namespaces/dev", "", "allow"),
    ("standard", "GET", "/api/v1/namespaces/web", "", "allow"),
    ("standard", "GET", "/api/v1/watch/namespaces/dev", "", "allow"),
    ("standard", "GET", "/api/v1/namespaces/dev/status", "", "allow"),
    ("standard", "GET", "/api/v1/namespaces/kube-system", "", NOT_GRANTED_SYS),
    (
        "standard",
        "DELETE",
        "/api/v1/namespaces/dev",
        "",
        "deny:role standard may not create, change or delete namespaces",
    ),
    ("standard", "PATCH", "/api/v1/namespaces/dev", "", "deny:may not create, change or delete namespaces"),
    ("standard", "POST", "/api/v1/namespaces", "", "deny:may not create, change or delete namespaces"),
    ("standard", "DELETE", "/api/v1/namespaces", "", "deny:may not create, change or delete namespaces"),
    (
        "standard",
        "PUT",
        "/api/v1/namespaces/dev/finalize",
        "",
        "deny:may not create, change or delete namespaces",
    ),
    ("standard", "GET", "/api/v1/nodes", "", "allow"),
    ("standard", "GET", "/api/v1/nodes/n1", "", "allow"),
    ("standard", "GET", "/api/v1/watch/nodes", "", "allow"),
    ("standard", "GET", "/api/v1/nodes/n1/status", "", "allow"),
    ("standard", "GET", "/apis/metrics.k8s.io/v1beta1/nodes", "", "allow"),
    (
        "standard",
        "PATCH",
        "/api/v1/nodes/n1",
        "",
        "deny:role standard may not change cluster-scoped resources; patching nodes",
    ),
    (
        "standard",
        "GET",
        "/api/v1/persistentvolumes",
        "",
        "deny:role standard may read only namespaces and nodes among cluster-scoped resources; listing persistentvolumes",
    ),
    (
        "standard",
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "",
        "deny:may read only namespaces and nodes",
    ),
    (
        "standard",
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "",
        "deny:may not change cluster-scoped resources",
    ),
    (
        "standard",
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "",
        "deny:may read only namespaces and nodes",
    ),
    (
        "standard",
        "GET",
        "/apis/storage.k8s.io/v1/storageclasses",
        "",
        "deny:may read only namespaces and nodes",
    ),
    (
        "standard",
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "",
        "deny:may not change cluster-scoped resources",
    ),
    (
        "standard",
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "",
        "deny:may not change cluster-scoped resources",
    ),
    ("standard", "GET", "/api/v1/namespaces/dev/nodes", "", ESCAPE),
    ("standard", "GET", "/api/v1/namespaces/dev/nodes/n1", "", ESCAPE),
    ("standard", "GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterroles", "", ESCAPE),
    ("standard", "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterrolebindings", "", ESCAPE),
    ("standard", "GET", "/api/v1/namespaces/dev/persistentvolumes", "", ESCAPE),
    ("standard", "GET", "/apis/apiextensions.k8s.io/v1/namespaces/dev/customresourcedefinitions", "", ESCAPE),
    ("standard", "DELETE", "/api/v1/namespaces/dev/namespaces/kube-system", "", ESCAPE),
    ("standard", "GET", "/api/v1/namespaces/dev/namespaces", "", ESCAPE),
    ("standard", "POST", "/apis/authorization.k8s.io/v1/namespaces/dev/selfsubjectaccessreviews", "", ESCAPE),
    (
        "standard",
        "GET",
        "/apis/example.com/v1/widgets",
        "",
        "deny:role standard may not list widgets.example.com without a namespace",
    ),
    ("standard", "GET", "/apis/example.com/v1/widgets/w1", "", "deny:without a namespace"),
    ("standard", "GET", "/apis/example.com/v1/namespaces/dev/widgets", "", "allow"),
    ("standard", "DELETE", "/apis/example.com/v1/namespaces/dev/widgets/w1", "", "allow"),
    (
        "standard",
        "GET",
        "/apis/example.com/v1/namespaces/qa/widgets",
        "",
        "deny:namespace \"qa\" is not granted",
    ),
    ("standard", "POST", SSAR, "", "allow"),
    ("standard", "POST", SSRR, "", "allow"),
    ("standard", "POST", WHOAMI, "", "allow"),
    ("standard", "POST", "/apis/authentication.k8s.io/v1beta1/selfsubjectreviews", "", "allow"),
    ("standard", "GET", "/api", "timeout=32s", "allow"),
    ("standard", "GET", "/apis", "timeout=32s", "allow"),
    ("standard", "GET", "/api/v1", "", "allow"),
    ("standard", "GET", "/apis/apps/v1", "", "allow"),
    ("standard", "GET", "/version", "timeout=5s", "allow"),
    ("standard", "GET", "/openapi/v3/api/v1", "hash=0123", "allow"),
    ("standard", "GET", "/metrics", "", "deny:path \"/metrics\" is not available to role standard"),
    // paths that must never reach authorization (refused as 400)
    ("standard", "GET", "/api/v1/namespaces/dev/../kube-system/secrets", "", "reject"),
    ("standard", "GET", "/api/v1/namespaces/dev%2F..%2Fkube-system/secrets", "", "reject"),
    ("standard", "GET", "/api/v1/namespaces/dev/%2e%2e/kube-system/secrets", "", "reject"),
    ("standard", "GET", "/api/v1/namespaces/dev/pods;/../../kube-system/secrets", "", "reject"),
    ("standard", "GET", "/api/v1/namespaces/dev/pods#/../kube-system", "", "reject"),
    ("standard", "GET", "/api/v1/namespaces/dev%252F..%252Fkube-system/secrets", "", "reject"),
    ("standard", "GET", "/api/v1/namespaces/dev//pods", "", "reject"),
    ("standard", "GET", "/api/v1/namespaces/dev/pods", "watch=1;x", "reject"),
    // ================= read-only (dev): get/list/watch there except Secrets; logs
    ("read-only", "GET", DEV_PODS, "", "allow"),
    ("read-only", "GET", DEV_PODS, "watch=1", "allow"),
    ("read-only", "GET", DEV_PODS, "watch=true", "allow"),
    ("read-only", "GET", DEV_PODS, "watch=false", "allow"),
    ("read-only", "GET", "/api/v1/watch/namespaces/dev/pods", "", "allow"),
    ("read-only", "HEAD", "/api/v1/namespaces/dev/pods/x", "", "allow"),
    ("read-only", "GET", "/api/v1/namespaces/dev/pods/x", "as=admin", "allow"),
    ("read-only", "GET", "/api/v1/namespaces/dev/pods/x/log", "", "allow"),
    ("read-only", "GET", "/api/v1/namespaces/dev/pods/x/log", "container=c&follow=true", "allow"),
    ("read-only", "GET", "/apis/apps/v1/namespaces/dev/deployments/web/scale", "", "allow"),
    ("read-only", "GET", "/api/v1/namespaces/dev/pods/x/ephemeralcontainers", "", "allow"),
    ("read-only", "GET", "/api/v1/namespaces/dev/secrets", "", "deny:role read-only may not read secrets"),
    ("read-only", "GET", "/api/v1/namespaces/dev/secrets/db", "", "deny:role read-only may not read secrets"),
    (
        "read-only",
        "GET",
        "/api/v1/watch/namespaces/dev/secrets",
        "",
        "deny:role read-only may not read secrets",
    ),
    (
        "read-only",
        "POST",
        DEV_PODS,
        "",
        "deny:role read-only may only read (get, list, watch); creating pods is not allowed",
    ),
    ("read-only", "POST", DEV_PODS, "dryRun=All", "deny:creating pods is not allowed"),
    ("read-only", "DELETE", "/api/v1/namespaces/dev/pods/x", "", "deny:deleting pods is not allowed"),
    (
        "read-only",
        "DELETE",
        "/api/v1/namespaces/dev/pods/x",
        "dryRun=All",
        "deny:deleting pods is not allowed",
    ),
    ("read-only", "DELETE", DEV_PODS, "", "deny:deleting pods is not allowed"),
    ("read-only", "PATCH", "/api/v1/namespaces/dev/pods/x", "", "deny:patching pods"),
    ("read-only", "PUT", "/api/v1/namespaces/dev/pods/x/status", "", "deny:updating pods/status"),
    (
        "read-only",
        "POST",
        "/api/v1/namespaces/dev/pods/x/exec",
        "command=sh",
        "deny:role read-only may not exec into pods",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/namespaces/dev/pods/x/exec",
        "command=sh",
        "deny:role read-only may not exec into pods",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/namespaces/dev/pods/x/attach",
        "",
        "deny:role read-only may not attach to pods",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/namespaces/dev/pods/x/portforward",
        "",
        "deny:role read-only may not port-forward to pods",
    ),
    (
        "read-only",
        "POST",
        "/api/v1/namespaces/dev/pods/x/portforward",
        "",
        "deny:role read-only may not port-forward to pods",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/namespaces/dev/pods/x/proxy/",
        "",
        "deny:role read-only may not use the proxy subresource of pods",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/namespaces/dev/services/web/proxy/",
        "",
        "deny:may not use the proxy subresource of services",
    ),
    (
        "read-only",
        "PATCH",
        "/api/v1/namespaces/dev/pods/x/ephemeralcontainers",
        "",
        "deny:patching pods/ephemeralcontainers",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/namespaces/dev/serviceaccounts/default/token",
        "",
        "deny:may not read the \"token\" subresource",
    ),
    ("read-only", "GET", "/api/v1/namespaces/web/pods", "", RO_NOT_GRANTED_WEB),
    (
        "read-only",
        "GET",
        SYS_PODS,
        "",
        "deny:namespace \"kube-system\" is not granted to you in this environment (role read-only: dev)",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/pods",
        "",
        "deny:listing pods across all namespaces is not allowed for role read-only; use -n <namespace>",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/pods",
        "watch=1",
        "deny:watching pods across all namespaces is not allowed for role read-only",
    ),
    ("read-only", "GET", "/api/v1/namespaces", "", "filtered"),
    ("read-only", "GET", "/api/v1/watch/namespaces", "", "filtered"),
    ("read-only", "GET", "/api/v1/namespaces/dev", "", "allow"),
    ("read-only", "GET", "/api/v1/namespaces/web", "", RO_NOT_GRANTED_WEB),
    (
        "read-only",
        "DELETE",
        "/api/v1/namespaces/dev",
        "",
        "deny:role read-only may not create, change or delete namespaces",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/namespaces/dev/finalize",
        "",
        "deny:may not read the \"finalize\" subresource",
    ),
    (
        "read-only",
        "GET",
        "/api/v1/nodes",
        "",
        "deny:role read-only may not access cluster-scoped resources; listing nodes",
    ),
    (
        "read-only",
        "GET",
        "/apis/metrics.k8s.io/v1beta1/nodes",
        "",
        "deny:may not access cluster-scoped resources",
    ),
    (
        "read-only",
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "",
        "deny:may not access cluster-scoped resources",
    ),
    ("read-only", "GET", "/api/v1/namespaces/dev/nodes", "", ESCAPE),
    ("read-only", "GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterroles/admin", "", ESCAPE),
    ("read-only", "GET", "/apis/example.com/v1/widgets", "", "deny:without a namespace"),
    ("read-only", "GET", "/apis/example.com/v1/namespaces/dev/widgets", "", "allow"),
    (
        "read-only",
        "POST",
        "/apis/example.com/v1/namespaces/dev/widgets",
        "",
        "deny:creating widgets.example.com is not allowed",
    ),
    ("read-only", "POST", SSAR, "", "allow"),
    ("read-only", "POST", SSRR, "", "allow"),
    ("read-only", "POST", WHOAMI, "", "allow"),
    ("read-only", "GET", "/api", "", "allow"),
    ("read-only", "GET", "/apis", "", "allow"),
    ("read-only", "GET", "/api/v1", "", "allow"),
    ("read-only", "GET", "/apis/apps", "", "allow"),
    ("read-only", "GET", "/version", "", "allow"),
    ("read-only", "GET", "/version/", "", "allow"),
    ("read-only", "GET", "/openapi/v2", "timeout=32s", "allow"),
    ("read-only", "GET", "/openapi/v3", "", "allow"),
    ("read-only", "GET", "/healthz", "", "allow"),
    ("read-only", "GET", "/livez", "", "allow"),
    ("read-only", "GET", "/readyz", "verbose", "allow"),
    ("read-only", "GET", "/", "", "deny:path \"/\" is not available to role read-only"),
    ("read-only", "GET", "/metrics", "", "deny:is not available"),
    ("read-only", "GET", "/logs/kube-apiserver.log", "", "deny:is not available"),
    ("read-only", "GET", "/debug/pprof/profile", "", "deny:is not available"),
    ("read-only", "GET", "/healthz/etcd", "", "deny:is not available"),
    ("read-only", "GET", "/.well-known/openid-configuration", "", "deny:is not available"),
    ("read-only", "GET", "/swagger-2.0.0.pb-v1", "", "deny:is not available"),
    ("read-only", "POST", "/version", "", "deny:only GET is allowed on \"/version\""),
    ("read-only", "HEAD", "/api", "", "deny:only GET is allowed"),
    ("read-only", "GET", "/api/v1/namespaces/dev/pods/..", "", "reject"),
];

#[test]
fn authorization_table() {
    assert!(TABLE.len() >= 150, "the table has {} rows", TABLE.len());
    let mut failures = Vec::new();
    for (role, method, path, query, expected) in TABLE {
        let got = decide(role, method, path, query);
        if !matches(expected, &got) {
            failures.push(format!(
                "{role}: {method} {path} ?{query}\n    expected {expected}\n    got      {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_role_is_covered_by_the_table() {
    for role in EnvironmentRole::ALL {
        let rows = TABLE.iter().filter(|row| grant(row.0).role == role).count();
        assert!(rows >= 13, "role {role} has only {rows} rows");
    }
}

/// Each role against the same representative requests: the role table read across.
#[test]
fn role_matrix() {
    // (method, path, query, [admin, operator, helpdesk, standard, read-only])
    let rows: &[(&str, &str, &str, [&str; 5])] = &[
        ("GET", DEV_PODS, "", ["allow", "allow", "allow", "allow", "allow"]),
        ("DELETE", "/api/v1/namespaces/dev/pods/x", "", ["allow", "allow", "deny", "allow", "deny"]),
        ("GET", "/api/v1/namespaces/dev/secrets", "", ["allow", "allow", "deny", "allow", "deny"]),
        ("GET", "/api/v1/namespaces/dev/pods/x/log", "", ["allow", "allow", "allow", "allow", "allow"]),
        ("POST", "/api/v1/namespaces/dev/pods/x/exec", "", ["allow", "allow", "deny", "allow", "deny"]),
        ("GET", "/api/v1/namespaces/dev/pods/x/exec", "", ["allow", "allow", "deny", "allow", "deny"]),
        ("POST", "/api/v1/namespaces/dev/pods/x/attach", "", ["allow", "allow", "deny", "allow", "deny"]),
        (
            "POST",
            "/api/v1/namespaces/dev/pods/x/portforward",
            "",
            ["allow", "allow", "deny", "allow", "deny"],
        ),
        (
            "PATCH",
            "/api/v1/namespaces/dev/pods/x/ephemeralcontainers",
            "",
            ["allow", "allow", "deny", "allow", "deny"],
        ),
        ("GET", "/api/v1/namespaces/dev/pods/x/proxy/", "", ["allow", "allow", "deny", "deny", "deny"]),
        ("GET", "/api/v1/namespaces/dev/services/web/proxy/", "", ["allow", "allow", "deny", "deny", "deny"]),
        ("GET", "/api/v1/nodes/n1/proxy/", "", ["allow", "deny", "deny", "deny", "deny"]),
        ("GET", SYS_PODS, "", ["allow", "allow", "allow", "deny", "deny"]),
        ("POST", SYS_PODS, "", ["allow", "deny", "deny", "deny", "deny"]),
        ("GET", "/api/v1/namespaces/kube-system/secrets", "", ["allow", "deny", "deny", "deny", "deny"]),
        ("GET", "/api/v1/pods", "", ["allow", "allow", "allow", "deny", "deny"]),
        ("GET", "/api/v1/namespaces", "", ["allow", "allow", "allow", "filtered", "filtered"]),
        ("GET", "/api/v1/namespaces/dev", "", ["allow", "allow", "allow", "allow", "allow"]),
        ("GET", "/api/v1/nodes", "", ["allow", "allow", "allow", "allow", "deny"]),
        (
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "",
            ["allow", "allow", "allow", "deny", "deny"],
        ),
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "",
            ["allow", "deny", "deny", "deny", "deny"],
        ),
        ("GET", "/api/v1/namespaces/dev/nodes", "", ["deny", "deny", "deny", "deny", "deny"]),
        ("GET", "/apis/example.com/v1/widgets", "", ["allow", "allow", "allow", "deny", "deny"]),
        ("POST", SSAR, "", ["allow", "allow", "allow", "allow", "allow"]),
        ("GET", "/metrics", "", ["allow", "deny", "deny", "deny", "deny"]),
    ];
    let roles = ["admin", "operator", "helpdesk", "standard", "read-only"];
    for (method, path, query, expected) in rows {
        for (role, want) in roles.iter().zip(expected) {
            let got = decide(role, method, path, query);
            let got_kind = got.split(':').next().unwrap_or_default();
            assert_eq!(got_kind, *want, "{role}: {method} {path} ?{query} → {got}");
        }
    }
}

#[test]
fn query_parameters_never_change_a_decision() {
    let extras = [
        "dryRun=All",
        "as=admin",
        "impersonate-user=admin",
        "impersonate-group=system:masters",
        "as=system:admin&asGroups=system:masters",
    ];
    for (role, method, path, query, _) in TABLE {
        let base = decide(role, method, path, query);
        if base == "reject" {
            continue;
        }
        for extra in extras {
            let q = if query.is_empty() { extra.to_string() } else { format!("{query}&{extra}") };
            assert_eq!(decide(role, method, path, &q), base, "{role}: {method} {path} ?{q}");
        }
    }
}

#[test]
fn denial_messages_say_what_is_refused_and_what_to_do() {
    assert_eq!(
        decide("standard", "GET", "/api/v1/namespaces/kube-system/pods", ""),
        "deny:namespace \"kube-system\" is not granted to you in this environment (role standard: dev, web)"
    );
    assert_eq!(
        decide("helpdesk", "POST", "/api/v1/namespaces/dev/pods/x/exec", ""),
        "deny:role helpdesk may not exec into pods"
    );
    assert_eq!(
        decide("read-only", "GET", "/api/v1/pods", ""),
        "deny:listing pods across all namespaces is not allowed for role read-only; use -n <namespace>"
    );
    let none = Grant { role: EnvironmentRole::Standard, namespaces: vec![] };
    let info = classify(&Method::GET, "/api/v1/namespaces/dev/pods", None).unwrap().info;
    assert_eq!(
        authorize(&info, &none),
        Decision::Deny {
            reason:
                "namespace \"dev\" is not granted to you in this environment (role standard: no namespaces)"
                    .into()
        }
    );
}

#[test]
fn a_grant_for_another_environment_is_no_grant_here() {
    let info = classify(&Method::GET, "/api/v1/namespaces/dev/pods", None).unwrap().info;
    assert_eq!(
        authorize_in_environment(&info, None, 2),
        Decision::Deny { reason: "no access to environment 2".into() }
    );
    let g = grant("read-only");
    assert_eq!(authorize_in_environment(&info, Some(&g), 1), Decision::Allow);
    let discovery = classify(&Method::GET, "/api", None).unwrap().info;
    assert!(!authorize_in_environment(&discovery, None, 2).is_allowed());
}

#[test]
fn filtered_namespace_lists_borrow_the_grant() {
    let g = grant("standard");
    let info = classify(&Method::GET, "/api/v1/namespaces", Some("watch=true")).unwrap().info;
    match authorize(&info, &g) {
        Decision::AllowNamespacesFiltered { namespaces } => {
            assert!(std::ptr::eq(namespaces, g.namespaces.as_slice()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn builtin_scopes() {
    assert_eq!(builtin_scope("", "pods"), Scope::Namespaced);
    assert_eq!(builtin_scope("", "nodes"), Scope::Cluster);
    assert_eq!(builtin_scope("apps", "nodes"), Scope::Unknown);
    assert_eq!(builtin_scope("rbac.authorization.k8s.io", "clusterroles"), Scope::Cluster);
    assert_eq!(builtin_scope("rbac.authorization.k8s.io", "roles"), Scope::Namespaced);
    assert_eq!(builtin_scope("example.com", "widgets"), Scope::Unknown);
}

#[test]
fn impersonation_groups() {
    let teams = vec!["Platform/SRE".to_string(), "db%ops".to_string()];
    assert_eq!(
        groups_for(EnvironmentRole::Standard, &teams),
        vec![
            "kubegate:role:standard",
            "kubegate:team:Platform/SRE",
            "kubegate:team:db%ops",
            "system:authenticated"
        ]
    );
    assert_eq!(
        groups_for(EnvironmentRole::EnvironmentAdmin, &[]),
        vec!["kubegate:role:environment-admin", "system:authenticated"]
    );
}
