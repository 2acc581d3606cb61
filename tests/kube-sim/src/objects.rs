//! What the API server does to an object on create and update: type checks, name and field
//! validation (422 with causes), server-set metadata, per-kind defaults, and the status the
//! controllers and kubelet would report (pods run, deployments are available).

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;
use crate::status::{ApiError, FieldError};

/// `2026-01-02T03:04:05Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or_default()
}

/// `slot` as an object map, replacing it by `{}` when it is anything else.
fn ensure_obj(slot: &mut Value) -> &mut Map<String, Value> {
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// `parent[key]` as an object map, created when absent.
fn child<'a>(parent: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    ensure_obj(ensure_obj(parent).entry(key.to_string()).or_insert(Value::Null))
}

/// Allocates pod IPs, service cluster IPs, node ports and container ids.
#[derive(Debug, Default)]
pub struct Allocator {
    pod_ip: AtomicU32,
    service_ip: AtomicU32,
    node_port: AtomicU32,
}

impl Allocator {
    fn pod_ip(&self) -> String {
        let n = self.pod_ip.fetch_add(1, Ordering::Relaxed) + 2;
        format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 1)
    }
    fn service_ip(&self) -> String {
        // Fixed addresses (10.96.0.1, 10.96.0.10) stay below 10.96.0.100.
        let n = self.service_ip.fetch_add(1, Ordering::Relaxed) + 100;
        format!("10.96.{}.{}", (n / 250) % 250, n % 250)
    }
    fn node_port(&self) -> u32 {
        30000 + self.node_port.fetch_add(1, Ordering::Relaxed) % 2768
    }
}

/// What the server needs to know to fill server-side fields.
pub struct Ctx<'a> {
    pub now: DateTime<Utc>,
    pub alloc: &'a Allocator,
    pub node_name: &'a str,
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn validate_name(def: &ResourceDef, name: &str) -> Option<FieldError> {
    let ok = match def.kind {
        "Namespace" => is_dns_label(name),
        "Service" => is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('%')
        }
        _ => is_dns_subdomain(name),
    };
    if ok {
        return None;
    }
    let msg = match def.kind {
        "Namespace" => LABEL_MSG,
        "Service" => DNS1035_MSG,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => "may not contain '/' or '%'",
        _ => SUBDOMAIN_MSG,
    };
    Some(FieldError::invalid("metadata.name", name, msg))
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4();
    bytes.as_bytes().iter().take(5).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Checks the body's apiVersion/kind against the endpoint, filling them when absent.
fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    };
    let want_av = def.api_version();
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("apiVersion".into(), Value::String(want_av));
        }
        Some(av) if av == want_av => {}
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("kind".into(), Value::String(def.kind.to_string()));
        }
        Some(k) if k == def.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
    }
    if m.get("metadata").is_some_and(|v| !v.is_object() && !v.is_null()) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(())
}

/// Validates and completes an object for creation in namespace `ns` ("" for cluster scope).
pub fn prepare_create(def: &ResourceDef, ns: &str, mut obj: Value, ctx: &Ctx<'_>) -> Result<Value, ApiError> {
    check_type(def, &mut obj)?;
    let meta = child(&mut obj, "metadata");
    let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    if def.namespaced {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta.insert("namespace".into(), Value::String(ns.to_string()));
    } else {
        meta.remove("namespace");
    }
    let mut name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if name.is_empty() {
        let generate = meta.get("generateName").and_then(Value::as_str).unwrap_or_default().to_string();
        if generate.is_empty() {
            return Err(ApiError::invalid(
                def,
                "",
                vec![FieldError::required("metadata.name", "name or generateName is required")],
            ));
        }
        name = format!("{generate}{}", random_suffix());
        meta.insert("name".into(), Value::String(name.clone()));
    }
    if let Some(e) = validate_name(def, &name) {
        return Err(ApiError::invalid(def, &name, vec![e]));
    }
    for k in
        ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"]
    {
        meta.remove(k);
    }
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(timestamp(ctx.now)));
    if def.kind == "Deployment" {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    complete(def, &name, &mut obj, None, ctx)?;
    Ok(obj)
}

