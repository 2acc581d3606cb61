//! Discovery and OpenAPI documents: aggregated discovery (apidiscovery.k8s.io v2 and v2beta1),
//! legacy discovery (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`), `/version`, the OpenAPI v3
//! index with one document per group-version, and the minimal protobuf OpenAPI v2 document.

use serde_json::{Map, Value, json};

use crate::resources::{GROUPS, RESOURCES, ResourceDef};

/// The Kubernetes version kube-sim answers as.
pub const GIT_VERSION: &str = "v1.32.0";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// Which discovery document the `Accept` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFormat {
    /// Aggregated discovery in `apidiscovery.k8s.io/<version>`.
    Aggregated(&'static str),
    Legacy,
}

/// A media range of an `Accept` header: type and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    pub mime: String,
    pub params: Vec<(String, String)>,
}

impl MediaRange {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// True for `application/json`, `application/*` and `*/*`.
    pub fn accepts_json(&self) -> bool {
        matches!(self.mime.as_str(), "application/json" | "application/*" | "*/*")
    }
}

/// Splits an `Accept` header into media ranges, in order (q=0 ranges dropped).
pub fn parse_accept(accept: &str) -> Vec<MediaRange> {
    accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let mime = it.next()?.trim().to_ascii_lowercase();
            if mime.is_empty() {
                return None;
            }
            let params: Vec<(String, String)> = it
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            if params.iter().any(|(k, v)| k == "q" && v.parse::<f32>().is_ok_and(|q| q <= 0.0)) {
                return None;
            }
            Some(MediaRange { mime, params })
        })
        .collect()
}

/// Picks the discovery format for `/api` and `/apis`; `None` when nothing acceptable is asked.
pub fn negotiate(accept: Option<&str>) -> Option<DiscoveryFormat> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Some(DiscoveryFormat::Legacy) };
    for r in parse_accept(accept) {
        if !r.accepts_json() {
            continue;
        }
        match (r.param("g"), r.param("v"), r.param("as")) {
            (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => {
                return Some(DiscoveryFormat::Aggregated("v2"));
            }
            (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                return Some(DiscoveryFormat::Aggregated("v2beta1"));
            }
            (None, None, None) => return Some(DiscoveryFormat::Legacy),
            _ => {}
        }
    }
    None
}

/// The response content type of an aggregated discovery document.
pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

fn strings(xs: &[&str]) -> Value {
    Value::Array(xs.iter().map(|s| Value::String((*s).to_string())).collect())
}

fn aggregated_resource(d: &ResourceDef) -> Value {
    let mut m = Map::new();
    m.insert("resource".into(), json!(d.plural));
    m.insert("responseKind".into(), json!({"group": d.group, "version": d.version, "kind": d.kind}));
    m.insert("scope".into(), json!(if d.namespaced { "Namespaced" } else { "Cluster" }));
    m.insert("singularResource".into(), json!(d.singular));
    m.insert("verbs".into(), strings(d.verbs));
    if !d.short_names.is_empty() {
        m.insert("shortNames".into(), strings(d.short_names));
    }
    if !d.categories.is_empty() {
        m.insert("categories".into(), strings(d.categories));
    }
    if !d.subresources.is_empty() {
        let subs: Vec<Value> = d
            .subresources
            .iter()
            .map(|s| {
                json!({"subresource": s.name, "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                       "verbs": strings(s.verbs)})
            })
            .collect();
        m.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(m)
}

fn aggregated_versions(group: &str, versions: &[&str]) -> Value {
    Value::Array(
        versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = RESOURCES
                    .iter()
                    .filter(|d| d.group == group && d.version == *v)
                    .map(aggregated_resource)
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect(),
    )
}

/// `/api` as an `APIGroupDiscoveryList`.
pub fn api_aggregated(version: &str) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": [{"metadata": {"creationTimestamp": null}, "versions": aggregated_versions("", &["v1"])}]
    })
}

