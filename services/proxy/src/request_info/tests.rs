#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// One line per classified request, so a table row states the whole `RequestInfo`:
/// `<verb> <prefix>[/<group>]/<version> ns=<ns|-> <resource> name=<name|-> sub=<sub|-> parts=<a/b>`,
/// `nonresource <verb> <path>`, or `error <kind>`.
fn render(method: &str, path: &str, query: &str) -> String {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let query = (!query.is_empty()).then_some(query);
    match classify(&method, path, query) {
        Err(e) => format!("error {}", error_kind(&e)),
        Ok(classified) => {
            let expected_forward = if path.is_empty() { "/" } else { path };
            assert_eq!(classified.forward_path, expected_forward, "forward path of {path}");
            match classified.info {
                RequestInfo::NonResource(n) => format!("nonresource {} {}", n.verb, n.path),
                RequestInfo::Resource(r) => {
                    let group = if r.group.is_empty() { String::new() } else { format!("/{}", r.group) };
                    let parts: Vec<String> = r.parts.iter().map(|p| p.into_owned()).collect();
                    assert_eq!(parts.len(), r.parts.len());
                    format!(
                        "{} {}{}/{} ns={} {} name={} sub={} parts={}",
                        r.verb,
                        r.api_prefix,
                        group,
                        r.version,
                        r.namespace.as_deref().unwrap_or("-"),
                        r.resource,
                        r.name.as_deref().unwrap_or("-"),
                        r.subresource.as_deref().unwrap_or("-"),
                        parts.join("/")
                    )
                }
            }
        }
    }
}

fn error_kind(e: &RequestError) -> &'static str {
    match e {
        RequestError::UnsupportedMethod(_) => "UnsupportedMethod",
        RequestError::NotAbsolute => "NotAbsolute",
        RequestError::EmptySegment => "EmptySegment",
        RequestError::DotSegment { .. } => "DotSegment",
        RequestError::ForbiddenCharacter { .. } => "ForbiddenCharacter",
        RequestError::ForbiddenEscape { .. } => "ForbiddenEscape",
        RequestError::MalformedEscape { .. } => "MalformedEscape",
        RequestError::MalformedQuery { .. } => "MalformedQuery",
        RequestError::Incomplete(_) => "Incomplete",
    }
}

const NS_PODS: &str = "/api/v1/namespaces/dev/pods";