/// Validates an update of `old` to `new` and keeps what clients cannot change.
pub fn prepare_update(
    def: &ResourceDef,
    old: &Value,
    mut new: Value,
    subresource: &str,
    ctx: &Ctx<'_>,
) -> Result<Value, ApiError> {
    check_type(def, &mut new)?;
    let name = meta_str(old, "name").to_string();
    let new_name = meta_str(&new, "name").to_string();
    if !new_name.is_empty() && new_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        )));
    }
    let ns = meta_str(old, "namespace").to_string();
    let new_ns = meta_str(&new, "namespace").to_string();
    if def.namespaced && !new_ns.is_empty() && new_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    {
        let meta = child(&mut new, "metadata");
        meta.insert("name".into(), Value::String(name.clone()));
        if def.namespaced {
            meta.insert("namespace".into(), Value::String(ns));
        }
        for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"]
        {
            match old_meta.get(k) {
                Some(v) => {
                    meta.insert(k.into(), v.clone());
                }
                None => {
                    meta.remove(k);
                }
            }
        }
        meta.remove("managedFields");
    }
    let has_status_subresource = def.subresource("status").is_some();
    if subresource == "status" {
        // Only the status changes through /status.
        let status = new.get("status").cloned();
        let mut kept = old.clone();
        if let Some(m) = kept.as_object_mut() {
            match status {
                Some(s) => m.insert("status".into(), s),
                None => m.remove("status"),
            };
            if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut)
                && let Some(new_meta) = new.get("metadata").and_then(Value::as_object)
            {
                for k in ["labels", "annotations"] {
                    if let Some(v) = new_meta.get(k) {
                        meta.insert(k.into(), v.clone());
                    }
                }
            }
        }
        return Ok(kept);
    }
    if has_status_subresource && let Some(m) = new.as_object_mut() {
        match old.get("status") {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
    }
    if def.kind == "Deployment" {
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
        let changed = old.get("spec") != new.get("spec");
        child(&mut new, "metadata")
            .insert("generation".into(), json!(if changed { generation + 1 } else { generation }));
    }
    complete(def, &name, &mut new, Some(old), ctx)?;
    Ok(new)
}

fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if !m.contains_key(key) || m.get(key).is_some_and(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// Kind-specific defaults, validation and status.
fn complete(
    def: &ResourceDef,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
    ctx: &Ctx<'_>,
) -> Result<(), ApiError> {
    match def.kind {
        "Pod" => {
            let spec = obj.get_mut("spec").ok_or_else(|| {
                ApiError::invalid(def, name, vec![FieldError::required("spec.containers", "")])
            })?;
            let errs = default_pod_spec(spec, "spec", true, ctx);
            if !errs.is_empty() {
                return Err(ApiError::invalid(def, name, errs));
            }
            if old.is_none() {
                let status = pod_status(obj, ctx);
                if let Some(m) = obj.as_object_mut() {
                    m.insert("status".into(), status);
                }
            }
        }
        "Deployment" => {
            let mut errs = Vec::new();
            let spec = child(obj, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            let selector = spec.get("selector").cloned();
            match spec.get_mut("template") {
                Some(template) => {
                    if let Some(tspec) = template.get_mut("spec") {
                        errs.extend(default_pod_spec(tspec, "spec.template.spec", false, ctx));
                    } else {
                        errs.push(FieldError::required("spec.template.spec.containers", ""));
                    }
                    let labels = crate::selectors::labels_of(template);
                    match crate::selectors::LabelSelector::from_object(selector.as_ref()) {
                        Ok(sel) if selector.is_some() => {
                            if !sel.matches(&labels) {
                                errs.push(FieldError::invalid(
                                    "spec.template.metadata.labels",
                                    format!("{labels:?}"),
                                    "`selector` does not match template `labels`",
                                ));
                            }
                        }
                        _ => errs.push(FieldError::required("spec.selector", "")),
                    }
                }
                None => errs.push(FieldError::required("spec.template", "")),
            }
            if !errs.is_empty() {
                return Err(ApiError::invalid(def, name, errs));
            }
            let replicas = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
            let created = obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null);
            let now = Value::String(timestamp(ctx.now));
            let revision = old
                .and_then(|o| o.pointer("/metadata/annotations/deployment.kubernetes.io~1revision"))
                .and_then(Value::as_str)
                .and_then(|r| r.parse::<i64>().ok())
                .map(|r| {
                    if old.and_then(|o| o.pointer("/spec/template")) != obj.pointer("/spec/template") {
                        r + 1
                    } else {
                        r
                    }
                })
                .unwrap_or(1);
            let annotations = ensure_obj(child(obj, "metadata").entry("annotations").or_insert(Value::Null));
            annotations
                .insert("deployment.kubernetes.io/revision".into(), Value::String(revision.to_string()));
            let status = json!({
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "lastUpdateTime": now, "lastTransitionTime": created,
                     "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                    {"type": "Progressing", "status": "True", "lastUpdateTime": now, "lastTransitionTime": created,
                     "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{name}\" has successfully progressed.")}
                ]
            });
            if replicas == 0 {
                if let Some(m) = obj.as_object_mut() {
                    m.insert("status".into(), json!({"observedGeneration": generation}));
                }
            } else if let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), status);
            }
        }
        "Service" => {
            let prev_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
            let spec = child(obj, "spec");
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            let svc_type = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
            if svc_type != "ExternalName" {
                let ip = match (spec.get("clusterIP").and_then(Value::as_str), prev_ip) {
                    (Some(ip), _) if !ip.is_empty() => Value::String(ip.to_string()),
                    (_, Some(prev)) => prev,
                    _ => Value::String(ctx.alloc.service_ip()),
                };
                spec.insert("clusterIP".into(), ip.clone());
                spec.insert("clusterIPs".into(), json!([ip]));
                set_default(spec, "ipFamilies", json!(["IPv4"]));
                set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            let mut errs = Vec::new();
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for (i, p) in ports.iter_mut().enumerate() {
                    let Some(pm) = p.as_object_mut() else { continue };
                    let Some(port) = pm.get("port").cloned() else {
                        errs.push(FieldError::required(format!("spec.ports[{i}].port"), ""));
                        continue;
                    };
                    set_default(pm, "protocol", json!("TCP"));
                    set_default(pm, "targetPort", port);
                    if (svc_type == "NodePort" || svc_type == "LoadBalancer") && !pm.contains_key("nodePort")
                    {
                        pm.insert("nodePort".into(), json!(ctx.alloc.node_port()));
                    }
                }
            } else if svc_type != "ExternalName"
                && spec.get("clusterIP").and_then(Value::as_str) != Some("None")
            {
                errs.push(FieldError::required("spec.ports", ""));
            }
            if !errs.is_empty() {
                return Err(ApiError::invalid(def, name, errs));
            }
            if old.is_none()
                && let Some(m) = obj.as_object_mut()
            {
                m.insert("status".into(), json!({"loadBalancer": {}}));
            }
        }
        "Namespace" => {
            let labels = ensure_obj(child(obj, "metadata").entry("labels").or_insert(Value::Null));
            labels.insert("kubernetes.io/metadata.name".into(), Value::String(name.to_string()));
            let spec = child(obj, "spec");
            set_default(spec, "finalizers", json!(["kubernetes"]));
            if old.is_none()
                && let Some(m) = obj.as_object_mut()
            {
                m.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        "Secret" => {
            let m = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("secret must be an object"))?;
            set_default(m, "type", json!("Opaque"));
            if let Some(Value::Object(sd)) = m.remove("stringData") {
                let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(d) = data {
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or_default();
                        d.insert(k, Value::String(base64::engine::general_purpose::STANDARD.encode(s)));
                    }
                }
            }
            if let Some(Value::Object(d)) = m.get("data") {
                for (k, v) in d {
                    let ok = v
                        .as_str()
                        .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                    if !ok {
                        return Err(ApiError::bad_request(format!(
                            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k:?}]"
                        )));
                    }
                }
            }
        }
        "Node" if old.is_none() && obj.get("status").is_none() => {
            let status = node_status(name, ctx);
            if let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), status);
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let mut errs = Vec::new();
            let rr = obj.get("roleRef");
            for f in ["kind", "name"] {
                if rr.and_then(|r| r.get(f)).and_then(Value::as_str).unwrap_or_default().is_empty() {
                    errs.push(FieldError::required(format!("roleRef.{f}"), ""));
                }
            }
            if def.kind == "ClusterRoleBinding"
                && rr.and_then(|r| r.get("kind")).and_then(Value::as_str).is_some_and(|k| k != "ClusterRole")
            {
                errs.push(FieldError {
                    field: "roleRef.kind".into(),
                    kind: crate::status::FieldErrorKind::NotSupported,
                    value: rr.and_then(|r| r.get("kind")).and_then(Value::as_str).map(str::to_string),
                    detail: "supported values: \"ClusterRole\"".into(),
                });
            }
            if let (Some(old), Some(new_rr)) = (old, rr)
                && old.get("roleRef") != Some(new_rr)
            {
                errs.push(FieldError::invalid("roleRef", new_rr.to_string(), "cannot change roleRef"));
            }
            if !errs.is_empty() {
                return Err(ApiError::invalid(def, name, errs));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Defaults a pod spec in place and returns its validation errors.
fn default_pod_spec(spec: &mut Value, path: &str, with_node: bool, ctx: &Ctx<'_>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(s) = spec.as_object_mut() else {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
        return errs;
    };
    set_default(s, "restartPolicy", json!("Always"));
    set_default(s, "terminationGracePeriodSeconds", json!(30));
    set_default(s, "dnsPolicy", json!("ClusterFirst"));
    set_default(s, "securityContext", json!({}));
    set_default(s, "schedulerName", json!("default-scheduler"));
    if with_node {
        set_default(s, "serviceAccountName", json!("default"));
        let sa = s.get("serviceAccountName").cloned().unwrap_or(json!("default"));
        set_default(s, "serviceAccount", sa);
        set_default(s, "nodeName", json!(ctx.node_name));
        set_default(s, "enableServiceLinks", json!(true));
        set_default(s, "preemptionPolicy", json!("PreemptLowerPriority"));
        set_default(s, "priority", json!(0));
        set_default(
            s,
            "tolerations",
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]),
        );
    }
    let mut seen = Vec::new();
    match s.get_mut("containers") {
        Some(Value::Array(containers)) if !containers.is_empty() => {
            for (i, c) in containers.iter_mut().enumerate() {
                let cpath = format!("{path}.containers[{i}]");
                let Some(cm) = c.as_object_mut() else {
                    errs.push(FieldError::required(format!("{cpath}.name"), ""));
                    continue;
                };
                let cname = cm.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                if cname.is_empty() {
                    errs.push(FieldError::required(format!("{cpath}.name"), ""));
                } else if !is_dns_label(&cname) {
                    errs.push(FieldError::invalid(format!("{cpath}.name"), cname.clone(), LABEL_MSG));
                } else if seen.contains(&cname) {
                    errs.push(FieldError::duplicate(format!("{cpath}.name"), cname.clone()));
                } else {
                    seen.push(cname.clone());
                }
                let image = cm.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
                if image.is_empty() {
                    errs.push(FieldError::required(format!("{cpath}.image"), ""));
                }
                let last = image.rsplit('/').next().unwrap_or_default();
                let latest = !last.contains(':') || last.ends_with(":latest");
                set_default(
                    cm,
                    "imagePullPolicy",
                    json!(if latest && !image.contains('@') { "Always" } else { "IfNotPresent" }),
                );
                set_default(cm, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(cm, "terminationMessagePolicy", json!("File"));
                set_default(cm, "resources", json!({}));
                if let Some(Value::Array(ports)) = cm.get_mut("ports") {
                    for (j, p) in ports.iter_mut().enumerate() {
                        if let Some(pm) = p.as_object_mut() {
                            if !pm.get("containerPort").is_some_and(Value::is_u64) {
                                errs.push(FieldError::required(
                                    format!("{cpath}.ports[{j}].containerPort"),
                                    "",
                                ));
                            }
                            set_default(pm, "protocol", json!("TCP"));
                        }
                    }
                }
            }
        }
        _ => errs.push(FieldError::required(format!("{path}.containers"), "")),
    }
    errs
}

