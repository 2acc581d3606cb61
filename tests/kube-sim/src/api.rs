//! The HTTP surface: authentication, impersonation, authorization of every request, then
//! routing to discovery, OpenAPI, resources (CRUD, list, watch), pod logs, reviews and pod
//! streams. Errors become `Status` bodies here.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Credential, TokenAuthenticator, UserInfo};
use crate::cluster::{Cluster, DeleteOptions, PatchKind};
use crate::discovery::{self, DiscoveryFormat};
use crate::knobs::{Knobs, Stall};
use crate::logs::{LogOptions, LogSource};
use crate::objects::{self, meta_str};
use crate::query::Query;
use crate::rbac::{Attributes, RbacIndex};
use crate::reqlog::{Entry, RequestLog, TrackedBody};
use crate::requestinfo::{self, RequestInfo};
use crate::resources::{self, ResId, ResourceDef, ids};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Event, EventType, Key, Snapshot, Stored};
use crate::streams::{PodTarget, SimBody, StreamRequest, Streams};
use crate::table::{self, IncludeObject};

/// Largest request body accepted (the API server's limit).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Everything a request handler needs.
pub struct State {
    pub cluster: Arc<Cluster>,
    pub tokens: TokenAuthenticator,
    pub anonymous: bool,
    pub knobs: Arc<Knobs>,
    pub reqlog: RequestLog,
    pub streams: Streams,
    pub shutdown: CancellationToken,
    /// `host:port` clients reach this server at (legacy `/api` answers it).
    pub server_address: String,
    /// Also require `create` for WebSocket (GET) exec/attach/portforward, as Kubernetes 1.35
    /// does with AuthorizePodWebsocketUpgradeCreatePermission.
    pub websocket_requires_create: bool,
    pub log_interval: Duration,
}

/// Per-connection facts.
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The user of a verified client certificate.
    pub cert_user: Option<UserInfo>,
    /// Notified to cut the connection (drop-mid-response knob).
    pub kill: Arc<Notify>,
}

// ---------------------------------------------------------------------------------------------
// responses

fn full(b: impl Into<Bytes>) -> SimBody {
    Full::new(b.into()).boxed()
}

/// A random-looking UUID (v4 layout) per response, without a system call: splitmix64 over a
/// per-process seed and a counter.
fn audit_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let b = *uuid::Uuid::new_v4().as_bytes();
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    });
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hi = mix(seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let lo = mix(hi ^ seed.rotate_left(17));
    let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

fn respond(status: u16, content_type: &str, body: SimBody) -> Response<SimBody> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&audit_id()) {
        h.insert("audit-id", v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(CONTENT_TYPE, v);
    }
    r
}

fn json_bytes(status: u16, b: impl Into<Bytes>) -> Response<SimBody> {
    respond(status, "application/json", full(b))
}

fn json_value(status: u16, v: &Value) -> Response<SimBody> {
    json_bytes(status, serde_json::to_vec(v).unwrap_or_default())
}

fn error(e: &ApiError) -> Response<SimBody> {
    json_value(e.code, &e.to_status())
}

/// How a response object is encoded, from `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Json,
    Table(&'static str, IncludeObject),
    PartialMetadata,
}

fn negotiate_output(accept: Option<&str>, query: &Query) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Output::Json) };
    for r in discovery::parse_accept(accept) {
        if !r.accepts_json() {
            continue;
        }
        match (r.param("as"), r.param("g"), r.param("v")) {
            (None, _, _) => return Ok(Output::Json),
            (Some("Table"), Some("meta.k8s.io"), Some(v @ ("v1" | "v1beta1"))) => {
                let include =
                    IncludeObject::parse(query.get("includeObject")).map_err(ApiError::bad_request)?;
                return Ok(Output::Table(if v == "v1" { "v1" } else { "v1beta1" }, include));
            }
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                Some("v1" | "v1beta1"),
            ) => {
                return Ok(Output::PartialMetadata);
            }
            _ => {}
        }
    }
    Err(ApiError::not_acceptable())
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
           "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

/// One object in the requested encoding.
fn object_response(status: u16, def: &ResourceDef, obj: &Stored, output: Output) -> Response<SimBody> {
    match output {
        Output::Json => json_bytes(status, obj.json.clone()),
        Output::Table(v, include) => {
            let row = table::row(def, &obj.value, include, Utc::now());
            json_value(
                status,
                &table::table(def, vec![row], json!({"resourceVersion": obj.rv.to_string()}), v, true),
            )
        }
        Output::PartialMetadata => json_value(status, &partial(&obj.value)),
    }
}

// ---------------------------------------------------------------------------------------------
// entry point

/// Serves one request: logs it, answers it, and tracks the body it sends.
pub async fn serve(state: Arc<State>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Response<SimBody> {
    let entry = state.knobs.request_log().then(|| state.reqlog.start(&req));
    let cut = state.knobs.drop_mid_response().then(|| conn.kill.clone());
    let resp = handle(&state, &conn, req, entry.as_deref()).await;
    if let Some(e) = &entry {
        e.set_status(resp.status().as_u16());
    }
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, TrackedBody::wrap(body, entry, cut))
}

fn authenticate(state: &State, conn: &ConnInfo, headers: &http::HeaderMap) -> Result<UserInfo, ApiError> {
    if let Some(u) = &conn.cert_user {
        return Ok(u.clone());
    }
    match auth::credential(headers) {
        Credential::Bearer(t) => {
            state.tokens.lookup(t).map(|u| (*u).clone()).ok_or_else(ApiError::unauthorized)
        }
        Credential::None if state.anonymous => Ok(UserInfo::anonymous()),
        _ => Err(ApiError::unauthorized()),
    }
}

fn attributes(info: &RequestInfo) -> Attributes<'_> {
    Attributes {
        resource_request: info.is_resource,
        verb: &info.verb,
        namespace: &info.namespace,
        api_group: &info.api_group,
        api_version: &info.api_version,
        resource: &info.resource,
        subresource: &info.subresource,
        name: &info.name,
        path: &info.path,
    }
}

