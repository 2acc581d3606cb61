//! Server-side printing: `Table` answers (meta.k8s.io) with the column definitions and cells
//! Kubernetes' printers produce for each kind, and the default NAME / CREATED AT table.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::resources::ResourceDef;

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// How much of each object a row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(v: Option<&str>) -> Result<IncludeObject, String> {
        match v {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(format!("unsupported includeObject value: {other:?}")),
        }
    }
}

fn col(name: &str, typ: &str, format: &str, description: &str, priority: i32) -> Value {
    json!({"name": name, "type": typ, "format": format, "description": description, "priority": priority})
}

/// The column definitions of `def`'s table.
pub fn column_definitions(def: &ResourceDef) -> Vec<Value> {
    let name = col("Name", "string", "name", NAME_DOC, 0);
    let age = col("Age", "string", "", AGE_DOC, 0);
    match def.kind {
        "Pod" => vec![
            name,
            col("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic.", 0),
            col("Status", "string", "", "The aggregate status of the containers in this pod.", 0),
            col(
                "Restarts",
                "string",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            age,
            col(
                "IP",
                "string",
                "",
                "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            col("Node", "string", "", "NodeName indicates in which node this pod is scheduled.", 1),
            col(
                "Nominated Node",
                "string",
                "",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
                1,
            ),
            col(
                "Readiness Gates",
                "string",
                "",
                "If specified, all readiness gates will be evaluated for pod readiness.",
                1,
            ),
        ],
        "Namespace" => vec![name, col("Status", "string", "", "The status of the namespace", 0), age],
        "ConfigMap" => vec![name, col("Data", "string", "", "Data contains the configuration data.", 0), age],
        "Secret" => vec![
            name,
            col("Type", "string", "", "Used to facilitate programmatic handling of secret data.", 0),
            col("Data", "string", "", "Data contains the secret data.", 0),
            age,
        ],
        "ServiceAccount" => vec![
            name,
            col(
                "Secrets",
                "string",
                "",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                0,
            ),
            age,
        ],
        "Service" => vec![
            name,
            col("Type", "string", "", "type determines how the Service is exposed.", 0),
            col("Cluster-IP", "string", "", "clusterIP is the IP address of the service.", 0),
            col(
                "External-IP",
                "string",
                "",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                0,
            ),
            col("Port(s)", "string", "", "The list of ports that are exposed by this service.", 0),
            age,
            col(
                "Selector",
                "string",
                "",
                "Route service traffic to pods with label keys and values matching this selector.",
                1,
            ),
        ],
        "Deployment" => vec![
            name,
            col("Ready", "string", "", "Number of the pod with ready state", 0),
            col(
                "Up-to-date",
                "string",
                "",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                0,
            ),
            col(
                "Available",
                "string",
                "",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                0,
            ),
            age,
            col("Containers", "string", "", "Names of each container in the template.", 1),
            col("Images", "string", "", "Images referenced by each container in the template.", 1),
            col("Selector", "string", "", "Label selector for pods.", 1),
        ],
        "RoleBinding" | "ClusterRoleBinding" => {
            let what = if def.kind == "RoleBinding" { "roleBinding" } else { "clusterRoleBinding" };
            vec![
                name,
                col(
                    "Role",
                    "string",
                    "",
                    "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
                    0,
                ),
                age,
                col("Users", "string", "", &format!("Users in the {what}"), 1),
                col("Groups", "string", "", &format!("Groups in the {what}"), 1),
                col("ServiceAccounts", "string", "", &format!("ServiceAccounts in the {what}"), 1),
            ]
        }
        "Node" => vec![
            name,
            col("Status", "string", "", "The status of the node", 0),
            col("Roles", "string", "", "The roles of the node", 0),
            age,
            col("Version", "string", "", "Kubelet Version reported by the node.", 0),
            col("Internal-IP", "string", "", "List of addresses reachable to the node.", 1),
            col("External-IP", "string", "", "List of addresses reachable to the node.", 1),
            col(
                "OS-Image",
                "string",
                "",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                1,
            ),
            col(
                "Kernel-Version",
                "string",
                "",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                1,
            ),
            col(
                "Container-Runtime",
                "string",
                "",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                1,
            ),
        ],
        "Event" => vec![
            col(
                "Last Seen",
                "string",
                "",
                "The time at which the most recent occurrence of this event was recorded.",
                0,
            ),
            col(
                "Type",
                "string",
                "",
                "Type of this event (Normal, Warning), new types could be added in the future",
                0,
            ),
            col(
                "Reason",
                "string",
                "",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
                0,
            ),
            col("Object", "string", "", "The object that this event is about.", 0),
            col("Message", "string", "", "A human-readable description of the status of this operation.", 0),
        ],
        _ => vec![name, col("Created At", "date", "", AGE_DOC, 0)],
    }
}

/// `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn since(ts: Option<&str>, now: DateTime<Utc>) -> String {
    match ts.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => human_duration((now - t.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".into(),
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn or_none(x: &str) -> String {
    if x.is_empty() { "<none>".into() } else { x.to_string() }
}

fn count(v: &Value, ptr: &str) -> i64 {
    match v.pointer(ptr) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

fn selector_string(m: Option<&Value>) -> String {
    let Some(Value::Object(m)) = m else { return String::new() };
    let mut pairs: Vec<String> =
        m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
    pairs.sort();
    pairs.join(",")
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let total = count(pod, "/spec/containers");
    let mut reason = s(pod, "/status/phase").to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    let mut ready = 0;
    let mut restarts = 0;
    for cs in pod.pointer("/status/containerStatuses").and_then(Value::as_array).into_iter().flatten() {
        restarts += cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        if let Some(w) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            if !w.is_empty() {
                reason = w.to_string();
            }
        } else if let Some(t) = cs.pointer("/state/terminated") {
            let r = t.get("reason").and_then(Value::as_str).unwrap_or_default();
            reason = if !r.is_empty() {
                r.to_string()
            } else {
                format!("ExitCode:{}", t.get("exitCode").and_then(Value::as_i64).unwrap_or(0))
            };
        } else if cs.get("ready").and_then(Value::as_bool).unwrap_or(false)
            && cs.pointer("/state/running").is_some()
        {
            ready += 1;
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        reason = if s(pod, "/status/reason") == "NodeLost" { "Unknown".into() } else { "Terminating".into() };
    }
    let gates = count(pod, "/spec/readinessGates");
    vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(since(pod.pointer("/metadata/creationTimestamp").and_then(Value::as_str), now)),
        json!(or_none(s(pod, "/status/podIP"))),
        json!(or_none(s(pod, "/spec/nodeName"))),
        json!(or_none(s(pod, "/status/nominatedNodeName"))),
        json!(if gates > 0 { format!("0/{gates}") } else { "<none>".into() }),
    ]
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if np > 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    if ports.is_empty() { "<none>".into() } else { ports.join(",") }
}

fn subjects(b: &Value, kind: &str) -> String {
    let names: Vec<String> = b
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
        .map(|s| {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            match (kind, s.get("namespace").and_then(Value::as_str)) {
                ("ServiceAccount", Some(ns)) => format!("{ns}/{name}"),
                _ => name.to_string(),
            }
        })
        .collect();
    names.join(", ")
}

/// The cells of one row.
pub fn row_cells(def: &ResourceDef, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    let age = json!(since(obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str), now));
    match def.kind {
        "Pod" => pod_cells(obj, now),
        "Namespace" => vec![name, json!(s(obj, "/status/phase")), age],
        "ConfigMap" => vec![name, json!(count(obj, "/data") + count(obj, "/binaryData")), age],
        "Secret" => vec![name, json!(s(obj, "/type")), json!(count(obj, "/data")), age],
        "ServiceAccount" => vec![name, json!(count(obj, "/secrets")), age],
        "Service" => {
            let typ = s(obj, "/spec/type");
            let external = match typ {
                "LoadBalancer" => {
                    let ips: Vec<&str> = obj
                        .pointer("/status/loadBalancer/ingress")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i.get("ip").or_else(|| i.get("hostname")).and_then(Value::as_str))
                        .collect();
                    if ips.is_empty() { "<pending>".to_string() } else { ips.join(",") }
                }
                "ExternalName" => s(obj, "/spec/externalName").to_string(),
                _ => {
                    let ips: Vec<&str> = obj
                        .pointer("/spec/externalIPs")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    if ips.is_empty() { "<none>".to_string() } else { ips.join(",") }
                }
            };
            let selector = selector_string(obj.pointer("/spec/selector"));
            vec![
                name,
                json!(typ),
                json!(or_none(s(obj, "/spec/clusterIP"))),
                json!(external),
                json!(service_ports(obj)),
                age,
                json!(or_none(&selector)),
            ]
        }
        "Deployment" => {
            let replicas = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            let ready = obj.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0);
            let updated = obj.pointer("/status/updatedReplicas").and_then(Value::as_i64).unwrap_or(0);
            let available = obj.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0);
            let containers = obj.pointer("/spec/template/spec/containers").and_then(Value::as_array);
            let names: Vec<&str> = containers
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect();
            let images: Vec<&str> = containers
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("image").and_then(Value::as_str))
                .collect();
            vec![
                name,
                json!(format!("{ready}/{replicas}")),
                json!(updated),
                json!(available),
                age,
                json!(names.join(",")),
                json!(images.join(",")),
                json!(or_none(&selector_string(obj.pointer("/spec/selector/matchLabels")))),
            ]
        }
        "RoleBinding" | "ClusterRoleBinding" => vec![
            name,
            json!(format!("{}/{}", s(obj, "/roleRef/kind"), s(obj, "/roleRef/name"))),
            age,
            json!(subjects(obj, "User")),
            json!(subjects(obj, "Group")),
            json!(subjects(obj, "ServiceAccount")),
        ],
        "Node" => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                .map(|c| {
                    if c.get("status").and_then(Value::as_str) == Some("True") { "Ready" } else { "NotReady" }
                })
                .unwrap_or("Unknown");
            let mut roles: Vec<String> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_string))
                .collect();
            roles.sort();
            let addr = |t: &str| -> String {
                obj.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
                    .and_then(|a| a.get("address").and_then(Value::as_str))
                    .map(str::to_string)
                    .unwrap_or_else(|| "<none>".into())
            };
            vec![
                name,
                json!(ready),
                json!(if roles.is_empty() { "<none>".to_string() } else { roles.join(",") }),
                age,
                json!(s(obj, "/status/nodeInfo/kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(or_none(s(obj, "/status/nodeInfo/osImage"))),
                json!(or_none(s(obj, "/status/nodeInfo/kernelVersion"))),
                json!(or_none(s(obj, "/status/nodeInfo/containerRuntimeVersion"))),
            ]
        }
        "Event" => {
            let last = obj
                .get("lastTimestamp")
                .and_then(Value::as_str)
                .or_else(|| obj.get("eventTime").and_then(Value::as_str));
            let object = format!(
                "{}/{}",
                s(obj, "/involvedObject/kind").to_ascii_lowercase(),
                s(obj, "/involvedObject/name")
            );
            vec![
                json!(since(last, now)),
                json!(s(obj, "/type")),
                json!(s(obj, "/reason")),
                json!(object),
                json!(s(obj, "/message")),
            ]
        }
        _ => vec![name, json!(s(obj, "/metadata/creationTimestamp"))],
    }
}

