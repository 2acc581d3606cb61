//! Property: whatever kubegate classifies and allows is exactly what the API server will act on.
//!
//! The oracle is a deliberately naive model of the API server: Go's `url.Parse` decodes every
//! `%XX` of the forwarded path, `url.ParseQuery` reads the query, and requestinfo.go classifies
//! the decoded path. For every request `classify` accepts, the model's view of the forwarded
//! bytes must equal kubegate's, and what `authorize` allows must stay within the role.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use kubegate_events::access::{EnvironmentRole, Grant};
use kubegate_proxy::authz::{Decision, authorize};
use kubegate_proxy::request_info::{RequestInfo, classify};
use proptest::prelude::*;

/// What the API server derives from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    NonResource {
        verb: String,
        path: String,
    },
    Resource {
        verb: String,
        prefix: String,
        group: String,
        version: String,
        namespace: String,
        resource: String,
        subresource: String,
        name: String,
        parts: Vec<String>,
    },
}

/// Go's `unescape(s, encodePath)`: every `%XX` becomes a byte; a bad escape fails the parse.
fn go_path_unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `url.QueryUnescape`.
fn go_query_unescape(raw: &str) -> Option<Vec<u8>> {
    let replaced = raw.replace('+', " ");
    let bytes = replaced.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Go's `url.ParseQuery` (1.17+): pairs with `;` or bad escapes are dropped.
fn go_parse_query(raw: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for chunk in raw.split('&') {
        if chunk.contains(';') || chunk.is_empty() {
            continue;
        }
        let (k, v) = chunk.split_once('=').unwrap_or((chunk, ""));
        if let (Some(k), Some(v)) = (go_query_unescape(k), go_query_unescape(v)) {
            out.push((k, v));
        }
    }
    out
}

fn first<'a>(query: &'a [(Vec<u8>, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
    query.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v.as_slice())
}

/// `fields.ParseSelector(s).RequiresExactMatch("metadata.name")`, written out plainly.
fn selector_name(selector: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = selector.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            if let Some(n) = chars.next() {
                current.push(n);
            }
        } else if c == ',' {
            terms.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if !selector.is_empty() {
        terms.push(current);
    }
    terms.sort();
    let mut result = None;
    for term in terms.iter().filter(|t| !t.is_empty()) {
        let mut split = None;
        for (i, _) in term.char_indices() {
            let rest = &term[i..];
            if let Some(op) = ["!=", "==", "="].into_iter().find(|op| rest.starts_with(op)) {
                split = Some((&term[..i], op, &rest[op.len()..]));
                break;
            }
        }
        let (field, op, raw_value) = split?;
        let mut value = String::new();
        let mut it = raw_value.chars();
        while let Some(c) = it.next() {
            match c {
                '\\' => match it.next() {
                    Some(e @ ('\\' | ',' | '=')) => value.push(e),
                    _ => return None,
                },
                ',' | '=' => return None,
                c => value.push(c),
            }
        }
        if result.is_none() && op != "!=" && field == "metadata.name" {
            result = Some(value);
        }
    }
    result
}

/// requestinfo.go on the decoded path.
fn api_server_sees(method: &str, raw_path: &str, raw_query: &str) -> Option<Seen> {
    let path = go_path_unescape(raw_path)?;
    let non_resource = Seen::NonResource { verb: method.to_ascii_lowercase(), path: path.clone() };
    let trimmed = path.trim_matches('/');
    let mut parts: Vec<String> =
        if trimmed.is_empty() { vec![] } else { trimmed.split('/').map(str::to_string).collect() };
    if parts.len() < 3 || (parts[0] != "api" && parts[0] != "apis") {
        return Some(non_resource);
    }
    let prefix = parts.remove(0);
    let mut group = String::new();
    if prefix == "apis" {
        if parts.len() < 3 {
            return Some(non_resource);
        }
        group = parts.remove(0);
    }
    let version = parts.remove(0);
    let mut verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_string();
    if parts[0] == "watch" || parts[0] == "proxy" {
        if parts.len() < 2 {
            return None;
        }
        verb = parts.remove(0);
    }
    let mut namespace = String::new();
    if parts[0] == "namespaces" && parts.len() > 1 {
        namespace = parts[1].clone();
        if parts.len() > 2 && parts[2] != "status" && parts[2] != "finalize" {
            parts.drain(..2);
        }
    }
    let resource = parts[0].clone();
    let mut name = parts.get(1).cloned().unwrap_or_default();
    let subresource = if verb != "proxy" { parts.get(2).cloned().unwrap_or_default() } else { String::new() };
    if name.is_empty() && verb == "get" {
        let query = go_parse_query(raw_query);
        let watch =
            first(&query, "watch").map(|v| !(v == b"0" || v.eq_ignore_ascii_case(b"false"))).unwrap_or(false);
        verb = if watch { "watch" } else { "list" }.to_string();
        if let Some(selector) = first(&query, "fieldSelector") {
            let selector = String::from_utf8(selector.to_vec()).ok()?;
            if let Some(n) = selector_name(&selector)
                && n != "."
                && n != ".."
                && !n.contains('/')
                && !n.contains('%')
            {
                name = n;
            }
        }
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection".to_string();
    }
    Some(Seen::Resource { verb, prefix, group, version, namespace, resource, subresource, name, parts })
}

fn kubegate_sees(info: &RequestInfo<'_>) -> Seen {
    match info {
        RequestInfo::NonResource(n) => {
            Seen::NonResource { verb: n.verb.to_string(), path: n.path.to_string() }
        }
        RequestInfo::Resource(r) => Seen::Resource {
            verb: r.verb.to_string(),
            prefix: r.api_prefix.to_string(),
            group: r.group.to_string(),
            version: r.version.to_string(),
            namespace: r.namespace.as_deref().unwrap_or_default().to_string(),
            resource: r.resource.to_string(),
            subresource: r.subresource.as_deref().unwrap_or_default().to_string(),
            name: r.name.as_deref().unwrap_or_default().to_string(),
            parts: r.parts.iter().map(|p| p.into_owned()).collect(),
        },
    }
}

fn grants() -> Vec<Grant> {
    vec![
        Grant { role: EnvironmentRole::EnvironmentAdmin, namespaces: vec![] },
        Grant { role: EnvironmentRole::Operator, namespaces: vec![] },
        Grant { role: EnvironmentRole::Helpdesk, namespaces: vec![] },
        Grant { role: EnvironmentRole::Standard, namespaces: vec!["dev".into(), "web".into()] },
        Grant { role: EnvironmentRole::ReadOnly, namespaces: vec!["dev".into()] },
    ]
}

const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "nodes"),
    ("", "namespaces"),
    ("", "persistentvolumes"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
];