fn is_stream_subresource(info: &RequestInfo) -> bool {
    info.is_resource
        && info.api_group.is_empty()
        && info.resource == "pods"
        && matches!(info.subresource.as_str(), "exec" | "attach" | "portforward")
}

async fn handle(
    state: &Arc<State>,
    conn: &ConnInfo,
    req: Request<Incoming>,
    entry: Option<&Entry>,
) -> Response<SimBody> {
    if state.knobs.stall() == Stall::Response {
        state.shutdown.cancelled().await;
        return error(&ApiError::new(503, "ServiceUnavailable", "the server is shutting down"));
    }
    let principal = match authenticate(state, conn, req.headers()) {
        Ok(u) => u,
        Err(e) => return error(&e),
    };
    if let Some(e) = entry {
        e.set_principal(&principal);
    }
    let rbac = state.cluster.rbac();
    let user = if auth::wants_impersonation(req.headers()) {
        match auth::impersonate(&principal, req.headers(), |u, a| rbac.authorize(u, a)) {
            Ok(Some(u)) => u,
            Ok(None) => principal,
            Err(e) => return error(&e),
        }
    } else {
        principal
    };
    if let Some(e) = entry {
        e.set_effective(&user);
    }
    let query = Query::parse(req.uri().query().unwrap_or_default());
    let info = match requestinfo::classify(req.method().as_str(), req.uri().path(), &query) {
        Ok(i) => i,
        Err(m) => return error(&ApiError::internal(m)),
    };
    let attrs = attributes(&info);
    let decision = rbac.authorize(&user, &attrs);
    if !decision.allowed {
        return error(&decision.refusal(&attrs, &user.name));
    }
    if state.websocket_requires_create && is_stream_subresource(&info) && info.verb == "get" {
        let create = Attributes { verb: "create", ..attrs };
        let d = rbac.authorize(&user, &create);
        if !d.allowed {
            return error(&d.refusal(&create, &user.name));
        }
    }
    let result = if info.is_resource {
        resource_request(state, req, &info, &query, &user, &rbac).await
    } else {
        non_resource(state, &req, &query)
    };
    match result {
        Ok(r) => r,
        Err(e) => error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// non-resource paths

fn non_resource(
    state: &State,
    req: &Request<Incoming>,
    query: &Query,
) -> Result<Response<SimBody>, ApiError> {
    let path = req.uri().path();
    let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let known =
        matches!(path, "/" | "/version" | "/version/" | "/api" | "/apis" | "/openapi/v2" | "/openapi/v3")
            || path.starts_with("/healthz")
            || path.starts_with("/livez")
            || path.starts_with("/readyz")
            || path.starts_with("/api/")
            || path.starts_with("/apis/")
            || path.starts_with("/openapi/v3/");
    if !get {
        return Err(if known { ApiError::method_not_allowed() } else { ApiError::path_not_found() });
    }
    let trimmed = path.trim_end_matches('/');
    match trimmed {
        "" => {
            let mut paths = vec!["/api".to_string(), "/api/v1".to_string(), "/apis".to_string()];
            for g in resources::GROUPS {
                paths.push(format!("/apis/{}", g.name));
                for v in g.versions {
                    paths.push(format!("/apis/{}/{v}", g.name));
                }
            }
            paths.extend(
                ["/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"].map(String::from),
            );
            return Ok(json_value(200, &json!({"paths": paths})));
        }
        "/version" => return Ok(json_value(200, &discovery::version())),
        "/api" | "/apis" => {
            return match discovery::negotiate(accept) {
                Some(DiscoveryFormat::Aggregated(v)) => {
                    let doc = if trimmed == "/api" {
                        discovery::api_aggregated(v)
                    } else {
                        discovery::apis_aggregated(v)
                    };
                    let ct = discovery::aggregated_content_type(v);
                    let mut r = respond(200, &ct, full(serde_json::to_vec(&doc).unwrap_or_default()));
                    r.headers_mut().insert(http::header::VARY, HeaderValue::from_static("Accept"));
                    Ok(r)
                }
                Some(DiscoveryFormat::Legacy) => Ok(json_value(
                    200,
                    &if trimmed == "/api" {
                        discovery::api_versions(&state.server_address)
                    } else {
                        discovery::api_group_list()
                    },
                )),
                None => Err(ApiError::not_acceptable()),
            };
        }
        "/openapi/v2" => {
            let wants_proto = accept.is_some_and(|a| a.contains("protobuf"));
            return Ok(if wants_proto {
                respond(
                    200,
                    discovery::OPENAPI_V2_PROTO_CONTENT_TYPE,
                    full(Bytes::from_static(discovery::OPENAPI_V2_PROTO)),
                )
            } else {
                json_value(200, &discovery::openapi_v2_json())
            });
        }
        "/openapi/v3" => return Ok(json_value(200, &discovery::openapi_v3_index())),
        _ => {}
    }
    for probe in ["/healthz", "/livez", "/readyz"] {
        if trimmed == probe || trimmed.starts_with(&format!("{probe}/")) {
            let body = if query.has("verbose") {
                format!("[+]ping ok\n{} check passed\n", &probe[1..])
            } else {
                "ok".into()
            };
            return Ok(respond(200, "text/plain; charset=utf-8", full(body)));
        }
    }
    if let Some(doc_path) = trimmed.strip_prefix("/openapi/v3/") {
        let doc = discovery::openapi_v3_doc(doc_path).ok_or_else(ApiError::path_not_found)?;
        let mut r = json_value(200, &doc);
        if query.has("hash") {
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
        }
        return Ok(r);
    }
    if trimmed == "/api/v1" {
        return discovery::resource_list("", "v1")
            .map(|d| json_value(200, &d))
            .ok_or_else(ApiError::path_not_found);
    }
    if let Some(rest) = trimmed.strip_prefix("/apis/") {
        let parts: Vec<&str> = rest.split('/').collect();
        return match parts.as_slice() {
            [g] => discovery::api_group(g).map(|d| json_value(200, &d)).ok_or_else(ApiError::path_not_found),
            [g, v] => discovery::resource_list(g, v)
                .map(|d| json_value(200, &d))
                .ok_or_else(ApiError::path_not_found),
            _ => Err(ApiError::path_not_found()),
        };
    }
    Err(ApiError::path_not_found())
}

// ---------------------------------------------------------------------------------------------
// bodies

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                Err(ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("Request entity too large: limit is {MAX_BODY}"),
                ))
            } else {
                Err(ApiError::bad_request(format!("error reading the request body: {e}")))
            }
        }
    }
}