/// `/apis` as an `APIGroupDiscoveryList`.
pub fn apis_aggregated(version: &str) -> Value {
    let items: Vec<Value> = GROUPS
        .iter()
        .map(|g| json!({"metadata": {"name": g.name, "creationTimestamp": null}, "versions": aggregated_versions(g.name, g.versions)}))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items
    })
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn group_json(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

/// Legacy `/apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|g| group_json(g.name, g.versions)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/<group>`.
pub fn api_group(name: &str) -> Option<Value> {
    let g = GROUPS.iter().find(|g| g.name == name)?;
    let mut v = group_json(g.name, g.versions);
    if let Some(m) = v.as_object_mut() {
        m.insert("kind".into(), json!("APIGroup"));
        m.insert("apiVersion".into(), json!("v1"));
    }
    Some(v)
}

/// Legacy `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> =
        RESOURCES.iter().filter(|d| d.group == group && d.version == version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for d in defs {
        let mut m = Map::new();
        m.insert("name".into(), json!(d.plural));
        m.insert("singularName".into(), json!(d.singular));
        m.insert("namespaced".into(), json!(d.namespaced));
        m.insert("kind".into(), json!(d.kind));
        m.insert("verbs".into(), strings(d.verbs));
        if !d.short_names.is_empty() {
            m.insert("shortNames".into(), strings(d.short_names));
        }
        if !d.categories.is_empty() {
            m.insert("categories".into(), strings(d.categories));
        }
        resources.push(Value::Object(m));
        for s in d.subresources {
            let mut m = Map::new();
            m.insert("name".into(), json!(format!("{}/{}", d.plural, s.name)));
            m.insert("singularName".into(), json!(""));
            m.insert("namespaced".into(), json!(d.namespaced));
            if s.group != d.group || s.version != d.version {
                m.insert("group".into(), json!(s.group));
                m.insert("version".into(), json!(s.version));
            }
            m.insert("kind".into(), json!(s.kind));
            m.insert("verbs".into(), strings(s.verbs));
            resources.push(Value::Object(m));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// Every served group-version as its OpenAPI v3 path (`api/v1`, `apis/apps/v1`).
pub fn openapi_v3_paths() -> Vec<String> {
    let mut out = vec!["api/v1".to_string()];
    for g in GROUPS {
        for v in g.versions {
            out.push(format!("apis/{}/{v}", g.name));
        }
    }
    out
}

fn fnv_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// The hash that versions an OpenAPI v3 document URL.
pub fn openapi_v3_hash(path: &str) -> String {
    openapi_v3_doc(path).map(|d| fnv_hex(d.to_string().as_bytes())).unwrap_or_default()
}

/// `/openapi/v3`.
pub fn openapi_v3_index() -> Value {
    let mut paths = Map::new();
    for p in openapi_v3_paths() {
        let hash = openapi_v3_hash(&p);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}));
    }
    json!({"paths": paths})
}

fn op_id(verb: &str, d: &ResourceDef, namespaced_path: bool) -> String {
    let group = if d.group.is_empty() {
        "Core".to_string()
    } else {
        d.group
            .split('.')
            .next()
            .map(|g| {
                let mut c = g.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .unwrap_or_default()
    };
    let version = {
        let mut c = d.version.chars();
        c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
    };
    let scope = if namespaced_path { "Namespaced" } else { "" };
    format!("{verb}{group}{version}{scope}{}", d.kind)
}

fn query_param(name: &str, typ: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": typ, "uniqueItems": true}})
}

/// One OpenAPI v3 document (`api/v1`, `apis/<g>/<v>`): every resource path with its operations,
/// the `x-kubernetes-group-version-kind` of each and the `fieldValidation` / `dryRun` query
/// parameters kubectl checks for. It carries no schemas, so clients fall back to their built-in
/// types for strategic merge patches.
pub fn openapi_v3_doc(path: &str) -> Option<Value> {
    let (group, version) = if let Some(v) = path.strip_prefix("api/") {
        ("", v)
    } else {
        let rest = path.strip_prefix("apis/")?;
        rest.split_once('/')?
    };
    let defs: Vec<&ResourceDef> =
        RESOURCES.iter().filter(|d| d.group == group && d.version == version).collect();
    if defs.is_empty() {
        return None;
    }
    let prefix =
        if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
    let mut paths = Map::new();
    for d in defs {
        let gvk = json!({"group": d.group, "version": d.version, "kind": d.kind});
        let write_params = || {
            json!([
                query_param("dryRun", "string"),
                query_param("fieldManager", "string"),
                query_param("fieldValidation", "string"),
                query_param("pretty", "string")
            ])
        };
        let op = |verb: &str, action: &str, namespaced_path: bool, params: Value| {
            json!({"operationId": op_id(verb, d, namespaced_path), "x-kubernetes-action": action,
                   "x-kubernetes-group-version-kind": gvk, "parameters": params,
                   "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}}})
        };
        let collection = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", d.plural)
        } else {
            format!("{prefix}/{}", d.plural)
        };
        let mut coll = Map::new();
        if d.has_verb("create") {
            coll.insert("post".into(), op("create", "post", d.namespaced, write_params()));
        }
        if d.has_verb("list") {
            coll.insert(
                "get".into(),
                op("list", "list", d.namespaced, json!([query_param("labelSelector", "string")])),
            );
        }
        if d.has_verb("deletecollection") {
            coll.insert("delete".into(), op("deleteCollection", "deletecollection", d.namespaced, json!([])));
        }
        paths.insert(collection.clone(), Value::Object(coll));
        if d.has_verb("get") {
            let mut item = Map::new();
            item.insert("get".into(), op("read", "get", d.namespaced, json!([])));
            if d.has_verb("update") {
                item.insert("put".into(), op("replace", "put", d.namespaced, write_params()));
            }
            if d.has_verb("patch") {
                let mut params = write_params();
                if let Value::Array(a) = &mut params {
                    a.push(query_param("force", "boolean"));
                }
                item.insert("patch".into(), op("patch", "patch", d.namespaced, params));
            }
            if d.has_verb("delete") {
                item.insert("delete".into(), op("delete", "delete", d.namespaced, json!([])));
            }
            paths.insert(format!("{collection}/{{name}}"), Value::Object(item));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}

/// The OpenAPI v2 document in protobuf (`swagger: "2.0"` and nothing else): enough for kubectl
/// 1.27/1.28 to go on to the v3 documents.
pub const OPENAPI_V2_PROTO: &[u8] = &[0x0a, 0x03, b'2', b'.', b'0'];
pub const OPENAPI_V2_PROTO_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

pub fn openapi_v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": GIT_VERSION}, "paths": {}, "definitions": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_accept_order() {
        let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(v2)), Some(DiscoveryFormat::Aggregated("v2")));
        let beta =
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(beta)), Some(DiscoveryFormat::Aggregated("v2beta1")));
        assert_eq!(negotiate(Some("application/json, */*")), Some(DiscoveryFormat::Legacy));
        assert_eq!(negotiate(None), Some(DiscoveryFormat::Legacy));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")), None);
        assert_eq!(
            negotiate(Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList")),
            None
        );
    }

    #[test]
    fn aggregated_documents() {
        let api = api_aggregated("v2");
        let pods = &api["items"][0]["versions"][0]["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["resource"] == "pods").cloned())
            .unwrap_or_default();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(
            pods["subresources"].as_array().is_some_and(|s| s.iter().any(|x| x["subresource"] == "exec"))
        );
        assert_eq!(api["items"][0]["versions"][0]["freshness"], "Current");
        let apis = apis_aggregated("v2beta1");
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        assert!(apis["items"].as_array().is_some_and(|i| i.iter().any(|g| g["metadata"]["name"] == "apps")));
    }

    #[test]
    fn legacy_documents() {
        let Some(core) = resource_list("", "v1") else { panic!() };
        let names: Vec<&str> =
            core["resources"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/exec") && names.contains(&"namespaces"));
        let Some(apps) = resource_list("apps", "v1") else { panic!() };
        assert_eq!(apps["groupVersion"], "apps/v1");
        assert!(resource_list("apps", "v9").is_none());
        assert!(api_group("apps").is_some());
        assert_eq!(api_group_list()["groups"].as_array().map(Vec::len), Some(GROUPS.len()));
    }

    #[test]
    fn openapi() {
        let idx = openapi_v3_index();
        let Some(url) = idx["paths"]["api/v1"]["serverRelativeURL"].as_str() else { panic!() };
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        let Some(doc) = openapi_v3_doc("api/v1") else { panic!() };
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert!(
            patch["parameters"].as_array().is_some_and(|p| p.iter().any(|x| x["name"] == "fieldValidation"))
        );
        assert!(openapi_v3_doc("apis/apps/v1").is_some());
        assert!(openapi_v3_doc("apis/nope/v1").is_none());
        assert_eq!(op_id("patch", resources_pod(), true), "patchCoreV1NamespacedPod");
    }

    fn resources_pod() -> &'static ResourceDef {
        match crate::resources::find("", "pods") {
            Some((_, d)) => d,
            None => panic!(),
        }
    }
}
