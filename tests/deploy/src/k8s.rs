//! Reading Kubernetes objects held as JSON values: kinds and names, workloads and their pod
//! templates, containers, label selectors.

use serde_json::{Map, Value};

pub fn kind(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or_default()
}

pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// `Kind/name`, for messages.
pub fn id(obj: &Value) -> String {
    format!("{}/{}", kind(obj), name(obj))
}

pub fn of_kind<'a>(objects: &'a [Value], k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects.iter().filter(move |o| kind(o) == k)
}

pub fn find<'a>(objects: &'a [Value], k: &str, n: &str) -> Option<&'a Value> {
    objects.iter().find(|o| kind(o) == k && name(o) == n)
}

/// A Deployment or StatefulSet.
pub struct Workload<'a> {
    pub obj: &'a Value,
    pub kind: &'a str,
    pub name: &'a str,
    pub replicas: Option<u64>,
    pub selector: &'a Value,
    pub pod_labels: Map<String, Value>,
    pub pod_spec: &'a Value,
}

impl<'a> Workload<'a> {
    pub fn containers(&self) -> impl Iterator<Item = &'a Value> + 'a {
        let spec = self.pod_spec;
        spec["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(spec["containers"].as_array().into_iter().flatten())
    }

    /// The `app.kubernetes.io/component` label of the pods.
    pub fn component(&self) -> &str {
        self.pod_labels.get("app.kubernetes.io/component").and_then(Value::as_str).unwrap_or_default()
    }

    /// The named container ports of the pods: name → (port, protocol).
    pub fn named_ports(&self) -> Vec<(String, u64, String)> {
        let mut ports = Vec::new();
        for c in self.containers() {
            for p in c["ports"].as_array().into_iter().flatten() {
                ports.push((
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p["containerPort"].as_u64().unwrap_or_default(),
                    p["protocol"].as_str().unwrap_or("TCP").to_string(),
                ));
            }
        }
        ports
    }
}

pub fn workloads(objects: &[Value]) -> Vec<Workload<'_>> {
    objects
        .iter()
        .filter(|o| matches!(kind(o), "Deployment" | "StatefulSet"))
        .map(|o| Workload {
            obj: o,
            kind: kind(o),
            name: name(o),
            replicas: o["spec"]["replicas"].as_u64(),
            selector: &o["spec"]["selector"],
            pod_labels: o["spec"]["template"]["metadata"]["labels"].as_object().cloned().unwrap_or_default(),
            pod_spec: &o["spec"]["template"]["spec"],
        })
        .collect()
}

/// Whether a `LabelSelector` (matchLabels and matchExpressions) selects `labels`. An empty
/// selector selects everything; a null one nothing.
pub fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    if selector.is_null() {
        return false;
    }
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    for (k, v) in selector["matchLabels"].as_object().into_iter().flatten() {
        if label(k) != v.as_str() {
            return false;
        }
    }
    for expr in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = expr["key"].as_str().unwrap_or_default();
        let values: Vec<&str> =
            expr["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let ok = match expr["operator"].as_str().unwrap_or_default() {
            "In" => label(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => !label(key).is_some_and(|v| values.contains(&v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            other => panic!("unknown selector operator {other}"),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a Service's plain `selector` map selects `labels` (an empty one selects nothing:
/// such a Service has manual endpoints).
pub fn service_selects(selector: &Value, labels: &Map<String, Value>) -> bool {
    match selector.as_object() {
        Some(sel) if !sel.is_empty() => sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
        _ => false,
    }
}

/// The environment a container gets from literal `env` values and the ConfigMaps of its
/// `envFrom` (resolved in `objects`). Variables from Secrets and the downward API map to
/// `None`.
pub fn container_env(container: &Value, objects: &[Value]) -> Map<String, Value> {
    let mut env = Map::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(cm) = from["configMapRef"]["name"].as_str() {
            let cm = find(objects, "ConfigMap", cm)
                .unwrap_or_else(|| panic!("envFrom names ConfigMap {cm}, which is not rendered"));
            for (k, v) in cm["data"].as_object().into_iter().flatten() {
                env.insert(k.clone(), v.clone());
            }
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        let key = e["name"].as_str().unwrap_or_default().to_string();
        env.insert(key, e.get("value").cloned().unwrap_or(Value::Null));
    }
    env
}

/// The port of a `host:port` listen address.
pub fn listen_port(addr: &str) -> Option<u64> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}