fn content_type(headers: &http::HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn decode_json_or_yaml(ct: &str, body: &[u8]) -> Result<Value, ApiError> {
    match ct {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))),
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            let text =
                std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
        crate::proto::CONTENT_TYPE => crate::proto::decode_object(body)
            .map_err(|e| ApiError::unsupported_media_type(&format!("{ct}: {}", e.0))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

// ---------------------------------------------------------------------------------------------
// resources

fn returns_deleted_object(id: ResId) -> bool {
    id == ids::pods() || id == ids::services() || id == ids::namespaces()
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    state: &Arc<State>,
    req: Request<Incoming>,
    info: &RequestInfo,
    query: &Query,
    user: &UserInfo,
    rbac: &RbacIndex,
) -> Result<Response<SimBody>, ApiError> {
    let (id, def) = resources::find_gv(&info.api_group, &info.api_version, &info.resource)
        .ok_or_else(ApiError::path_not_found)?;
    let path_name = info.parts.get(1).cloned();
    let ns = if id == ids::namespaces() { String::new() } else { info.namespace.clone() };
    if !def.namespaced && !ns.is_empty() {
        return Err(ApiError::path_not_found());
    }
    if def.namespaced && ns.is_empty() && path_name.is_some() {
        return Err(ApiError::path_not_found());
    }
    if !info.subresource.is_empty() && def.subresource(&info.subresource).is_none() {
        return Err(ApiError::path_not_found());
    }
    if info.verb == "proxy" || info.subresource == "proxy" {
        return Err(ApiError::path_not_found());
    }
    let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let dry_run = !query.all("dryRun").is_empty();

    if !def.stored {
        if info.verb != "create" || path_name.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        let ct = content_type(req.headers());
        let body = read_body(req.into_body()).await?;
        return reviews(state, def, &ns, &ct, &body, user, rbac);
    }

    let name = path_name.clone().unwrap_or_default();
    let sub = info.subresource.as_str();
    let cluster = &state.cluster;
    match (sub, info.verb.as_str()) {
        ("", "list") => {
            let output = negotiate_output(accept.as_deref(), query)?;
            list(state, id, def, (!ns.is_empty()).then_some(ns.as_str()), query, output)
        }
        ("", "watch") => {
            let output = negotiate_output(accept.as_deref(), query)?;
            let name = path_name.or_else(|| {
                FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
                    .ok()
                    .and_then(|f| f.requires_exact_match("metadata.name"))
            });
            watch(state, id, def, (!ns.is_empty()).then_some(ns.as_str()), name, query, output)
        }
        ("" | "status", "get") => {
            let output = negotiate_output(accept.as_deref(), query)?;
            let obj = cluster
                .store
                .get(&Key::new(id, &ns, &name))
                .ok_or_else(|| ApiError::not_found(def, &name))?;
            Ok(object_response(200, def, &obj, output))
        }
        ("", "create") => {
            if path_name.is_some() {
                return Err(ApiError::method_not_allowed());
            }
            let ct = content_type(req.headers());
            let body = read_body(req.into_body()).await?;
            let obj = decode_json_or_yaml(&ct, &body)?;
            let output = negotiate_output(accept.as_deref(), query)?;
            let created = cluster.create(id, &ns, obj, dry_run)?;
            Ok(object_response(201, def, &created, output))
        }
        ("" | "status", "update") => {
            let ct = content_type(req.headers());
            let body = read_body(req.into_body()).await?;
            let obj = decode_json_or_yaml(&ct, &body)?;
            let output = negotiate_output(accept.as_deref(), query)?;
            let (stored, created) = cluster.update(id, &ns, &name, obj, sub, dry_run)?;
            Ok(object_response(if created { 201 } else { 200 }, def, &stored, output))
        }
        ("" | "status", "patch") => {
            let ct = content_type(req.headers());
            let kind = match ct.as_str() {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" => PatchKind::Apply,
                other => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                        ),
                    ));
                }
            };
            if kind == PatchKind::Apply && query.get("fieldManager").unwrap_or_default().is_empty() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let body = read_body(req.into_body()).await?;
            let patch = if kind == PatchKind::Apply {
                decode_json_or_yaml("application/yaml", &body)?
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
            };
            let output = negotiate_output(accept.as_deref(), query)?;
            let (stored, created) = cluster.patch(id, &ns, &name, kind, &patch, sub, dry_run)?;
            Ok(object_response(if created { 201 } else { 200 }, def, &stored, output))
        }
        ("", "delete") => {
            let ct = content_type(req.headers());
            let body = read_body(req.into_body()).await?;
            let opts = delete_options(&ct, &body, query)?;
            let deleted = cluster.delete(id, &ns, &name, &opts)?;
            if !deleted.gone || returns_deleted_object(id) {
                Ok(json_bytes(200, deleted.obj.json.clone()))
            } else {
                let mut details = Map::new();
                details.insert("name".into(), json!(name));
                if !def.group.is_empty() {
                    details.insert("group".into(), json!(def.group));
                }
                details.insert("kind".into(), json!(def.plural));
                details.insert("uid".into(), json!(meta_str(&deleted.obj.value, "uid")));
                Ok(json_value(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
                ))
            }
        }
        ("", "deletecollection") => {
            if !def.has_verb("deletecollection") {
                return Err(ApiError::method_not_allowed());
            }
            let ct = content_type(req.headers());
            let body = read_body(req.into_body()).await?;
            let opts = delete_options(&ct, &body, query)?;
            let (label, field) = selectors(def, query)?;
            let snap = cluster.store.snapshot();
            let targets: Vec<String> = snap
                .range(id, (!ns.is_empty()).then_some(ns.as_str()), None)
                .filter(|(_, o)| label.matches_object(&o.value) && field.matches_object(&o.value))
                .map(|(k, _)| k.name.clone())
                .collect();
            let mut items = Vec::new();
            for n in targets {
                if let Ok(d) = cluster.delete(id, &ns, &n, &opts) {
                    items.push(d.obj.value.clone());
                }
            }
            Ok(json_value(
                200,
                &json!({"kind": def.list_kind(), "apiVersion": def.api_version(),
                        "metadata": {"resourceVersion": cluster.store.rv().to_string()}, "items": items}),
            ))
        }
        ("log", "get") => logs(state, def, &ns, &name, query),
        ("exec" | "attach" | "portforward", "get" | "create") => {
            if req.method() != Method::GET && req.method() != Method::POST {
                return Err(ApiError::method_not_allowed());
            }
            let pod = cluster
                .store
                .get(&Key::new(id, &ns, &name))
                .ok_or_else(|| ApiError::not_found(def, &name))?;
            let (target, what) = stream_request(sub, &ns, &name, &pod.value, query)?;
            Ok(state.streams.handle(req, target, what))
        }
        ("scale", "get" | "update" | "patch") => {
            scale(state, req, id, def, &ns, &name, &info.verb, query).await
        }
        ("token", "create") => {
            let sa = cluster
                .store
                .get(&Key::new(id, &ns, &name))
                .ok_or_else(|| ApiError::not_found(def, &name))?;
            let ct = content_type(req.headers());
            let body = read_body(req.into_body()).await?;
            let request = if body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                decode_json_or_yaml(&ct, &body)?
            };
            let seconds =
                request.pointer("/spec/expirationSeconds").and_then(Value::as_i64).unwrap_or(3600).max(600);
            let token =
                format!("kube-sim.{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            let mut user = UserInfo::authenticated(
                &format!("system:serviceaccount:{ns}:{name}"),
                &["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{ns}")],
            );
            user.uid = meta_str(&sa.value, "uid").to_string();
            state.tokens.insert(token.clone(), user);
            let now = Utc::now();
            let audiences = request
                .pointer("/spec/audiences")
                .cloned()
                .unwrap_or_else(|| json!(["https://kubernetes.default.svc.cluster.local"]));
            Ok(json_value(
                201,
                &json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                        "metadata": {"name": name, "namespace": ns, "creationTimestamp": objects::timestamp(now)},
                        "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": request.pointer("/spec/boundObjectRef").cloned()},
                        "status": {"token": token, "expirationTimestamp": objects::timestamp(now + chrono::Duration::seconds(seconds))}}),
            ))
        }
        ("eviction", "create") => {
            let ct = content_type(req.headers());
            let body = read_body(req.into_body()).await?;
            let eviction = decode_json_or_yaml(&ct, &body)?;
            let opts = match eviction.get("deleteOptions") {
                Some(o) => delete_options("application/json", o.to_string().as_bytes(), &Query::default())?,
                None => DeleteOptions::default(),
            };
            cluster.delete(id, &ns, &name, &opts)?;
            Ok(json_value(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn delete_options(ct: &str, body: &[u8], query: &Query) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    let trimmed: &[u8] = {
        let s = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
        &body[s..]
    };
    if !trimmed.is_empty() {
        let v = decode_json_or_yaml(ct, trimmed)?;
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.precondition_uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
        opts.precondition_rv =
            v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
        opts.dry_run = v.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    }
    if let Some(g) = query.get("gracePeriodSeconds") {
        opts.grace_period_seconds =
            Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}")))?);
    }
    if !query.all("dryRun").is_empty() {
        opts.dry_run = true;
    }
    Ok(opts)
}

fn selectors(def: &ResourceDef, query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let label = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let field = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    field.check_fields(def.field_labels).map_err(ApiError::bad_request)?;
    Ok((label, field))
}

// ---------------------------------------------------------------------------------------------
// list

fn encode_continue(rv: u64, key: &Key) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}\u{0}", key.ns, key.name)});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