/// The role table's promises, checked on what the API server will act on.
fn check_allowed_within_role(grant: &Grant, method: &str, seen: &Seen, filtered: bool) {
    let role = grant.role;
    if role == EnvironmentRole::EnvironmentAdmin {
        return;
    }
    let Seen::Resource { verb, group, namespace, resource, subresource, name, parts, .. } = seen else {
        let Seen::NonResource { path, .. } = seen else { unreachable!() };
        assert_eq!(method, "GET", "{role} may only GET non-resource paths: {path}");
        let public = ["/api", "/apis", "/version", "/version/", "/openapi", "/healthz", "/livez", "/readyz"]
            .contains(&path.as_str())
            || path.starts_with("/api/")
            || path.starts_with("/apis/")
            || path.starts_with("/openapi/");
        assert!(public, "{role} reached non-resource path {path}");
        return;
    };
    let self_review = verb == "create"
        && namespace.is_empty()
        && ((group == "authorization.k8s.io"
            && (resource == "selfsubjectaccessreviews" || resource == "selfsubjectrulesreviews"))
            || (group == "authentication.k8s.io" && resource == "selfsubjectreviews"));
    if self_review {
        return;
    }
    let read = matches!(verb.as_str(), "get" | "list" | "watch");
    let connect = matches!(subresource.as_str(), "exec" | "attach" | "portforward");
    let proxy = verb == "proxy" || subresource == "proxy";
    let is_namespace_object =
        group.is_empty() && resource == "namespaces" && parts.len() >= 2 && name == namespace;
    // CVE-2019-11247: never a cluster-scoped resource inside a namespace.
    if !namespace.is_empty() && !is_namespace_object {
        assert!(
            !CLUSTER_SCOPED.contains(&(group.as_str(), resource.as_str())),
            "{role} reached cluster-scoped {resource} through namespace {namespace}"
        );
    }
    match role {
        EnvironmentRole::Helpdesk | EnvironmentRole::ReadOnly => {
            assert!(read && !connect && !proxy, "{role} allowed {verb} {resource}/{subresource}");
            assert_ne!(resource, "secrets", "{role} read secrets");
        }
        EnvironmentRole::Operator => {
            if ["kube-system", "kube-public", "kube-node-lease"].contains(&namespace.as_str())
                || namespace.is_empty()
            {
                assert!(read && !connect && !proxy, "operator allowed {verb} {resource} in {namespace:?}");
            }
            if namespace.is_empty() {
                assert_ne!(resource, "secrets", "operator listed secrets across namespaces");
            }
        }
        _ => {}
    }
    if role.is_namespace_scoped() {
        let granted = |ns: &str| grant.namespaces.iter().any(|g| g == ns);
        assert!(!proxy, "{role} used a proxy subresource");
        if is_namespace_object {
            assert!(read && granted(name), "{role} reached namespace {name}");
        } else if !namespace.is_empty() {
            assert!(granted(namespace), "{role} reached namespace {namespace}");
        } else if group.is_empty() && resource == "namespaces" {
            if parts.len() >= 2 {
                assert!(read && granted(name), "{role} reached namespace {name}");
            } else {
                assert!(read && filtered, "{role} listed namespaces unfiltered");
            }
        } else {
            let node = resource == "nodes" && (group.is_empty() || group == "metrics.k8s.io");
            assert!(
                role == EnvironmentRole::Standard && node && read,
                "{role} reached {resource}.{group} outside a namespace"
            );
        }
    }
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "api", "apis", "v1", "apps", "example.com", "rbac.authorization.k8s.io",
            "authorization.k8s.io", "metrics.k8s.io", "namespaces", "namespaces", "dev", "web",
            "kube-system", "qa", "pods", "secrets", "nodes", "clusterroles", "persistentvolumes",
            "customresourcedefinitions", "selfsubjectaccessreviews", "watch", "proxy", "status",
            "finalize", "exec", "attach", "portforward", "log", "ephemeralcontainers", "x", "nginx",
            "widgets", "version", "openapi", "healthz", "metrics", "v3",
        ]).prop_map(str::to_string),
        2 => prop::sample::select(vec![
            "", ".", "..", "...", "%2F", "%2f", "%2e", "%2E%2E", ".%2e", "%25", "%252F", "%3A",
            "%64ev", "d%65v", "k%75be-system", "%6eamespaces", "%77atch", "%70roxy", "a;b", ";", "#",
            "a b", "%zz", "%", "%4", "\\", "é", "%00", "%0A", "a+b", "~", "a:b", "%C3%A9", "?", "%3F",
            "%5C", "%2", "%7E", "system:node:n1",
        ]).prop_map(str::to_string),
        1 => "[a-z0-9.%:+;#~-]{0,6}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "",
            "/api/v1",
            "/apis/apps/v1",
            "/apis/example.com/v1",
            "/api/v1/namespaces/dev",
        ]),
        prop::collection::vec(segment(), 0..7),
        any::<bool>(),
    )
        .prop_map(|(prefix, segments, trailing)| {
            let mut p = prefix.to_string();
            for s in segments {
                p.push('/');
                p.push_str(&s);
            }
            if p.is_empty() || trailing {
                p.push('/');
            }
            p
        })
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "watch=1",
            "watch=true",
            "watch=false",
            "watch=0",
            "watch=",
            "watch",
            "watch=FALSE",
            "w%61tch=1",
            "watch=%66alse",
            "fieldSelector=metadata.name%3Dx",
            "fieldSelector=metadata.name%3Ddev",
            "fieldSelector=metadata.name%21%3Dx",
            "fieldSelector=metadata.name%3Da%2Fb",
            "fieldSelector=metadata.name%3Dkube-system%2Cx%3Dy",
            "fieldSelector=metadata.name=web",
            "limit=500",
            "dryRun=All",
            "as=admin",
            "impersonate-user=admin",
            "impersonate-group=system:masters",
            ";",
            "a=%zz",
            "#x",
            "a=b c",
            "timeoutSeconds=3",
            "",
            "command=%2Fbin%2Fsh",
            "a=+b+",
        ]),
        0..4,
    )
    .prop_map(|pairs| pairs.join("&"))
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["GET", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn what_is_classified_and_allowed_is_exactly_what_is_forwarded(
        method in method(),
        path in path(),
        query in query(),
    ) {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let q = (!query.is_empty()).then_some(query.as_str());
        let Ok(classified) = classify(&m, &path, q) else {
            return Ok(());
        };
        prop_assert_eq!(classified.forward_path, path.as_str());
        let ours = kubegate_sees(&classified.info);
        let upstream = api_server_sees(method, classified.forward_path, &query);
        prop_assert_eq!(Some(&ours), upstream.as_ref(), "path {} ?{}", path, query);

        // The forwarded path classifies to the same request.
        let again = classify(&m, classified.forward_path, q).unwrap();
        prop_assert_eq!(&again.info, &classified.info);

        // Query parameters that mean nothing change nothing.
        let noisy = if query.is_empty() {
            "as=admin&dryRun=All&impersonate-user=system:admin".to_string()
        } else {
            format!("{query}&as=admin&dryRun=All&impersonate-user=system:admin")
        };
        let noisy_info = classify(&m, &path, Some(&noisy)).unwrap().info;

        for grant in grants() {
            let decision = authorize(&classified.info, &grant);
            prop_assert_eq!(&authorize(&noisy_info, &grant), &decision);
            if decision.is_allowed() {
                let filtered = matches!(decision, Decision::AllowNamespacesFiltered { .. });
                check_allowed_within_role(&grant, method, &ours, filtered);
            }
        }
    }

    #[test]
    fn classify_never_panics_on_arbitrary_text(
        method in method(),
        path in ".*",
        query in ".*",
    ) {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        if let Ok(c) = classify(&m, &path, Some(&query)) {
            for grant in grants() {
                let _ = authorize(&c.info, &grant);
            }
        }
    }

    #[test]
    fn classify_never_panics_on_arbitrary_bytes(
        path in prop::collection::vec(any::<u8>(), 0..64),
        query in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let path = String::from_utf8_lossy(&path);
        let query = String::from_utf8_lossy(&query);
        for m in [Method::GET, Method::DELETE, Method::POST] {
            if let Ok(c) = classify(&m, &path, Some(&query)) {
                for grant in grants() {
                    let _ = authorize(&c.info, &grant);
                }
            }
            let _ = classify(&m, &format!("/api/v1/namespaces/dev/{path}"), None);
        }
    }
}

#[test]
fn the_model_agrees_on_known_requests() {
    let seen =
        api_server_sees("GET", "/api/v1/namespaces/d%65v/pods", "fieldSelector=metadata.name%3Dx&watch=1")
            .unwrap();
    assert_eq!(
        seen,
        Seen::Resource {
            verb: "watch".into(),
            prefix: "api".into(),
            group: String::new(),
            version: "v1".into(),
            namespace: "dev".into(),
            resource: "pods".into(),
            subresource: String::new(),
            name: "x".into(),
            parts: vec!["pods".into()],
        }
    );
    // What the path rule exists for: Go would decode these into different structure.
    for path in
        ["/api/v1/namespaces%2Fkube-system%2Fsecrets", "/api/v1/namespaces/dev/%2e%2e/kube-system/secrets"]
    {
        assert!(classify(&Method::GET, path, None).is_err());
        let decoded = go_path_unescape(path).unwrap();
        assert!(decoded.contains("kube-system/secrets"), "{decoded}");
    }
}