/// One table row for `obj`.
pub fn row(def: &ResourceDef, obj: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let mut r = Map::new();
    r.insert("cells".into(), Value::Array(row_cells(def, obj, now)));
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r.insert(
                "object".into(),
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))}),
            );
        }
        IncludeObject::Object => {
            r.insert("object".into(), obj.clone());
        }
    }
    Value::Object(r)
}

/// A Table of `rows` (`table_version` is `v1` or `v1beta1`); `columns = false` gives the
/// `columnDefinitions: null` form watch events after the first use.
pub fn table(
    def: &ResourceDef,
    rows: Vec<Value>,
    list_meta: Value,
    table_version: &str,
    columns: bool,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{table_version}"),
        "metadata": list_meta,
        "columnDefinitions": if columns { Value::Array(column_definitions(def)) } else { Value::Null },
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(120), "2m");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(11 * 60), "11m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
        assert_eq!(human_duration(3 * 365 * 86400 + 86400), "3y1d");
    }

    #[test]
    fn pod_rows() {
        let Some((_, pods)) = resources::find("", "pods") else { panic!() };
        let now = Utc::now();
        let pod = json!({"metadata": {"name": "nginx", "creationTimestamp": crate::objects::timestamp(now - chrono::Duration::seconds(5))},
            "spec": {"containers": [{"name": "nginx"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [
                {"name": "nginx", "ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        let cells = row_cells(pods, &pod, now);
        assert_eq!(
            cells,
            vec![
                json!("nginx"),
                json!("1/1"),
                json!("Running"),
                json!("2"),
                json!("5s"),
                json!("10.0.0.1"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        assert_eq!(column_definitions(pods).len(), cells.len());
        let mut terminating = pod.clone();
        terminating["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        assert_eq!(row_cells(pods, &terminating, now)[2], json!("Terminating"));
        let r = row(pods, &pod, IncludeObject::Metadata, now);
        assert_eq!(r["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(r["object"]["metadata"]["name"], "nginx");
    }

    #[test]
    fn every_kind_has_matching_cells() {
        let now = Utc::now();
        for def in resources::RESOURCES.iter().filter(|d| d.stored) {
            let cells = row_cells(def, &json!({"metadata": {"name": "x"}}), now);
            assert_eq!(column_definitions(def).len(), cells.len(), "{}", def.kind);
        }
    }
}