fn decode_continue(token: &str, id: ResId) -> Result<(u64, Key), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?.trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((rv, Key::new(id, ns, name)))
}

fn list_meta(rv: u64, cont: Option<&str>, remaining: Option<usize>) -> Value {
    let mut m = Map::new();
    m.insert("resourceVersion".into(), json!(rv.to_string()));
    if let Some(c) = cont {
        m.insert("continue".into(), json!(c));
    }
    if let Some(r) = remaining {
        m.insert("remainingItemCount".into(), json!(r));
    }
    Value::Object(m)
}

fn list(
    state: &State,
    id: ResId,
    def: &'static ResourceDef,
    ns: Option<&str>,
    query: &Query,
    output: Output,
) -> Result<Response<SimBody>, ApiError> {
    if let Some(large) = state.knobs.large_list()
        && large.resource == def.plural
        && (large.namespace.is_none() || large.namespace.as_deref() == ns)
    {
        return Ok(large_list(def, ns.unwrap_or("large"), large.bytes, state.cluster.store.rv(), output));
    }
    let (label, field) = selectors(def, query)?;
    let store = &state.cluster.store;
    let cont = query.get("continue").filter(|c| !c.is_empty());
    let (snap, after): (Snapshot, Option<Key>) = match cont {
        Some(token) => {
            if query.get("resourceVersion").is_some_and(|rv| !rv.is_empty() && rv != "0") {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (rv, key) = decode_continue(token, id)?;
            let snap = store.snapshot_at(rv).ok_or_else(|| {
                ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            })?;
            (snap, Some(key))
        }
        None => (store.snapshot(), None),
    };
    let limit = match query.get("limit") {
        Some(l) if !l.is_empty() => {
            l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?
        }
        _ => 0,
    };
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut matching = snap
        .range(id, ns, after.as_ref())
        .filter(|(_, o)| label.matches_object(&o.value) && field.matches_object(&o.value));
    let mut items: Vec<(&Key, &Arc<Stored>)> = Vec::new();
    let mut next_token = None;
    let mut remaining = None;
    while let Some(item) = matching.next() {
        if limit > 0 && items.len() == limit {
            let last = items.last().map(|(k, _)| (*k).clone());
            if let Some(last) = last {
                next_token = Some(encode_continue(snap.rv, &last));
            }
            if label.is_everything() && field.is_everything() {
                remaining = Some(1 + matching.count());
            }
            let _ = item;
            break;
        }
        items.push(item);
    }
    if next_token.is_some() {
        store.retain_snapshot(&snap);
    }
    let meta = list_meta(snap.rv, next_token.as_deref(), remaining);
    match output {
        Output::Json => {
            let size: usize = items.iter().map(|(_, o)| o.json.len() + 1).sum();
            let mut buf = Vec::with_capacity(size + 160);
            buf.extend_from_slice(b"{\"kind\":\"");
            buf.extend_from_slice(def.list_kind().as_bytes());
            buf.extend_from_slice(b"\",\"apiVersion\":\"");
            buf.extend_from_slice(def.api_version().as_bytes());
            buf.extend_from_slice(b"\",\"metadata\":");
            buf.extend_from_slice(meta.to_string().as_bytes());
            buf.extend_from_slice(b",\"items\":[");
            for (i, (_, o)) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(&o.json);
            }
            buf.extend_from_slice(b"]}");
            Ok(json_bytes(200, buf))
        }
        Output::Table(v, include) => {
            let now = Utc::now();
            let rows: Vec<Value> =
                items.iter().map(|(_, o)| table::row(def, &o.value, include, now)).collect();
            Ok(json_value(200, &table::table(def, rows, meta, v, true)))
        }
        Output::PartialMetadata => {
            let list_items: Vec<Value> = items.iter().map(|(_, o)| partial(&o.value)).collect();
            Ok(json_value(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": list_items}),
            ))
        }
    }
}