/// 64 hex digits derived from `seed` (stable image digests).
fn hex64(seed: &str) -> String {
    let mut out = String::with_capacity(64);
    for round in 0u64..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round;
        for b in seed.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

fn container_id() -> String {
    format!("containerd://{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The status a kubelet reports for a pod whose containers all run.
fn pod_status(pod: &Value, ctx: &Ctx<'_>) -> Value {
    let now = Value::String(timestamp(ctx.now));
    let ip = ctx.alloc.pod_ip();
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let full_image = if image.contains('/') { image.to_string() } else { format!("docker.io/library/{image}") };
            json!({
                "name": name,
                "state": {"running": {"startedAt": now}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": full_image,
                "imageID": format!("{}@sha256:{}", full_image.split(':').next().unwrap_or_default(), hex64(image)),
                "containerID": container_id(),
                "started": true
            })
        })
        .collect();
    let cond =
        |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    json!({
        "phase": "Running",
        "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
        "hostIP": "172.18.0.2",
        "hostIPs": [{"ip": "172.18.0.2"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "containerStatuses": statuses,
        "qosClass": "BestEffort"
    })
}

fn node_status(_name: &str, ctx: &Ctx<'_>) -> Value {
    let now = Value::String(timestamp(ctx.now));
    json!({
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now,
             "reason": "KubeletReady", "message": "kubelet is posting ready status"}
        ],
        "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": ctx.node_name}],
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
            "containerRuntimeVersion": "containerd://1.7.24", "kubeletVersion": "v1.32.0",
            "kubeProxyVersion": "v1.32.0", "operatingSystem": "linux", "architecture": "amd64"
        }
    })
}

