//! Request classification as the API server's `RequestInfoFactory` does it: verb, API group,
//! version, namespace, resource, subresource and name from the method, path and query.

use crate::query::Query;
use crate::selectors::FieldSelector;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub is_resource: bool,
    pub path: String,
    /// Lower-case verb: get, list, watch, create, update, patch, delete, deletecollection,
    /// proxy; for non-resource requests the lower-cased HTTP method.
    pub verb: String,
    pub api_prefix: String,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The path segments from the resource on (`pods/nginx/exec`).
    pub parts: Vec<String>,
}

fn split_path(path: &str) -> Vec<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed.split('/').map(|s| crate::query::percent_decode(s, false)).collect()
}

/// Whether `name` is usable as a path segment (`path.IsValidPathSegmentName`).
fn valid_path_segment(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// Classifies a request. Errors (a bare `/watch` without a resource) come back as `Err`.
pub fn classify(method: &str, path: &str, query: &Query) -> Result<RequestInfo, String> {
    let mut info = RequestInfo {
        is_resource: false,
        path: path.to_string(),
        verb: method.to_ascii_lowercase(),
        ..RequestInfo::default()
    };
    let mut parts = split_path(path);
    if parts.len() < 3 {
        return Ok(info);
    }
    if parts[0] != "api" && parts[0] != "apis" {
        return Ok(info);
    }
    info.api_prefix = parts[0].clone();
    parts.remove(0);
    if info.api_prefix == "apis" {
        if parts.len() < 3 {
            return Ok(info);
        }
        info.api_group = parts.remove(0);
    }
    info.is_resource = true;
    info.api_version = parts.remove(0);

    if parts[0] == "watch" || parts[0] == "proxy" {
        if parts.len() < 2 {
            return Err(format!("unable to determine kind and namespace from url, {path}"));
        }
        info.verb = parts.remove(0);
    } else {
        info.verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_string();
    }

    if parts[0] == "namespaces" && parts.len() > 1 {
        info.namespace = parts[1].clone();
        if parts.len() > 2 && parts[2] != "status" && parts[2] != "finalize" {
            parts.drain(0..2);
        }
    }

    if parts.len() >= 3 && info.verb != "proxy" {
        info.subresource = parts[2].clone();
    }
    if parts.len() >= 2 {
        info.name = parts[1].clone();
    }
    if !parts.is_empty() {
        info.resource = parts[0].clone();
    }
    info.parts = parts;

    if info.name.is_empty() && info.verb == "get" {
        info.verb = if query.bool("watch").unwrap_or(false) { "watch" } else { "list" }.to_string();
        if let Some(fs) = query.get("fieldSelector")
            && let Ok(sel) = FieldSelector::parse(fs)
            && let Some(name) = sel.requires_exact_match("metadata.name")
            && valid_path_segment(&name)
        {
            info.name = name;
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_string();
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: &str, url: &str) -> RequestInfo {
        let (path, q) = url.split_once('?').unwrap_or((url, ""));
        match classify(method, path, &Query::parse(q)) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn non_resource() {
        for p in [
            "/",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/openapi/v3",
        ] {
            let i = c("GET", p);
            assert!(!i.is_resource, "{p}");
            assert_eq!(i.verb, "get");
            assert_eq!(i.path, p);
        }
        assert_eq!(c("POST", "/api").verb, "post");
    }

    #[test]
    fn core_resources() {
        let i = c("GET", "/api/v1/namespaces/default/pods");
        assert_eq!((i.verb.as_str(), i.namespace.as_str(), i.resource.as_str()), ("list", "default", "pods"));
        let i = c("GET", "/api/v1/namespaces/default/pods?watch=true&resourceVersion=5");
        assert_eq!(i.verb, "watch");
        let i = c("GET", "/api/v1/namespaces/default/pods?watch=1");
        assert_eq!(i.verb, "watch");
        let i = c("GET", "/api/v1/namespaces/default/pods?watch=false");
        assert_eq!(i.verb, "list");
        let i = c("GET", "/api/v1/watch/namespaces/default/pods/nginx");
        assert_eq!((i.verb.as_str(), i.name.as_str()), ("watch", "nginx"));
        let i = c("GET", "/api/v1/watch/pods");
        assert_eq!((i.verb.as_str(), i.namespace.as_str(), i.resource.as_str()), ("watch", "", "pods"));
        let i = c("GET", "/api/v1/pods?limit=500");
        assert_eq!((i.verb.as_str(), i.namespace.as_str()), ("list", ""));
        let i = c("GET", "/api/v1/namespaces/default/pods/nginx");
        assert_eq!((i.verb.as_str(), i.name.as_str()), ("get", "nginx"));
        let i = c("GET", "/api/v1/namespaces/default/pods/nginx/log");
        assert_eq!((i.resource.as_str(), i.subresource.as_str()), ("pods", "log"));
        let i = c("POST", "/api/v1/namespaces/default/pods/nginx/exec?command=ls");
        assert_eq!((i.verb.as_str(), i.subresource.as_str()), ("create", "exec"));
        let i = c("GET", "/api/v1/namespaces/default/pods/nginx/exec?command=ls");
        assert_eq!((i.verb.as_str(), i.subresource.as_str()), ("get", "exec"));
        let i = c("DELETE", "/api/v1/namespaces/default/pods");
        assert_eq!(i.verb, "deletecollection");
        let i = c("DELETE", "/api/v1/namespaces/default/pods/x");
        assert_eq!(i.verb, "delete");
        let i = c("PUT", "/api/v1/namespaces/default/configmaps/x");
        assert_eq!(i.verb, "update");
        let i = c("PATCH", "/api/v1/namespaces/default/configmaps/x");
        assert_eq!(i.verb, "patch");
    }

    #[test]
    fn namespaces_themselves() {
        let i = c("GET", "/api/v1/namespaces");
        assert_eq!((i.verb.as_str(), i.resource.as_str(), i.namespace.as_str()), ("list", "namespaces", ""));
        let i = c("GET", "/api/v1/namespaces/dev");
        assert_eq!(
            (i.verb.as_str(), i.resource.as_str(), i.name.as_str(), i.namespace.as_str()),
            ("get", "namespaces", "dev", "dev")
        );
        let i = c("PUT", "/api/v1/namespaces/dev/finalize");
        assert_eq!(
            (i.resource.as_str(), i.subresource.as_str(), i.name.as_str()),
            ("namespaces", "finalize", "dev")
        );
        let i = c("GET", "/api/v1/namespaces/dev/status");
        assert_eq!((i.resource.as_str(), i.subresource.as_str()), ("namespaces", "status"));
    }

    #[test]
    fn groups_and_field_selector_names() {
        let i = c("GET", "/apis/apps/v1/namespaces/dev/deployments/web");
        assert_eq!((i.api_group.as_str(), i.api_version.as_str(), i.name.as_str()), ("apps", "v1", "web"));
        let i = c("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dnginx&watch=true");
        assert_eq!((i.verb.as_str(), i.name.as_str()), ("watch", "nginx"));
        let i = c("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%21%3Dnginx");
        assert_eq!((i.verb.as_str(), i.name.as_str()), ("list", ""));
        let i = c("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews");
        assert_eq!(
            (i.verb.as_str(), i.api_group.as_str(), i.resource.as_str()),
            ("create", "authorization.k8s.io", "selfsubjectaccessreviews")
        );
        let i = c("GET", "/api/v1/namespaces/default/pods/nginx/proxy/some/path");
        assert_eq!((i.verb.as_str(), i.subresource.as_str()), ("get", "proxy"));
        let i = c("GET", "/api/v1/proxy/namespaces/default/pods/nginx/x");
        assert_eq!((i.verb.as_str(), i.subresource.as_str(), i.name.as_str()), ("proxy", "", "nginx"));
        assert!(classify("GET", "/api/v1/watch", &Query::default()).is_err());
    }
}