/// A generated list of about `bytes` bytes, streamed in chunks.
fn large_list(def: &'static ResourceDef, ns: &str, bytes: u64, rv: u64, output: Output) -> Response<SimBody> {
    let created = objects::timestamp(Utc::now());
    let ns = ns.to_string();
    let pad = "x".repeat(600);
    let header = match output {
        Output::Table(v, _) => format!(
            "{{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/{v}\",\"metadata\":{{\"resourceVersion\":\"{rv}\"}},\"columnDefinitions\":{},\"rows\":[",
            Value::Array(table::column_definitions(def))
        ),
        _ => format!(
            "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{rv}\"}},\"items\":[",
            def.list_kind(),
            def.api_version()
        ),
    };
    let footer = "]}";
    let item = move |i: u64| -> String {
        let obj = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"large-{i:08}\",\"namespace\":\"{ns}\",\"uid\":\"00000000-0000-4000-8000-{i:012}\",\"resourceVersion\":\"{rv}\",\"creationTimestamp\":\"{created}\",\"labels\":{{\"app\":\"large\"}},\"annotations\":{{\"padding\":\"{pad}\"}}}},\"spec\":{{\"containers\":[{{\"name\":\"app\",\"image\":\"nginx:1.25\"}}],\"nodeName\":\"kube-sim-node\"}},\"status\":{{\"phase\":\"Running\",\"podIP\":\"10.244.9.9\",\"containerStatuses\":[{{\"name\":\"app\",\"ready\":true,\"restartCount\":0,\"state\":{{\"running\":{{\"startedAt\":\"{created}\"}}}}}}]}}}}"
        );
        match output {
            Output::Table(_, _) => format!(
                "{{\"cells\":[\"large-{i:08}\",\"1/1\",\"Running\",\"0\",\"0s\",\"10.244.9.9\",\"kube-sim-node\",\"<none>\",\"<none>\"],\"object\":{obj}}}"
            ),
            _ => obj,
        }
    };
    const CHUNK: usize = 64 * 1024;
    let target = bytes as usize;
    let state = (0u64, header.len(), false, Some(header));
    let stream = futures::stream::unfold(state, move |(mut i, mut sent, done, mut head)| {
        let item = item.clone();
        async move {
            if done {
                return None;
            }
            let mut buf = BytesMut::with_capacity(CHUNK + 2048);
            if let Some(h) = head.take() {
                buf.extend_from_slice(h.as_bytes());
            }
            let mut finished = false;
            while buf.len() < CHUNK {
                if sent + buf.len() + footer.len() >= target && i > 0 {
                    buf.extend_from_slice(footer.as_bytes());
                    finished = true;
                    break;
                }
                if i > 0 {
                    buf.extend_from_slice(b",");
                }
                buf.extend_from_slice(item(i).as_bytes());
                i += 1;
            }
            sent += buf.len();
            Some((Ok::<_, Infallible>(Frame::data(buf.freeze())), (i, sent, finished, None)))
        }
    });
    respond(200, "application/json", BodyExt::boxed(StreamBody::new(stream)))
}

// ---------------------------------------------------------------------------------------------
// watch

struct Watch {
    id: ResId,
    ns: Option<String>,
    def: &'static ResourceDef,
    name: Option<String>,
    label: LabelSelector,
    field: FieldSelector,
    output: Output,
    columns_sent: bool,
    backlog: VecDeque<Arc<Event>>,
    rx: broadcast::Receiver<Arc<Event>>,
    deadline: Option<tokio::time::Instant>,
    bookmarks: bool,
    bookmark_every: Duration,
    next_bookmark: tokio::time::Instant,
    progress_rv: u64,
    /// The store's resourceVersion when the backlog was taken.
    backlog_rv: u64,
    initial_events_end: bool,
    shutdown: CancellationToken,
    knobs: Arc<Knobs>,
    error: Option<Bytes>,
    done: bool,
}

impl Watch {
    fn matches(&self, v: &Value) -> bool {
        self.name.as_ref().is_none_or(|n| meta_str(v, "name") == n)
            && self.label.matches_object(v)
            && self.field.matches_object(v)
    }