/// (method, path, query, expected). Expectations follow the API server's requestinfo.go for
/// every accepted path; rejected ones follow this module's documented path rule.
const TABLE: &[(&str, &str, &str, &str)] = &[
    // --- core group, namespaced: every method
    ("GET", NS_PODS, "", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx",
        "",
        "get api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    (
        "HEAD",
        "/api/v1/namespaces/dev/pods/nginx",
        "",
        "get api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    ("HEAD", NS_PODS, "", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("POST", NS_PODS, "", "create api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "PUT",
        "/api/v1/namespaces/dev/pods/nginx",
        "",
        "update api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    (
        "PATCH",
        "/api/v1/namespaces/dev/pods/nginx",
        "",
        "patch api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    (
        "DELETE",
        "/api/v1/namespaces/dev/pods/nginx",
        "",
        "delete api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    ("DELETE", NS_PODS, "", "deletecollection api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/namespaces/default/pods",
        "limit=500",
        "list api/v1 ns=default pods name=- sub=- parts=pods",
    ),
    ("GET", "/api/v1/pods", "limit=500", "list api/v1 ns=- pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/namespaces/dev/configmaps/app-config",
        "",
        "get api/v1 ns=dev configmaps name=app-config sub=- parts=configmaps/app-config",
    ),
    ("GET", "/api/v1/namespaces/dev/secrets", "", "list api/v1 ns=dev secrets name=- sub=- parts=secrets"),
    ("GET", "/api/v1/secrets", "", "list api/v1 ns=- secrets name=- sub=- parts=secrets"),
    (
        "GET",
        "/api/v1/namespaces/dev/services/web",
        "",
        "get api/v1 ns=dev services name=web sub=- parts=services/web",
    ),
    ("GET", "/api/v1/namespaces/dev/events", "", "list api/v1 ns=dev events name=- sub=- parts=events"),
    (
        "GET",
        "/api/v1/namespaces/dev/serviceaccounts",
        "",
        "list api/v1 ns=dev serviceaccounts name=- sub=- parts=serviceaccounts",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/persistentvolumeclaims/data",
        "",
        "get api/v1 ns=dev persistentvolumeclaims name=data sub=- parts=persistentvolumeclaims/data",
    ),
    ("GET", "/api/v2/pods", "", "list api/v2 ns=- pods name=- sub=- parts=pods"),
    // --- watch through the query
    ("GET", NS_PODS, "watch=true", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=1", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=false", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=0", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=FALSE", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=False", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=yes", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=00", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=true&watch=false", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=false&watch=true", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "w%61tch=true", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=tru%65", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "watch=%66alse", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "Watch=true", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "resourceVersion=1021&watch=true", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        NS_PODS,
        "resourceVersion=1319&timeoutSeconds=3&watch=true",
        "watch api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    ("HEAD", NS_PODS, "watch=true", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx",
        "watch=true",
        "get api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    ("GET", "/api/v1/pods", "watch=1", "watch api/v1 ns=- pods name=- sub=- parts=pods"),
    ("POST", NS_PODS, "watch=true", "create api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("DELETE", NS_PODS, "watch=true", "deletecollection api/v1 ns=dev pods name=- sub=- parts=pods"),
    // --- watch through the /watch/ prefix
    ("GET", "/api/v1/watch/namespaces/dev/pods", "", "watch api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/watch/namespaces/dev/pods/nginx",
        "",
        "watch api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    ("GET", "/api/v1/watch/pods", "", "watch api/v1 ns=- pods name=- sub=- parts=pods"),
    ("GET", "/api/v1/watch/namespaces", "", "watch api/v1 ns=- namespaces name=- sub=- parts=namespaces"),
    (
        "GET",
        "/api/v1/watch/namespaces/dev",
        "",
        "watch api/v1 ns=dev namespaces name=dev sub=- parts=namespaces/dev",
    ),
    ("GET", "/api/v1/watch/nodes/n1", "", "watch api/v1 ns=- nodes name=n1 sub=- parts=nodes/n1"),
    (
        "GET",
        "/api/v1/watch/namespaces/dev/pods",
        "watch=false",
        "watch api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    ("POST", "/api/v1/watch/pods", "", "watch api/v1 ns=- pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/watch/namespaces/dev/pods/nginx/status",
        "",
        "watch api/v1 ns=dev pods name=nginx sub=status parts=pods/nginx/status",
    ),
    (
        "GET",
        "/apis/apps/v1/watch/namespaces/dev/deployments",
        "",
        "watch apis/apps/v1 ns=dev deployments name=- sub=- parts=deployments",
    ),
    (
        "GET",
        "/apis/apps/v1/watch/deployments",
        "",
        "watch apis/apps/v1 ns=- deployments name=- sub=- parts=deployments",
    ),
    (
        "GET",
        "/apis/example.com/v1/watch/namespaces/dev/widgets",
        "",
        "watch apis/example.com/v1 ns=dev widgets name=- sub=- parts=widgets",
    ),
    ("GET", "/api/v1/%77atch/pods", "", "watch api/v1 ns=- pods name=- sub=- parts=pods"),
    ("GET", "/api/v1/watch/watch/pods", "", "watch api/v1 ns=- watch name=pods sub=- parts=watch/pods"),
    ("GET", "/api/v1/watch", "", "error Incomplete"),
    ("GET", "/api/v1/watch/", "", "error Incomplete"),
    ("GET", "/apis/apps/v1/watch", "", "error Incomplete"),
    // --- the legacy proxy verb: no subresource, the rest is the proxied path
    (
        "GET",
        "/api/v1/proxy/namespaces/dev/pods/nginx",
        "",
        "proxy api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    (
        "GET",
        "/api/v1/proxy/namespaces/dev/pods/nginx/some/path",
        "",
        "proxy api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx/some/path",
    ),
    ("GET", "/api/v1/proxy/nodes/n1/stats", "", "proxy api/v1 ns=- nodes name=n1 sub=- parts=nodes/n1/stats"),
    (
        "DELETE",
        "/api/v1/proxy/namespaces/dev/services/web",
        "",
        "proxy api/v1 ns=dev services name=web sub=- parts=services/web",
    ),
    ("GET", "/api/v1/proxy/pods", "", "proxy api/v1 ns=- pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/proxy/namespaces/dev",
        "",
        "proxy api/v1 ns=dev namespaces name=dev sub=- parts=namespaces/dev",
    ),
    ("GET", "/api/v1/proxy", "", "error Incomplete"),
    // --- namespaces: the object itself, its subresources, and look-alikes
    ("GET", "/api/v1/namespaces", "", "list api/v1 ns=- namespaces name=- sub=- parts=namespaces"),
    ("GET", "/api/v1/namespaces", "limit=500", "list api/v1 ns=- namespaces name=- sub=- parts=namespaces"),
    ("GET", "/api/v1/namespaces", "watch=1", "watch api/v1 ns=- namespaces name=- sub=- parts=namespaces"),
    ("GET", "/api/v1/namespaces/dev", "", "get api/v1 ns=dev namespaces name=dev sub=- parts=namespaces/dev"),
    (
        "HEAD",
        "/api/v1/namespaces/dev",
        "",
        "get api/v1 ns=dev namespaces name=dev sub=- parts=namespaces/dev",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/status",
        "",
        "get api/v1 ns=dev namespaces name=dev sub=status parts=namespaces/dev/status",
    ),
    (
        "PUT",
        "/api/v1/namespaces/dev/status",
        "",
        "update api/v1 ns=dev namespaces name=dev sub=status parts=namespaces/dev/status",
    ),
    (
        "PUT",
        "/api/v1/namespaces/dev/finalize",
        "",
        "update api/v1 ns=dev namespaces name=dev sub=finalize parts=namespaces/dev/finalize",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/finalize",
        "",
        "get api/v1 ns=dev namespaces name=dev sub=finalize parts=namespaces/dev/finalize",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/status/extra",
        "",
        "get api/v1 ns=dev namespaces name=dev sub=status parts=namespaces/dev/status/extra",
    ),
    (
        "DELETE",
        "/api/v1/namespaces/dev",
        "",
        "delete api/v1 ns=dev namespaces name=dev sub=- parts=namespaces/dev",
    ),
    (
        "DELETE",
        "/api/v1/namespaces",
        "",
        "deletecollection api/v1 ns=- namespaces name=- sub=- parts=namespaces",
    ),
    ("POST", "/api/v1/namespaces", "", "create api/v1 ns=- namespaces name=- sub=- parts=namespaces"),
    (
        "PATCH",
        "/api/v1/namespaces/dev",
        "",
        "patch api/v1 ns=dev namespaces name=dev sub=- parts=namespaces/dev",
    ),
    (
        "GET",
        "/api/v1/namespaces/status",
        "",
        "get api/v1 ns=status namespaces name=status sub=- parts=namespaces/status",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/namespaces",
        "",
        "list api/v1 ns=dev namespaces name=- sub=- parts=namespaces",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/namespaces/kube-system",
        "",
        "get api/v1 ns=dev namespaces name=kube-system sub=- parts=namespaces/kube-system",
    ),
    (
        "DELETE",
        "/api/v1/namespaces/dev/namespaces/dev",
        "",
        "delete api/v1 ns=dev namespaces name=dev sub=- parts=namespaces/dev",
    ),
    ("GET", "/api/v1/namespaces/proxy/pods", "", "list api/v1 ns=proxy pods name=- sub=- parts=pods"),
    ("GET", "/api/v1/namespaces/watch/pods", "", "list api/v1 ns=watch pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/namespaces/dev/watch/pods",
        "",
        "get api/v1 ns=dev watch name=pods sub=- parts=watch/pods",
    ),
    ("GET", "/api/v1/%6eamespaces/dev/pods", "", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", "/api/v1/namespaces/d%65v/pods", "", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        "/apis/apps/v1/namespaces/dev",
        "",
        "get apis/apps/v1 ns=dev namespaces name=dev sub=- parts=namespaces/dev",
    ),
    // --- cluster-scoped resources, and the same reached through /namespaces/<ns>/
    ("GET", "/api/v1/nodes", "", "list api/v1 ns=- nodes name=- sub=- parts=nodes"),
    ("GET", "/api/v1/nodes/n1", "", "get api/v1 ns=- nodes name=n1 sub=- parts=nodes/n1"),
    ("GET", "/api/v1/nodes/n1/status", "", "get api/v1 ns=- nodes name=n1 sub=status parts=nodes/n1/status"),
    ("PATCH", "/api/v1/nodes/n1", "", "patch api/v1 ns=- nodes name=n1 sub=- parts=nodes/n1"),
    (
        "GET",
        "/api/v1/nodes/n1/proxy/metrics",
        "",
        "get api/v1 ns=- nodes name=n1 sub=proxy parts=nodes/n1/proxy/metrics",
    ),
    (
        "GET",
        "/api/v1/nodes/n1/proxy/logs/",
        "",
        "get api/v1 ns=- nodes name=n1 sub=proxy parts=nodes/n1/proxy/logs",
    ),
    (
        "GET",
        "/api/v1/persistentvolumes",
        "",
        "list api/v1 ns=- persistentvolumes name=- sub=- parts=persistentvolumes",
    ),
    (
        "DELETE",
        "/api/v1/persistentvolumes/pv1",
        "",
        "delete api/v1 ns=- persistentvolumes name=pv1 sub=- parts=persistentvolumes/pv1",
    ),
    (
        "GET",
        "/api/v1/componentstatuses",
        "",
        "list api/v1 ns=- componentstatuses name=- sub=- parts=componentstatuses",
    ),
    ("GET", "/api/v1/namespaces/dev/nodes", "", "list api/v1 ns=dev nodes name=- sub=- parts=nodes"),
    ("GET", "/api/v1/namespaces/dev/nodes/n1", "", "get api/v1 ns=dev nodes name=n1 sub=- parts=nodes/n1"),
    (
        "GET",
        "/api/v1/namespaces/dev/persistentvolumes/pv1",
        "",
        "get api/v1 ns=dev persistentvolumes name=pv1 sub=- parts=persistentvolumes/pv1",
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/clusterroles",
        "",
        "list apis/rbac.authorization.k8s.io/v1 ns=dev clusterroles name=- sub=- parts=clusterroles",
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "",
        "list apis/rbac.authorization.k8s.io/v1 ns=- clusterroles name=- sub=- parts=clusterroles",
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:aggregate-to-edit",
        "",
        "get apis/rbac.authorization.k8s.io/v1 ns=- clusterroles name=system:aggregate-to-edit sub=- parts=clusterroles/system:aggregate-to-edit",
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aaggregate-to-edit",
        "",
        "get apis/rbac.authorization.k8s.io/v1 ns=- clusterroles name=system:aggregate-to-edit sub=- parts=clusterroles/system:aggregate-to-edit",
    ),
    (
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "",
        "create apis/rbac.authorization.k8s.io/v1 ns=- clusterrolebindings name=- sub=- parts=clusterrolebindings",
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/roles",
        "",
        "list apis/rbac.authorization.k8s.io/v1 ns=dev roles name=- sub=- parts=roles",
    ),
    (
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings",
        "",
        "create apis/rbac.authorization.k8s.io/v1 ns=dev rolebindings name=- sub=- parts=rolebindings",
    ),
    (
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "",
        "list apis/apiextensions.k8s.io/v1 ns=- customresourcedefinitions name=- sub=- parts=customresourcedefinitions",
    ),
    (
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        "",
        "get apis/apiextensions.k8s.io/v1 ns=- customresourcedefinitions name=widgets.example.com sub=- parts=customresourcedefinitions/widgets.example.com",
    ),
    (
        "PUT",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com/status",
        "",
        "update apis/apiextensions.k8s.io/v1 ns=- customresourcedefinitions name=widgets.example.com sub=status parts=customresourcedefinitions/widgets.example.com/status",
    ),
    (
        "GET",
        "/apis/storage.k8s.io/v1/storageclasses",
        "",
        "list apis/storage.k8s.io/v1 ns=- storageclasses name=- sub=- parts=storageclasses",
    ),
    (
        "GET",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1/approval",
        "",
        "get apis/certificates.k8s.io/v1 ns=- certificatesigningrequests name=csr1 sub=approval parts=certificatesigningrequests/csr1/approval",
    ),
    (
        "PUT",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1/approval",
        "",
        "update apis/certificates.k8s.io/v1 ns=- certificatesigningrequests name=csr1 sub=approval parts=certificatesigningrequests/csr1/approval",
    ),
    (
        "GET",
        "/apis/networking.k8s.io/v1/ingressclasses",
        "",
        "list apis/networking.k8s.io/v1 ns=- ingressclasses name=- sub=- parts=ingressclasses",
    ),
    (
        "GET",
        "/apis/metrics.k8s.io/v1beta1/nodes",
        "",
        "list apis/metrics.k8s.io/v1beta1 ns=- nodes name=- sub=- parts=nodes",
    ),
    // --- subresources of pods and others
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/log",
        "",
        "get api/v1 ns=dev pods name=nginx sub=log parts=pods/nginx/log",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/log",
        "container=nginx&follow=true",
        "get api/v1 ns=dev pods name=nginx sub=log parts=pods/nginx/log",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/log/extra",
        "",
        "get api/v1 ns=dev pods name=nginx sub=log parts=pods/nginx/log/extra",
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/pods/nginx/exec",
        "command=sh&container=nginx&stdin=true&stdout=true&tty=true",
        "create api/v1 ns=dev pods name=nginx sub=exec parts=pods/nginx/exec",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/exec",
        "command=echo&command=hi&container=nginx&stderr=true&stdout=true",
        "get api/v1 ns=dev pods name=nginx sub=exec parts=pods/nginx/exec",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/exec",
        "command=test&command=-d&command=%2Ftmp%2Fremote.txt",
        "get api/v1 ns=dev pods name=nginx sub=exec parts=pods/nginx/exec",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/exec/extra",
        "",
        "get api/v1 ns=dev pods name=nginx sub=exec parts=pods/nginx/exec/extra",
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/pods/nginx/attach",
        "",
        "create api/v1 ns=dev pods name=nginx sub=attach parts=pods/nginx/attach",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/attach",
        "stdin=true",
        "get api/v1 ns=dev pods name=nginx sub=attach parts=pods/nginx/attach",
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/pods/nginx/portforward",
        "",
        "create api/v1 ns=dev pods name=nginx sub=portforward parts=pods/nginx/portforward",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/portforward",
        "ports=8080",
        "get api/v1 ns=dev pods name=nginx sub=portforward parts=pods/nginx/portforward",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/proxy",
        "",
        "get api/v1 ns=dev pods name=nginx sub=proxy parts=pods/nginx/proxy",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/proxy/healthz",
        "",
        "get api/v1 ns=dev pods name=nginx sub=proxy parts=pods/nginx/proxy/healthz",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx:8080/proxy/",
        "",
        "get api/v1 ns=dev pods name=nginx:8080 sub=proxy parts=pods/nginx:8080/proxy",
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/services/web/proxy/api",
        "",
        "create api/v1 ns=dev services name=web sub=proxy parts=services/web/proxy/api",
    ),
    (
        "GET",
        "/api/v1/namespaces/kube-system/services/https:dashboard:443/proxy/",
        "",
        "get api/v1 ns=kube-system services name=https:dashboard:443 sub=proxy parts=services/https:dashboard:443/proxy",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/services/web/proxy/a/b/c",
        "",
        "get api/v1 ns=dev services name=web sub=proxy parts=services/web/proxy/a/b/c",
    ),
    (
        "PATCH",
        "/api/v1/namespaces/dev/pods/nginx/ephemeralcontainers",
        "",
        "patch api/v1 ns=dev pods name=nginx sub=ephemeralcontainers parts=pods/nginx/ephemeralcontainers",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/ephemeralcontainers",
        "",
        "get api/v1 ns=dev pods name=nginx sub=ephemeralcontainers parts=pods/nginx/ephemeralcontainers",
    ),
    (
        "PUT",
        "/api/v1/namespaces/dev/pods/nginx/status",
        "",
        "update api/v1 ns=dev pods name=nginx sub=status parts=pods/nginx/status",
    ),
    (
        "PATCH",
        "/api/v1/namespaces/dev/pods/nginx/resize",
        "",
        "patch api/v1 ns=dev pods name=nginx sub=resize parts=pods/nginx/resize",
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/pods/nginx/eviction",
        "",
        "create api/v1 ns=dev pods name=nginx sub=eviction parts=pods/nginx/eviction",
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/pods/nginx/binding",
        "",
        "create api/v1 ns=dev pods name=nginx sub=binding parts=pods/nginx/binding",
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/bindings",
        "",
        "create api/v1 ns=dev bindings name=- sub=- parts=bindings",
    ),
    (
        "POST",
        "/api/v1/namespaces/dev/serviceaccounts/default/token",
        "",
        "create api/v1 ns=dev serviceaccounts name=default sub=token parts=serviceaccounts/default/token",
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/dev/deployments/web/scale",
        "",
        "get apis/apps/v1 ns=dev deployments name=web sub=scale parts=deployments/web/scale",
    ),
    (
        "PUT",
        "/apis/apps/v1/namespaces/dev/deployments/web/scale",
        "",
        "update apis/apps/v1 ns=dev deployments name=web sub=scale parts=deployments/web/scale",
    ),
    (
        "PATCH",
        "/apis/apps/v1/namespaces/dev/statefulsets/db/status",
        "",
        "patch apis/apps/v1 ns=dev statefulsets name=db sub=status parts=statefulsets/db/status",
    ),
    (
        "GET",
        "/apis/subresources.kubevirt.io/v1/namespaces/dev/virtualmachineinstances/vm/console",
        "",
        "get apis/subresources.kubevirt.io/v1 ns=dev virtualmachineinstances name=vm sub=console parts=virtualmachineinstances/vm/console",
    ),
    // --- named groups
    (
        "GET",
        "/apis/apps/v1/namespaces/dev/deployments",
        "",
        "list apis/apps/v1 ns=dev deployments name=- sub=- parts=deployments",
    ),
    (
        "GET",
        "/apis/apps/v1/deployments",
        "",
        "list apis/apps/v1 ns=- deployments name=- sub=- parts=deployments",
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/dev/deployments/web",
        "",
        "get apis/apps/v1 ns=dev deployments name=web sub=- parts=deployments/web",
    ),
    (
        "DELETE",
        "/apis/apps/v1/namespaces/dev/deployments",
        "",
        "deletecollection apis/apps/v1 ns=dev deployments name=- sub=- parts=deployments",
    ),
    (
        "DELETE",
        "/apis/apps/v1/namespaces/dev/deployments/web",
        "propagationPolicy=Background",
        "delete apis/apps/v1 ns=dev deployments name=web sub=- parts=deployments/web",
    ),
    (
        "GET",
        "/apis/apps/v1beta1/namespaces/dev/deployments",
        "",
        "list apis/apps/v1beta1 ns=dev deployments name=- sub=- parts=deployments",
    ),
    (
        "GET",
        "/apis/batch/v1/namespaces/dev/jobs",
        "watch=true",
        "watch apis/batch/v1 ns=dev jobs name=- sub=- parts=jobs",
    ),
    (
        "GET",
        "/apis/batch/v1/namespaces/dev/cronjobs/nightly",
        "",
        "get apis/batch/v1 ns=dev cronjobs name=nightly sub=- parts=cronjobs/nightly",
    ),
    (
        "GET",
        "/apis/networking.k8s.io/v1/namespaces/dev/ingresses",
        "",
        "list apis/networking.k8s.io/v1 ns=dev ingresses name=- sub=- parts=ingresses",
    ),
    (
        "GET",
        "/apis/autoscaling/v2/namespaces/dev/horizontalpodautoscalers/web",
        "",
        "get apis/autoscaling/v2 ns=dev horizontalpodautoscalers name=web sub=- parts=horizontalpodautoscalers/web",
    ),
    (
        "GET",
        "/apis/policy/v1/namespaces/dev/poddisruptionbudgets",
        "",
        "list apis/policy/v1 ns=dev poddisruptionbudgets name=- sub=- parts=poddisruptionbudgets",
    ),
    (
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        "",
        "list apis/coordination.k8s.io/v1 ns=kube-node-lease leases name=- sub=- parts=leases",
    ),
    (
        "GET",
        "/apis/discovery.k8s.io/v1/namespaces/dev/endpointslices",
        "",
        "list apis/discovery.k8s.io/v1 ns=dev endpointslices name=- sub=- parts=endpointslices",
    ),
    (
        "GET",
        "/apis/events.k8s.io/v1/events",
        "",
        "list apis/events.k8s.io/v1 ns=- events name=- sub=- parts=events",
    ),
    (
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "",
        "create apis/authorization.k8s.io/v1 ns=- selfsubjectaccessreviews name=- sub=- parts=selfsubjectaccessreviews",
    ),
    (
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        "",
        "create apis/authorization.k8s.io/v1 ns=- selfsubjectrulesreviews name=- sub=- parts=selfsubjectrulesreviews",
    ),
    (
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "",
        "create apis/authentication.k8s.io/v1 ns=- selfsubjectreviews name=- sub=- parts=selfsubjectreviews",
    ),
    (
        "POST",
        "/apis/authentication.k8s.io/v1beta1/selfsubjectreviews",
        "",
        "create apis/authentication.k8s.io/v1beta1 ns=- selfsubjectreviews name=- sub=- parts=selfsubjectreviews",
    ),
    (
        "POST",
        "/apis/authorization.k8s.io/v1/namespaces/dev/localsubjectaccessreviews",
        "",
        "create apis/authorization.k8s.io/v1 ns=dev localsubjectaccessreviews name=- sub=- parts=localsubjectaccessreviews",
    ),
    (
        "GET",
        "/apis/metrics.k8s.io/v1beta1/namespaces/dev/pods",
        "",
        "list apis/metrics.k8s.io/v1beta1 ns=dev pods name=- sub=- parts=pods",
    ),
    // --- custom resources
    (
        "GET",
        "/apis/example.com/v1/namespaces/dev/widgets",
        "",
        "list apis/example.com/v1 ns=dev widgets name=- sub=- parts=widgets",
    ),
    (
        "GET",
        "/apis/example.com/v1/widgets",
        "",
        "list apis/example.com/v1 ns=- widgets name=- sub=- parts=widgets",
    ),
    (
        "GET",
        "/apis/example.com/v1/widgets/w1",
        "",
        "get apis/example.com/v1 ns=- widgets name=w1 sub=- parts=widgets/w1",
    ),
    (
        "PATCH",
        "/apis/example.com/v1/namespaces/dev/widgets/w1/status",
        "",
        "patch apis/example.com/v1 ns=dev widgets name=w1 sub=status parts=widgets/w1/status",
    ),
    (
        "GET",
        "/apis/example.com/v1/namespaces/dev/widgets/w1/scale",
        "",
        "get apis/example.com/v1 ns=dev widgets name=w1 sub=scale parts=widgets/w1/scale",
    ),
    ("GET", "/apis/x/y/z", "", "list apis/x/y ns=- z name=- sub=- parts=z"),
    (
        "GET",
        "/apis/v1/namespaces/dev/nodes",
        "",
        "get apis/v1/namespaces ns=- dev name=nodes sub=- parts=dev/nodes",
    ),
    // --- non-resource requests
    ("GET", "/", "", "nonresource get /"),
    ("GET", "", "", "nonresource get /"),
    ("GET", "/version", "timeout=32s", "nonresource get /version"),
    ("GET", "/version/", "", "nonresource get /version/"),
    ("GET", "/api", "timeout=32s", "nonresource get /api"),
    ("GET", "/api/", "", "nonresource get /api/"),
    ("GET", "/apis", "timeout=32s", "nonresource get /apis"),
    ("GET", "/api/v1", "", "nonresource get /api/v1"),
    ("GET", "/api/v1/", "", "nonresource get /api/v1/"),
    ("GET", "/apis/apps", "", "nonresource get /apis/apps"),
    ("GET", "/apis/apps/v1", "", "nonresource get /apis/apps/v1"),
    ("GET", "/apis/apps/v1/", "", "nonresource get /apis/apps/v1/"),
    ("GET", "/apis/authorization.k8s.io/v1", "timeout=32s", "nonresource get /apis/authorization.k8s.io/v1"),
    ("GET", "/openapi/v2", "timeout=32s", "nonresource get /openapi/v2"),
    ("GET", "/openapi/v3", "", "nonresource get /openapi/v3"),
    ("GET", "/openapi/v3/api/v1", "hash=0123456789ABCDEF&timeout=32s", "nonresource get /openapi/v3/api/v1"),
    ("GET", "/openapi/v3/apis/apps/v1", "", "nonresource get /openapi/v3/apis/apps/v1"),
    ("GET", "/healthz", "", "nonresource get /healthz"),
    ("GET", "/healthz/etcd", "", "nonresource get /healthz/etcd"),
    ("GET", "/livez", "", "nonresource get /livez"),
    ("GET", "/readyz", "verbose", "nonresource get /readyz"),
    ("GET", "/metrics", "", "nonresource get /metrics"),
    ("GET", "/logs/kube-apiserver.log", "", "nonresource get /logs/kube-apiserver.log"),
    ("GET", "/debug/pprof/profile", "", "nonresource get /debug/pprof/profile"),
    ("POST", "/version", "", "nonresource post /version"),
    ("HEAD", "/version", "", "nonresource head /version"),
    ("DELETE", "/api", "", "nonresource delete /api"),
    ("PUT", "/apis/apps", "", "nonresource put /apis/apps"),
    ("PATCH", "/healthz", "", "nonresource patch /healthz"),
    ("GET", "/swagger-2.0.0.pb-v1", "timeout=32s", "nonresource get /swagger-2.0.0.pb-v1"),
    ("GET", "/.well-known/openid-configuration", "", "nonresource get /.well-known/openid-configuration"),
    ("GET", "/openid/v1/jwks", "", "nonresource get /openid/v1/jwks"),
    ("GET", "/foo/bar/baz/qux", "", "nonresource get /foo/bar/baz/qux"),
    ("GET", "/api1/v1/pods", "", "nonresource get /api1/v1/pods"),
    ("GET", "/API/v1/pods", "", "nonresource get /API/v1/pods"),
    ("GET", "/vers%69on", "", "nonresource get /version"),
    ("GET", "/%61pi/v1/pods", "", "list api/v1 ns=- pods name=- sub=- parts=pods"),
    // --- decoded names and harmless characters
    (
        "GET",
        "/api/v1/namespaces/dev/pods/%6Eginx",
        "",
        "get api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/configmaps/a+b",
        "",
        "get api/v1 ns=dev configmaps name=a+b sub=- parts=configmaps/a+b",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/configmaps/a~b",
        "",
        "get api/v1 ns=dev configmaps name=a~b sub=- parts=configmaps/a~b",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/configmaps/a.b.c",
        "",
        "get api/v1 ns=dev configmaps name=a.b.c sub=- parts=configmaps/a.b.c",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/configmaps/...",
        "",
        "get api/v1 ns=dev configmaps name=... sub=- parts=configmaps/...",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/configmaps/a@b",
        "",
        "get api/v1 ns=dev configmaps name=a@b sub=- parts=configmaps/a@b",
    ),
    // --- trailing slash: trimmed by the API server, forwarded unchanged
    ("GET", "/api/v1/namespaces/dev/pods/", "", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx/",
        "",
        "get api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/dev/deployments/",
        "",
        "list apis/apps/v1 ns=dev deployments name=- sub=- parts=deployments",
    ),
    // --- query parameters that change nothing
    (
        "GET",
        "/api/v1/namespaces/dev/pods/nginx",
        "as=admin",
        "get api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    (
        "GET",
        NS_PODS,
        "impersonate-user=admin&impersonate-group=system:masters",
        "list api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    (
        "DELETE",
        "/api/v1/namespaces/dev/pods/nginx",
        "dryRun=All",
        "delete api/v1 ns=dev pods name=nginx sub=- parts=pods/nginx",
    ),
    ("DELETE", NS_PODS, "dryRun=All", "deletecollection api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "POST",
        NS_PODS,
        "dryRun=All&fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
        "create api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    ("GET", NS_PODS, "token=abc", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    ("GET", NS_PODS, "&&&", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    // --- metadata.name field selectors fill in the name of a list or watch
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Dnginx",
        "list api/v1 ns=dev pods name=nginx sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Dnginx&limit=500&resourceVersion=0",
        "list api/v1 ns=dev pods name=nginx sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3D%3Dnginx",
        "list api/v1 ns=dev pods name=nginx sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%21%3Dnginx",
        "list api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Dnginx&watch=true",
        "watch api/v1 ns=dev pods name=nginx sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "allowWatchBookmarks=true&fieldSelector=metadata.name%3Dnginx&resourceVersion=1008&timeoutSeconds=321&watch=true",
        "watch api/v1 ns=dev pods name=nginx sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Dnginx%2Cstatus.phase%3DRunning",
        "list api/v1 ns=dev pods name=nginx sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=status.phase%3DRunning",
        "list api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Da%2Fb",
        "list api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    ("GET", NS_PODS, "fieldSelector=metadata.name%3D..", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Da%25b",
        "list api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    ("GET", NS_PODS, "fieldSelector=metadata.name%3D", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Db%2Cmetadata.name%3Da",
        "list api/v1 ns=dev pods name=a sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Dx%2Cbogus",
        "list api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Da%5C%2Cb",
        "list api/v1 ns=dev pods name=a,b sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Da%3Db",
        "list api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Da%5Cx",
        "list api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name=nginx",
        "list api/v1 ns=dev pods name=nginx sub=- parts=pods",
    ),
    ("GET", NS_PODS, "fieldSelector=metadata.name+%3D+x", "list api/v1 ns=dev pods name=- sub=- parts=pods"),
    (
        "GET",
        NS_PODS,
        "fieldSelector=metadata.name%3Da&fieldSelector=metadata.name%3Db",
        "list api/v1 ns=dev pods name=a sub=- parts=pods",
    ),
    (
        "HEAD",
        NS_PODS,
        "fieldSelector=metadata.name%3Dnginx",
        "list api/v1 ns=dev pods name=nginx sub=- parts=pods",
    ),
    (
        "GET",
        "/api/v1/namespaces/dev/pods/x",
        "fieldSelector=metadata.name%3Dnginx",
        "get api/v1 ns=dev pods name=x sub=- parts=pods/x",
    ),
    (
        "DELETE",
        NS_PODS,
        "fieldSelector=metadata.name%3Dnginx",
        "deletecollection api/v1 ns=dev pods name=- sub=- parts=pods",
    ),
    (
        "GET",
        "/api/v1/namespaces",
        "fieldSelector=metadata.name%3Ddev&watch=1",
        "watch api/v1 ns=- namespaces name=dev sub=- parts=namespaces",
    ),
    (
        "GET",
        "/api/v1/namespaces",
        "fieldSelector=metadata.name%3Ddev",
        "list api/v1 ns=- namespaces name=dev sub=- parts=namespaces",
    ),
    // --- refused paths: dot segments
    ("GET", "/api/v1/namespaces/dev/../kube-system/pods", "", "error DotSegment"),
    ("GET", "/api/v1/namespaces/dev/./pods", "", "error DotSegment"),
    ("GET", "/api/v1/namespaces/dev/pods/..", "", "error DotSegment"),
    ("GET", "/api/v1/namespaces/dev/pods/.", "", "error DotSegment"),
    ("GET", "/api/v1/namespaces/dev/pods/./", "", "error DotSegment"),
    ("GET", "/..", "", "error DotSegment"),
    ("GET", "/./version", "", "error DotSegment"),
    // --- refused paths: encoded separators, dots, double encoding
    ("GET", "/api/v1/namespaces%2Fkube-system%2Fsecrets", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods%2fx", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/%2e%2e/kube-system/secrets", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/%2E%2E/x", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/.%2e", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/a%2eb", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%252F", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%25", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%252e%252e", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods%3Bx", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods%23frag", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%5C", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/a%20b", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%00", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%0d%0a", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%C3%A9", "", "error ForbiddenEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%3F", "", "error ForbiddenEscape"),
    // --- refused paths: parameters, fragments, separators, bytes
    ("GET", "/api/v1/namespaces/dev/pods;param", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/x;y=z", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods#frag", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/x?y", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/a\\b", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/a b", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/a\0b", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/a\r\nb", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/x\t", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/\u{7f}", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/é", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/\u{2215}", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/{x}", "", "error ForbiddenCharacter"),
    ("GET", "/api/v1/namespaces/dev/pods/\"x\"", "", "error ForbiddenCharacter"),
    // --- refused paths: malformed escapes, empty segments, relative paths
    ("GET", "/api/v1/namespaces/dev/pods/%zz", "", "error MalformedEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%", "", "error MalformedEscape"),
    ("GET", "/api/v1/namespaces/dev/pods/%4", "", "error MalformedEscape"),
    ("GET", "//api/v1/pods", "", "error EmptySegment"),
    ("GET", "/api//v1/pods", "", "error EmptySegment"),
    ("GET", "/api/v1/namespaces/dev//pods", "", "error EmptySegment"),
    ("GET", "/api/v1/pods//", "", "error EmptySegment"),
    ("GET", "//", "", "error EmptySegment"),
    ("GET", "api/v1/pods", "", "error NotAbsolute"),
    ("GET", "*", "", "error NotAbsolute"),
    // --- refused queries
    ("GET", NS_PODS, "watch=true;x=1", "error MalformedQuery"),
    ("GET", NS_PODS, "a=%zz", "error MalformedQuery"),
    ("GET", NS_PODS, "watch=%", "error MalformedQuery"),
    ("GET", NS_PODS, "a=b#c", "error MalformedQuery"),
    ("GET", NS_PODS, "a=b c", "error MalformedQuery"),
    ("GET", NS_PODS, "a=\u{e9}", "error MalformedQuery"),
    ("GET", NS_PODS, "a=\n", "error MalformedQuery"),
    ("GET", NS_PODS, "watch=fal%C5%BFe", "error MalformedQuery"),
    ("GET", NS_PODS, "fieldSelector=metadata.name%3D%FF", "error MalformedQuery"),
    // --- methods
    ("OPTIONS", "/api/v1/pods", "", "error UnsupportedMethod"),
    ("CONNECT", "/api/v1/pods", "", "error UnsupportedMethod"),
    ("TRACE", "/", "", "error UnsupportedMethod"),
    ("PROPFIND", "/api/v1/pods", "", "error UnsupportedMethod"),
];

#[test]
fn classification_table_matches_the_api_server() {
    assert!(TABLE.len() >= 200, "the table has {} rows", TABLE.len());
    let mut failures = Vec::new();
    for (method, path, query, expected) in TABLE {
        let got = render(method, path, query);
        if got != *expected {
            failures.push(format!("{method} {path:?} ?{query}\n    expected {expected}\n    got      {got}"));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_table_has_no_duplicate_rows() {
    let mut seen = std::collections::HashSet::new();
    for (method, path, query, _) in TABLE {
        assert!(seen.insert((method, path, query)), "duplicate row {method} {path} ?{query}");
    }
}

#[test]
fn forward_path_is_the_classified_path_byte_for_byte() {
    for path in [
        "/api/v1/namespaces/d%65v/pods/",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aaggregate-to-edit",
        "/version",
    ] {
        let c = classify(&Method::GET, path, Some("watch=1&as=admin")).unwrap();
        assert_eq!(c.forward_path, path);
    }
    let root = classify(&Method::GET, "", None).unwrap();
    assert_eq!(root.forward_path, "/");
}

#[test]
fn text_fields_borrow_unless_decoding_was_needed() {
    let c = classify(&Method::GET, "/api/v1/namespaces/dev/pods/x", None).unwrap();
    let r = c.info.as_resource().unwrap();
    assert!(matches!(r.namespace, Some(Cow::Borrowed("dev"))));
    assert!(matches!(r.name, Some(Cow::Borrowed("x"))));
    assert_eq!(r.parts.raw(), "pods/x");
    let c = classify(&Method::GET, "/api/v1/namespaces/d%65v/pods", None).unwrap();
    let r = c.info.as_resource().unwrap();
    assert!(matches!(r.namespace, Some(Cow::Owned(_))));
    assert_eq!(r.namespace.as_deref(), Some("dev"));
}

#[test]
fn errors_map_to_statuses_and_say_what_to_fix() {
    let e = classify(&Method::OPTIONS, "/api", None).unwrap_err();
    assert_eq!(e.status_code(), StatusCode::METHOD_NOT_ALLOWED);
    let e = classify(&Method::GET, "/api/v1/namespaces%2Fkube-system/pods", None).unwrap_err();
    assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
    let message = e.to_string();
    assert!(message.contains("%2F") && message.contains("encoded '/'"), "{message}");
    let e = classify(&Method::GET, "/api/v1/namespaces/dev/../x", None).unwrap_err();
    assert!(e.to_string().contains("'..' segment"), "{e}");
    let e = classify(&Method::GET, "/api/v1/pods/%252F", None).unwrap_err();
    assert!(e.to_string().contains("double encoding"), "{e}");
    let e = classify(&Method::GET, "/api/v1/pods/a\u{0}b", None).unwrap_err();
    assert!(e.to_string().contains("U+0000"), "{e}");
    let e = classify(&Method::GET, "/api/v1/pods;x", None).unwrap_err();
    assert_eq!(e, RequestError::ForbiddenCharacter { found: "';'".to_string(), position: 12 });
    let e = classify(&Method::GET, "/api/v1/pods", Some("watch=1;x")).unwrap_err();
    assert!(e.to_string().contains("'&'"), "{e}");
}

#[test]
fn verbs_and_prefixes_print_as_kubernetes_names_them() {
    let verbs = [
        (Verb::Get, "get"),
        (Verb::List, "list"),
        (Verb::Watch, "watch"),
        (Verb::Create, "create"),
        (Verb::Update, "update"),
        (Verb::Patch, "patch"),
        (Verb::Delete, "delete"),
        (Verb::DeleteCollection, "deletecollection"),
        (Verb::Proxy, "proxy"),
    ];
    for (verb, name) in verbs {
        assert_eq!(verb.to_string(), name);
        assert_eq!(verb.is_read(), matches!(name, "get" | "list" | "watch"));
    }
    assert_eq!(ApiPrefix::Apis.to_string(), "apis");
    assert_eq!(NonResourceVerb::Head.to_string(), "head");
}

#[test]
fn field_selector_parsing_follows_the_api_server() {
    assert_eq!(exact_name_from_field_selector("metadata.name=a"), Some("a".into()));
    assert_eq!(exact_name_from_field_selector("metadata.name==a"), Some("a".into()));
    assert_eq!(exact_name_from_field_selector("metadata.name!=a"), None);
    assert_eq!(exact_name_from_field_selector("spec.nodeName=n1,metadata.name=a"), Some("a".into()));
    assert_eq!(exact_name_from_field_selector(",metadata.name=a,"), Some("a".into()));
    assert_eq!(exact_name_from_field_selector("metadata.name=a\\=b"), Some("a=b".into()));
    assert_eq!(exact_name_from_field_selector("metadata.name=a\\\\b"), Some("a\\b".into()));
    assert_eq!(exact_name_from_field_selector("metadata.name=a\\"), None);
    assert_eq!(exact_name_from_field_selector("metadata.name=ñ"), Some("ñ".into()));
    assert_eq!(exact_name_from_field_selector(""), None);
}