/// The container names of a pod, in order.
pub fn container_names(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The declared container ports of a pod.
pub fn container_ports(pod: &Value) -> Vec<u16> {
    let mut out = Vec::new();
    for c in pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
        for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) =
                p.get("containerPort").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok())
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;

    fn ctx(alloc: &Allocator) -> Ctx<'_> {
        Ctx { now: Utc::now(), alloc, node_name: "kube-sim-node" }
    }

    fn def(group: &str, plural: &str) -> &'static ResourceDef {
        match resources::find(group, plural) {
            Some((_, d)) => d,
            None => panic!("{plural}"),
        }
    }

    #[test]
    fn pods_get_defaults_and_status() {
        let a = Allocator::default();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}});
        let Ok(p) = prepare_create(def("", "pods"), "default", pod, &ctx(&a)) else { panic!() };
        assert_eq!(p["metadata"]["namespace"], "default");
        assert!(p["metadata"]["uid"].is_string());
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(p["spec"]["nodeName"], "kube-sim-node");
        assert_eq!(container_ports(&p), vec![80]);
    }

    #[test]
    fn invalid_objects() {
        let a = Allocator::default();
        let c = ctx(&a);
        let pods = def("", "pods");
        let e = prepare_create(
            pods,
            "default",
            json!({"metadata": {"name": "x"}, "spec": {"containers": []}}),
            &c,
        );
        let Err(e) = e else { panic!() };
        assert_eq!(e.code, 422);
        assert_eq!(e.message, "Pod \"x\" is invalid: spec.containers: Required value");
        let e = prepare_create(pods, "default", json!({"metadata": {"name": "Bad_Name"}, "spec": {}}), &c);
        assert_eq!(e.map_err(|e| e.code), Err(422));
        let e = prepare_create(pods, "default", json!({"metadata": {"name": "x", "namespace": "other"}}), &c);
        assert_eq!(e.map_err(|e| e.code), Err(400));
        let e =
            prepare_create(pods, "default", json!({"apiVersion": "apps/v1", "metadata": {"name": "x"}}), &c);
        assert_eq!(e.map_err(|e| e.code), Err(400));
        let e = prepare_create(pods, "default", json!({"metadata": {}}), &c);
        let Err(e) = e else { panic!() };
        assert!(e.message.contains("name or generateName is required"), "{}", e.message);
        let Ok(g) = prepare_create(
            def("", "configmaps"),
            "default",
            json!({"metadata": {"generateName": "cm-"}}),
            &c,
        ) else {
            panic!()
        };
        assert!(meta_str(&g, "name").starts_with("cm-"));
        assert_eq!(meta_str(&g, "name").len(), 8);
    }

    #[test]
    fn updates_keep_server_fields() {
        let a = Allocator::default();
        let c = ctx(&a);
        let cms = def("", "configmaps");
        let Ok(old) =
            prepare_create(cms, "default", json!({"metadata": {"name": "cm"}, "data": {"a": "1"}}), &c)
        else {
            panic!()
        };
        let Ok(new) = prepare_update(
            cms,
            &old,
            json!({"metadata": {"name": "cm", "uid": "forged"}, "data": {"a": "2"}}),
            "",
            &c,
        ) else {
            panic!()
        };
        assert_eq!(new["metadata"]["uid"], old["metadata"]["uid"]);
        assert_eq!(new["data"]["a"], "2");
        let renamed = prepare_update(cms, &old, json!({"metadata": {"name": "other"}}), "", &c);
        assert_eq!(renamed.map_err(|e| e.code), Err(400));
    }

    #[test]
    fn deployments_and_services() {
        let a = Allocator::default();
        let c = ctx(&a);
        let deps = def("apps", "deployments");
        let d = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let Ok(created) = prepare_create(deps, "default", d.clone(), &c) else { panic!() };
        assert_eq!(created["status"]["readyReplicas"], 1);
        assert_eq!(created["metadata"]["generation"], 1);
        let mut changed = created.clone();
        changed["spec"]["replicas"] = json!(3);
        let Ok(updated) = prepare_update(deps, &created, changed, "", &c) else { panic!() };
        assert_eq!(updated["metadata"]["generation"], 2);
        assert_eq!(updated["status"]["readyReplicas"], 3);
        let mut bad = d;
        bad["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        assert_eq!(prepare_create(deps, "default", bad, &c).map_err(|e| e.code), Err(422));

        let svcs = def("", "services");
        let Ok(s) = prepare_create(
            svcs,
            "default",
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
            &c,
        ) else {
            panic!()
        };
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert!(s["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.96.")));
    }

    #[test]
    fn secrets_and_namespaces() {
        let a = Allocator::default();
        let c = ctx(&a);
        let Ok(s) = prepare_create(
            def("", "secrets"),
            "default",
            json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
            &c,
        ) else {
            panic!()
        };
        assert_eq!(s["data"]["k"], "dg==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        let Ok(ns) = prepare_create(def("", "namespaces"), "", json!({"metadata": {"name": "team-a"}}), &c)
        else {
            panic!()
        };
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
        assert!(ns["metadata"].get("namespace").is_none());
    }
}