    /// The event this watch shows for `ev`, if any.
    fn project(&self, ev: &Event) -> Option<EventType> {
        let cur = self.matches(&ev.obj.value);
        match ev.etype {
            EventType::Added => cur.then_some(EventType::Added),
            EventType::Deleted => {
                let before = ev.prev.as_ref().map(|p| self.matches(&p.value)).unwrap_or(cur);
                before.then_some(EventType::Deleted)
            }
            EventType::Modified => {
                let before = ev.prev.as_ref().map(|p| self.matches(&p.value)).unwrap_or(cur);
                match (before, cur) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }

    fn encode(&mut self, etype: EventType, ev: &Event) -> Bytes {
        match self.output {
            Output::Json if etype == ev.etype => ev.json_line(),
            Output::Json => line(etype.as_str(), &ev.obj.json),
            Output::Table(v, include) => {
                let row = table::row(self.def, &ev.obj.value, include, Utc::now());
                let t = table::table(
                    self.def,
                    vec![row],
                    json!({"resourceVersion": ev.rv.to_string()}),
                    v,
                    !self.columns_sent,
                );
                self.columns_sent = true;
                line(etype.as_str(), &serde_json::to_vec(&t).unwrap_or_default())
            }
            Output::PartialMetadata => {
                line(etype.as_str(), &serde_json::to_vec(&partial(&ev.obj.value)).unwrap_or_default())
            }
        }
    }

    fn bookmark(&self, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": self.progress_rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
    }

    async fn emit(&self, b: Bytes) -> Bytes {
        let delay = self.knobs.watch_event_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        b
    }

    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if let Some(e) = self.error.take() {
            self.done = true;
            return Some(e);
        }
        while let Some(ev) = self.backlog.pop_front() {
            self.progress_rv = self.progress_rv.max(ev.rv);
            if let Some(t) = self.project(&ev) {
                let b = self.encode(t, &ev);
                return Some(self.emit(b).await);
            }
        }
        self.progress_rv = self.progress_rv.max(self.backlog_rv);
        if self.initial_events_end {
            self.initial_events_end = false;
            return Some(self.bookmark(true));
        }
        loop {
            let deadline = self.deadline;
            let bookmark_at = self.next_bookmark;
            let bookmarks = self.bookmarks;
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(ev) => {
                        self.progress_rv = self.progress_rv.max(ev.rv);
                        if ev.key.res != self.id || self.ns.as_ref().is_some_and(|n| *n != ev.key.ns) {
                            continue;
                        }
                        if let Some(t) = self.project(&ev) {
                            let b = self.encode(t, &ev);
                            return Some(self.emit(b).await);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => {
                        self.done = true;
                        return None;
                    }
                },
                _ = sleep_until_opt(deadline) => {
                    self.done = true;
                    return None;
                }
                _ = tokio::time::sleep_until(bookmark_at), if bookmarks => {
                    self.next_bookmark = tokio::time::Instant::now() + self.bookmark_every;
                    return Some(self.bookmark(false));
                }
                _ = self.shutdown.cancelled() => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => futures::future::pending::<()>().await,
    }
}

fn line(etype: &str, object: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(object.len() + 32);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(etype.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    v.extend_from_slice(object);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

fn watch(
    state: &State,
    id: ResId,
    def: &'static ResourceDef,
    ns: Option<&str>,
    name: Option<String>,
    query: &Query,
    output: Output,
) -> Result<Response<SimBody>, ApiError> {
    let (label, field) = selectors(def, query)?;
    let rv = query.get("resourceVersion").unwrap_or_default();
    let send_initial = query.bool("sendInitialEvents");
    let from = match (rv, send_initial) {
        (_, Some(true)) | ("", _) | ("0", _) => None,
        (n, _) => Some(
            n.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {n:?}")))?,
        ),
    };
    let timeout = match query.get("timeoutSeconds") {
        Some(t) if !t.is_empty() => {
            let secs: u64 =
                t.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?;
            Some(tokio::time::Instant::now() + Duration::from_secs(secs))
        }
        _ => None,
    };
    let bookmark_every = state.knobs.bookmark_interval();
    let (backlog, rx, error, backlog_rv) = match state.cluster.store.watch(from, id, ns) {
        Ok(start) => (start.backlog, start.rx, None, start.rv),
        Err(too_old) => {
            let status = ApiError::expired(format!(
                "too old resource version: {} ({})",
                too_old.requested, too_old.oldest
            ));
            let e = line("ERROR", &serde_json::to_vec(&status.to_status()).unwrap_or_default());
            (
                Vec::new(),
                state.cluster.store.watch(None, id, ns).map(|start| start.rx).unwrap_or_else(|_| {
                    let (tx, rx) = broadcast::channel(1);
                    drop(tx);
                    rx
                }),
                Some(e),
                0,
            )
        }
    };
    let w = Watch {
        id,
        ns: ns.map(str::to_string),
        def,
        name,
        label,
        field,
        output,
        columns_sent: false,
        backlog: backlog.into(),
        rx,
        deadline: timeout,
        bookmarks: query.flag("allowWatchBookmarks", false),
        bookmark_every,
        next_bookmark: tokio::time::Instant::now() + bookmark_every,
        progress_rv: from.unwrap_or(0),
        backlog_rv,
        initial_events_end: send_initial == Some(true) && query.flag("allowWatchBookmarks", false),
        shutdown: state.shutdown.clone(),
        knobs: state.knobs.clone(),
        error,
        done: false,
    };
    let stream = futures::stream::unfold(w, |mut w| async move {
        w.next().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), w))
    });
    Ok(respond(200, "application/json", BodyExt::boxed(StreamBody::new(stream))))
}

// ---------------------------------------------------------------------------------------------
// logs

fn logs(
    state: &State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    query: &Query,
) -> Result<Response<SimBody>, ApiError> {
    let key = Key::new(ids::pods(), ns, name);
    let pod = state.cluster.store.get(&key).ok_or_else(|| ApiError::not_found(def, name))?;
    let containers = objects::container_names(&pod.value);
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => match containers.as_slice() {
            [one] => one.clone(),
            [] => return Err(ApiError::bad_request(format!("pod {name} does not have a container"))),
            many => {
                let default = pod
                    .value
                    .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                    .and_then(Value::as_str)
                    .filter(|d| many.iter().any(|c| c == d));
                match default {
                    Some(d) => d.to_string(),
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "a container name must be specified for pod {name}, choose one of: [{}]",
                            many.join(" ")
                        )));
                    }
                }
            }
        },
    };
    if !containers.contains(&container) {
        return Err(ApiError::bad_request(format!("container {container} is not valid for pod {name}")));
    }
    if query.flag("previous", false) {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let int = |k: &str| -> Result<Option<i64>, ApiError> {
        match query.get(k) {
            Some(v) if !v.is_empty() => {
                v.parse().map(Some).map_err(|_| ApiError::bad_request(format!("invalid {k}: {v:?}")))
            }
            _ => Ok(None),
        }
    };
    let now = Utc::now();
    let tail = int("tailLines")?;
    let since_seconds = int("sinceSeconds")?;
    let limit_bytes = int("limitBytes")?;
    let since = match (since_seconds, query.get("sinceTime").filter(|s| !s.is_empty())) {
        (Some(s), _) => Some(now - chrono::Duration::seconds(s)),
        (None, Some(t)) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::bad_request(format!("invalid sinceTime: {t:?}")))?
                .with_timezone(&Utc),
        ),
        _ => None,
    };
    let opts = LogOptions {
        container: container.clone(),
        follow: query.flag("follow", false),
        tail_lines: tail.map(|t| u64::try_from(t).unwrap_or(0)),
        timestamps: query.flag("timestamps", false),
        since,
        limit_bytes: limit_bytes.map(|l| u64::try_from(l).unwrap_or(0)),
    };
    let src = LogSource::for_pod(&pod.value, &container, state.log_interval);
    let range = src.initial_range(&opts, now);
    let mut first = String::new();
    for n in range.clone() {
        first.push_str(&src.line(n, opts.timestamps));
    }
    let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
    let cut = |s: &mut String, budget: &mut u64| {
        let take = usize::try_from(*budget).unwrap_or(usize::MAX).min(s.len());
        s.truncate(take);
        *budget -= take as u64;
    };
    cut(&mut first, &mut budget);
    if !opts.follow {
        return Ok(respond(200, "text/plain", full(first)));
    }
    let next = range.end().saturating_add(1).max(*range.start()).max(src.count_at(now) + 1);
    let uid = meta_str(&pod.value, "uid").to_string();
    let cluster = state.cluster.clone();
    let shutdown = state.shutdown.clone();
    struct Follow {
        src: LogSource,
        next: u64,
        first: Option<String>,
        budget: u64,
        timestamps: bool,
        key: Key,
        uid: String,
        cluster: Arc<Cluster>,
        shutdown: CancellationToken,
    }
    let f = Follow {
        src,
        next,
        first: Some(first),
        budget,
        timestamps: opts.timestamps,
        key,
        uid,
        cluster,
        shutdown,
    };
    let stream = futures::stream::unfold(f, |mut f| async move {
        if let Some(first) = f.first.take()
            && !first.is_empty()
        {
            return Some((Ok::<_, Infallible>(Frame::data(Bytes::from(first))), f));
        }
        if f.budget == 0 {
            return None;
        }
        let at = f.src.time_of(f.next);
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = f.shutdown.cancelled() => return None,
        }
        let alive = f.cluster.store.get(&f.key).is_some_and(|p| meta_str(&p.value, "uid") == f.uid);
        if !alive {
            return None;
        }
        let mut l = f.src.line(f.next, f.timestamps);
        f.next += 1;
        let take = usize::try_from(f.budget).unwrap_or(usize::MAX).min(l.len());
        l.truncate(take);
        f.budget -= take as u64;
        Some((Ok(Frame::data(Bytes::from(l))), f))
    });
    Ok(respond(200, "text/plain", BodyExt::boxed(StreamBody::new(stream))))
}

// ---------------------------------------------------------------------------------------------
// streams

fn stream_request(
    sub: &str,
    ns: &str,
    name: &str,
    pod: &Value,
    query: &Query,
) -> Result<(PodTarget, StreamRequest), ApiError> {
    let container_names = objects::container_names(pod);
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) => {
            if !container_names.iter().any(|n| n == c) {
                return Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}")));
            }
            c.to_string()
        }
        None => container_names
            .first()
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a container")))?,
    };
    let ports = objects::container_ports(pod);
    let target =
        PodTarget { namespace: ns.to_string(), pod: name.to_string(), container, container_names, ports };
    let flag = |k: &str| query.flag(k, false);
    let what = match sub {
        "exec" => {
            let command: Vec<String> = query.all("command").into_iter().map(str::to_string).collect();
            if command.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let (stdin, stdout, stderr) = (flag("stdin"), flag("stdout"), flag("stderr"));
            if !stdin && !stdout && !stderr {
                return Err(ApiError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
            }
            StreamRequest::Exec { command, stdin, stdout, stderr, tty: flag("tty") }
        }
        "attach" => {
            let (stdin, stdout, stderr) = (flag("stdin"), flag("stdout"), flag("stderr"));
            if !stdin && !stdout && !stderr {
                return Err(ApiError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
            }
            StreamRequest::Attach { stdin, stdout, stderr, tty: flag("tty") }
        }
        _ => {
            let mut ports = Vec::new();
            for v in query.all("ports") {
                for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let n: u16 = p
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| ApiError::bad_request(format!("invalid port: {p:?}")))?;
                    ports.push(n);
                }
            }
            StreamRequest::PortForward { ports }
        }
    };
    Ok((target, what))
}

// ---------------------------------------------------------------------------------------------
// scale

fn scale_of(dep: &Stored) -> Value {
    let v = &dep.value;
    let selector = v
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            let mut pairs: Vec<String> =
                m.iter().map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default())).collect();
            pairs.sort();
            pairs.join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta_str(v, "name"), "namespace": meta_str(v, "namespace"), "uid": meta_str(v, "uid"),
                     "resourceVersion": dep.rv.to_string(), "creationTimestamp": v.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null)},
        "spec": {"replicas": v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {"replicas": v.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": selector}
    })
}

#[allow(clippy::too_many_arguments)]
async fn scale(
    state: &State,
    req: Request<Incoming>,
    id: ResId,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    verb: &str,
    query: &Query,
) -> Result<Response<SimBody>, ApiError> {
    let cluster = &state.cluster;
    let key = Key::new(id, ns, name);
    let cur = cluster.store.get(&key).ok_or_else(|| ApiError::not_found(def, name))?;
    if verb == "get" {
        return Ok(json_value(200, &scale_of(&cur)));
    }
    let ct = content_type(req.headers());
    let body = read_body(req.into_body()).await?;
    let current = scale_of(&cur);
    let wanted = if verb == "update" {
        decode_json_or_yaml(&ct, &body)?
    } else {
        let patch: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        match ct.as_str() {
            "application/json-patch+json" => crate::patch::json_patch(&current, &patch)
                .map_err(|e| ApiError::new(422, "Invalid", e.message))?,
            _ => {
                let mut v = current.clone();
                crate::patch::merge_patch(&mut v, &patch);
                v
            }
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::new(422, "Invalid", format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: must be greater than or equal to 0")))?;
    let dry_run = !query.all("dryRun").is_empty();
    let (updated, _) = cluster.patch(
        id,
        ns,
        name,
        PatchKind::Merge,
        &json!({"spec": {"replicas": replicas}}),
        "",
        dry_run,
    )?;
    Ok(json_value(200, &scale_of(&updated)))
}

// ---------------------------------------------------------------------------------------------
// reviews

fn reviews(
    state: &State,
    def: &ResourceDef,
    ns: &str,
    ct: &str,
    body: &[u8],
    user: &UserInfo,
    rbac: &RbacIndex,
) -> Result<Response<SimBody>, ApiError> {
    let obj = decode_json_or_yaml(ct, body)?;
    let api_version = def.api_version();
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let base = |status: Value, spec: Value| -> Value {
        json!({"kind": def.kind, "apiVersion": api_version, "metadata": {"creationTimestamp": null}, "spec": spec, "status": status})
    };
    let access = |subject: &UserInfo, spec: &Value| -> Result<Value, ApiError> {
        let attrs = match (spec.get("resourceAttributes"), spec.get("nonResourceAttributes")) {
            (Some(ra), None) => Attributes {
                resource_request: true,
                verb: ra.get("verb").and_then(Value::as_str).unwrap_or_default(),
                namespace: ra.get("namespace").and_then(Value::as_str).unwrap_or_default(),
                api_group: ra.get("group").and_then(Value::as_str).unwrap_or_default(),
                api_version: ra.get("version").and_then(Value::as_str).unwrap_or_default(),
                resource: ra.get("resource").and_then(Value::as_str).unwrap_or_default(),
                subresource: ra.get("subresource").and_then(Value::as_str).unwrap_or_default(),
                name: ra.get("name").and_then(Value::as_str).unwrap_or_default(),
                path: "",
            },
            (None, Some(na)) => Attributes {
                resource_request: false,
                verb: na.get("verb").and_then(Value::as_str).unwrap_or_default(),
                path: na.get("path").and_then(Value::as_str).unwrap_or_default(),
                ..Attributes::default()
            },
            _ => {
                return Err(ApiError::invalid(
                    def,
                    "",
                    vec![crate::status::FieldError::invalid(
                        "spec.resourceAttributes",
                        "null",
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    )],
                ));
            }
        };
        let d = rbac.authorize(subject, &attrs);
        let mut status = Map::new();
        status.insert("allowed".into(), json!(d.allowed));
        let reason = d.reason();
        if !reason.is_empty() {
            status.insert("reason".into(), json!(reason));
        }
        Ok(Value::Object(status))
    };
    let body = match def.kind {
        "SelfSubjectAccessReview" => base(access(user, &spec)?, spec),
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let strings = |k: &str| -> Vec<String> {
                spec.get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                    .unwrap_or_default()
            };
            let subject = UserInfo {
                name: spec.get("user").and_then(Value::as_str).unwrap_or_default().to_string(),
                uid: spec.get("uid").and_then(Value::as_str).unwrap_or_default().to_string(),
                groups: strings("groups"),
                extra: Default::default(),
            };
            if def.kind == "LocalSubjectAccessReview" {
                let rns =
                    spec.pointer("/resourceAttributes/namespace").and_then(Value::as_str).unwrap_or_default();
                if rns != ns {
                    return Err(ApiError::invalid(
                        def,
                        "",
                        vec![crate::status::FieldError::invalid(
                            "spec.resourceAttributes.namespace",
                            rns,
                            "must match metadata.namespace",
                        )],
                    ));
                }
            }
            let mut out = base(access(&subject, &spec)?, spec.clone());
            if !ns.is_empty() {
                out["metadata"]["namespace"] = json!(ns);
            }
            out
        }
        "SelfSubjectRulesReview" => {
            let namespace = spec.get("namespace").and_then(Value::as_str).unwrap_or_default();
            let (rules, incomplete) = rbac.rules_for(user, namespace);
            let resource_rules: Vec<Value> = rules
                .iter()
                .filter(|r| r.non_resource_urls.is_empty())
                .map(|r| {
                    json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources, "resourceNames": r.resource_names})
                })
                .collect();
            let non_resource_rules: Vec<Value> = rules
                .iter()
                .filter(|r| !r.non_resource_urls.is_empty())
                .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
                .collect();
            base(
                json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": incomplete}),
                spec,
            )
        }
        "SelfSubjectReview" => {
            json!({"kind": def.kind, "apiVersion": api_version, "metadata": {"creationTimestamp": null},
                   "status": {"userInfo": user.to_json()}})
        }
        "TokenReview" => {
            let token = spec.get("token").and_then(Value::as_str).unwrap_or_default();
            let status = match state.tokens.lookup(token) {
                Some(u) => {
                    json!({"authenticated": true, "user": u.to_json(), "audiences": ["https://kubernetes.default.svc.cluster.local"]})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            base(status, spec)
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_value(201, &body))
}
