//! The three patch formats the API accepts: JSON patch (RFC 6902), JSON merge patch (RFC 7386)
//! and strategic merge patch, with the list merge keys and directives (`$patch`, `$retainKeys`,
//! `$setElementOrder/`, `$deleteFromPrimitiveList/`) that `kubectl apply` relies on.

use serde_json::{Map, Value};

/// Why a patch could not be applied: 400 for a malformed patch, 422 for one that does not
/// apply to the object.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchError {
    pub code: u16,
    pub message: String,
}

fn bad(message: impl Into<String>) -> PatchError {
    PatchError { code: 400, message: message.into() }
}

fn unprocessable(message: impl Into<String>) -> PatchError {
    PatchError { code: 422, message: message.into() }
}

// ---------------------------------------------------------------------------------------------
// JSON merge patch

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        let slot = t.entry(k.clone()).or_insert(Value::Null);
                        merge_patch(slot, v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON patch

fn pointer_tokens(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad(format!("invalid JSON pointer: {path:?}")));
    };
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn parent_and_last<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<(&'a mut Value, String), PatchError> {
    let Some((last, parents)) = tokens.split_last() else {
        return Err(unprocessable("cannot operate on the document root"));
    };
    let mut cur = doc;
    for t in parents {
        cur = match cur {
            Value::Object(m) => {
                m.get_mut(t).ok_or_else(|| unprocessable(format!("doc is missing path: /{t}")))?
            }
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| unprocessable(format!("invalid array index: {t}")))?;
                a.get_mut(i).ok_or_else(|| unprocessable(format!("array index out of bounds: {i}")))?
            }
            _ => return Err(unprocessable(format!("doc is missing path: /{t}"))),
        };
    }
    Ok((cur, last.clone()))
}

fn get_at<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn add_at(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), PatchError> {
    if tokens.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_and_last(doc, tokens)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| unprocessable(format!("invalid array index: {last}")))?;
            if i > a.len() {
                return Err(unprocessable(format!("array index out of bounds: {i}")));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(unprocessable("cannot add to a scalar")),
    }
}

fn remove_at(doc: &mut Value, tokens: &[String]) -> Result<Value, PatchError> {
    let (parent, last) = parent_and_last(doc, tokens)?;
    match parent {
        Value::Object(m) => {
            m.remove(&last).ok_or_else(|| unprocessable(format!("unable to remove nonexistent key: {last}")))
        }
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| unprocessable(format!("invalid array index: {last}")))?;
            if i >= a.len() {
                return Err(unprocessable(format!("array index out of bounds: {i}")));
            }
            Ok(a.remove(i))
        }
        _ => Err(unprocessable("cannot remove from a scalar")),
    }
}

/// RFC 6902 operations applied in order; the document is unchanged when any fails.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch.as_array().ok_or_else(|| bad("json patch must be an array of operations"))?;
    let mut out = doc.clone();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).ok_or_else(|| bad("operation is missing \"op\""))?;
        let path =
            op.get("path").and_then(Value::as_str).ok_or_else(|| bad("operation is missing \"path\""))?;
        let tokens = pointer_tokens(path)?;
        let value =
            || op.get("value").cloned().ok_or_else(|| bad(format!("{kind} operation is missing \"value\"")));
        let from = || -> Result<Vec<String>, PatchError> {
            pointer_tokens(
                op.get("from").and_then(Value::as_str).ok_or_else(|| bad("operation is missing \"from\""))?,
            )
        };
        match kind {
            "add" => add_at(&mut out, &tokens, value()?)?,
            "remove" => {
                remove_at(&mut out, &tokens)?;
            }
            "replace" => {
                if get_at(&out, &tokens).is_none() {
                    return Err(unprocessable(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    )));
                }
                if tokens.is_empty() {
                    out = value()?;
                } else {
                    remove_at(&mut out, &tokens)?;
                    add_at(&mut out, &tokens, value()?)?;
                }
            }
            "move" => {
                let from = from()?;
                let v = remove_at(&mut out, &from)?;
                add_at(&mut out, &tokens, v)?;
            }
            "copy" => {
                let from = from()?;
                let v =
                    get_at(&out, &from).cloned().ok_or_else(|| unprocessable("copy from a missing path"))?;
                add_at(&mut out, &tokens, v)?;
            }
            "test" => {
                let expected = value()?;
                if get_at(&out, &tokens) != Some(&expected) {
                    return Err(unprocessable(format!("testing value {path} failed: test failed")));
                }
            }
            other => return Err(bad(format!("unexpected kind: {other}"))),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ListStrategy {
    /// The patch's list replaces the object's (the default for lists without a merge key).
    Replace,
    /// A list of objects merged by the value of this key.
    MergeKey(&'static str),
    /// A list of scalars merged as a set (e.g. `metadata.finalizers`).
    MergePrimitive,
}

/// The list strategy of `path` (field names, list indexes skipped) in an object of `kind`.
fn list_strategy(kind: &str, path: &[String]) -> ListStrategy {
    let joined = path.join(".");
    match joined.as_str() {
        "metadata.finalizers" => return ListStrategy::MergePrimitive,
        "metadata.ownerReferences" => return ListStrategy::MergeKey("uid"),
        "status.conditions" => return ListStrategy::MergeKey("type"),
        _ => {}
    }
    let pod_spec: Option<&str> = match kind {
        "Pod" => joined.strip_prefix("spec."),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            joined.strip_prefix("spec.template.spec.")
        }
        _ => None,
    };
    if let Some(p) = pod_spec {
        let container_list =
            |name: &str| matches!(name, "containers" | "initContainers" | "ephemeralContainers");
        let parts: Vec<&str> = p.split('.').collect();
        return match parts.as_slice() {
            [c] if container_list(c) => ListStrategy::MergeKey("name"),
            ["volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"] => {
                ListStrategy::MergeKey("name")
            }
            ["hostAliases"] => ListStrategy::MergeKey("ip"),
            ["topologySpreadConstraints"] => ListStrategy::MergeKey("topologyKey"),
            [c, "ports"] if container_list(c) => ListStrategy::MergeKey("containerPort"),
            [c, "env"] if container_list(c) => ListStrategy::MergeKey("name"),
            [c, "volumeMounts"] if container_list(c) => ListStrategy::MergeKey("mountPath"),
            [c, "volumeDevices"] if container_list(c) => ListStrategy::MergeKey("devicePath"),
            _ => ListStrategy::Replace,
        };
    }
    match (kind, joined.as_str()) {
        ("Service", "spec.ports") => ListStrategy::MergeKey("port"),
        ("ServiceAccount", "secrets" | "imagePullSecrets") => ListStrategy::MergeKey("name"),
        ("Deployment", "status.conditions") => ListStrategy::MergeKey("type"),
        _ => ListStrategy::Replace,
    }
}

/// What merging a map produced.
enum MapOutcome {
    Keep,
    Delete,
}

fn directive(m: &Map<String, Value>) -> Option<&str> {
    m.get("$patch").and_then(Value::as_str)
}

fn is_directive_key(k: &str) -> bool {
    k == "$patch"
        || k == "$retainKeys"
        || k.starts_with("$setElementOrder/")
        || k.starts_with("$deleteFromPrimitiveList/")
}

/// Removes directive keys and `null`s from a value being added wholesale.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !is_directive_key(k) && !v.is_null())
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| !e.as_object().is_some_and(|m| directive(m).is_some() && m.len() == 1))
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_map(
    kind: &str,
    path: &mut Vec<String>,
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<MapOutcome, PatchError> {
    match directive(patch) {
        Some("replace") => {
            *orig = match strip(&Value::Object(patch.clone())) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            return Ok(MapOutcome::Keep);
        }
        Some("delete") => return Ok(MapOutcome::Delete),
        Some("merge") | None => {}
        Some(other) => return Err(bad(format!("Unknown patch type: {other} in map: {patch:?}"))),
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Value::Array(a) = v {
                orders.push((field.to_string(), a.clone()));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<Value> = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        path.push(k.clone());
        match v {
            Value::Object(pm) => {
                let slot = orig.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(om) = slot
                    && let MapOutcome::Delete = merge_map(kind, path, om, pm)?
                {
                    orig.remove(k);
                }
            }
            Value::Array(pa) => {
                let existing = match orig.get(k) {
                    Some(Value::Array(a)) => a.clone(),
                    _ => Vec::new(),
                };
                let merged = merge_list(kind, path, existing, pa)?;
                orig.insert(k.clone(), Value::Array(merged));
            }
            scalar => {
                orig.insert(k.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    for (field, order) in orders {
        path.push(field.clone());
        let strategy = list_strategy(kind, path);
        path.pop();
        if let Some(Value::Array(list)) = orig.get_mut(&field) {
            apply_order(list, &order, strategy);
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(MapOutcome::Keep)
}

fn key_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().and_then(|m| m.get(key))
}

fn merge_list(
    kind: &str,
    path: &mut Vec<String>,
    orig: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, PatchError> {
    let replace =
        patch.iter().any(|e| e.as_object().is_some_and(|m| directive(m) == Some("replace") && m.len() == 1));
    if replace {
        return Ok(patch
            .iter()
            .filter(|e| !e.as_object().is_some_and(|m| directive(m).is_some() && m.len() == 1))
            .map(strip)
            .collect());
    }
    match list_strategy(kind, path) {
        ListStrategy::Replace => Ok(patch.iter().map(strip).collect()),
        ListStrategy::MergePrimitive => {
            let mut out = orig;
            for p in patch {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeKey(key) => {
            let mut out = orig;
            for p in patch {
                let Some(pm) = p.as_object() else {
                    return Err(bad(format!("expected a map in the list at {}, got {p}", path.join("."))));
                };
                let Some(kv) = pm.get(key) else {
                    if directive(pm).is_some() {
                        continue;
                    }
                    return Err(bad(format!("map: {p} does not contain declared merge key: {key}")));
                };
                let pos = out.iter().position(|o| key_of(o, key) == Some(kv));
                if directive(pm) == Some("delete") {
                    out.retain(|o| key_of(o, key) != Some(kv));
                    continue;
                }
                match pos {
                    Some(i) => {
                        if let Value::Object(om) = &mut out[i]
                            && let MapOutcome::Delete = merge_map(kind, path, om, pm)?
                        {
                            out.remove(i);
                        }
                    }
                    None => {
                        let mut fresh = Map::new();
                        merge_map(kind, path, &mut fresh, pm)?;
                        out.push(Value::Object(fresh));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Reorders `list` as `$setElementOrder` asks: listed items first, in that order, then the rest
/// in their existing order.
fn apply_order(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let ident = |v: &Value| -> Option<Value> {
        match strategy {
            ListStrategy::MergeKey(k) => key_of(v, k).cloned(),
            _ => Some(v.clone()),
        }
    };
    let mut ordered = Vec::with_capacity(list.len());
    let mut rest: Vec<Value> = std::mem::take(list);
    for o in order {
        let Some(want) = ident(o) else { continue };
        if let Some(i) = rest.iter().position(|x| ident(x).as_ref() == Some(&want)) {
            ordered.push(rest.remove(i));
        }
    }
    ordered.extend(rest);
    *list = ordered;
}

/// Applies a strategic merge patch to `doc`, an object of `kind`.
pub fn strategic_merge_patch(kind: &str, doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(pm) = patch else {
        return Err(bad("strategic merge patch must be a JSON object"));
    };
    let mut out = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut path = Vec::new();
    match merge_map(kind, &mut path, &mut out, pm)? {
        MapOutcome::Keep => Ok(Value::Object(out)),
        MapOutcome::Delete => Ok(Value::Object(Map::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, doc: Value, patch: Value) -> Value {
        match strategic_merge_patch(kind, &doc, &patch) {
            Ok(v) => v,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
        let mut doc = json!({"a": 1});
        merge_patch(&mut doc, &json!({"b": {"c": null, "d": 1}}));
        assert_eq!(doc, json!({"a": 1, "b": {"d": 1}}));
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2, 3]});
        let p = json!([
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
            {"op": "remove", "path": "/list/0"},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "copy", "from": "/metadata/labels/b", "path": "/copied"},
            {"op": "move", "from": "/copied", "path": "/moved"},
            {"op": "test", "path": "/moved", "value": "2"},
            {"op": "add", "path": "/metadata/annotations", "value": {"k~/": "v"}},
        ]);
        let Ok(out) = json_patch(&doc, &p) else { panic!() };
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "x", "b": "2"}, "annotations": {"k~/": "v"}}, "list": [2, 3, 4], "moved": "2"})
        );
        let Ok(out) = json_patch(&out, &json!([{"op": "remove", "path": "/metadata/annotations/k~0~1"}]))
        else {
            panic!()
        };
        assert_eq!(out["metadata"]["annotations"], json!({}));
        let failed = json_patch(&doc, &json!([{"op": "test", "path": "/list/0", "value": 9}]));
        assert_eq!(failed.map_err(|e| e.code), Err(422));
        assert_eq!(json_patch(&doc, &json!({"op": "add"})).map_err(|e| e.code), Err(400));
        assert_eq!(
            json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])).map_err(|e| e.code),
            Err(422)
        );
    }

    #[test]
    fn smp_merges_containers_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "busybox"}
        ]}});
        let out = smp(
            "Pod",
            pod,
            json!({"spec": {"containers": [{"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}],
                                            "ports": [{"containerPort": 443}]}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}, {"containerPort": 443}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "side", "image": "busybox"}
            ])
        );
    }

    #[test]
    fn smp_directives() {
        let pod = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
                         "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "j"}],
                                  "tolerations": [{"key": "k"}]}});
        // delete an element, replace a map, delete a label, add a finalizer, replace a plain list
        let out = smp(
            "Pod",
            pod.clone(),
            json!({"metadata": {"labels": {"b": null}, "finalizers": ["y"]},
                   "spec": {"containers": [{"name": "a", "$patch": "delete"}], "tolerations": [{"key": "z"}]}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(out["spec"]["containers"], json!([{"name": "b", "image": "j"}]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "z"}]));

        let out = smp("Pod", pod.clone(), json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}));
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));

        let out =
            smp("Pod", pod.clone(), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!([]));

        let out = smp(
            "Pod",
            pod.clone(),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                            "containers": [{"name": "a", "image": "i2"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "j"}, {"name": "a", "image": "i2"}])
        );

        let out = smp(
            "Pod",
            pod.clone(),
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "k"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "c", "image": "k"}]));

        let out = smp("Pod", pod, json!({"metadata": {"labels": {"$patch": "delete"}}}));
        assert!(out["metadata"].get("labels").is_none());
    }

    #[test]
    fn smp_retain_keys_and_deployments() {
        let dep = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                                  "template": {"spec": {"containers": [{"name": "web", "image": "a"}]}}}});
        let out = smp(
            "Deployment",
            dep,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
                            "template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "b"}]));
    }

    #[test]
    fn smp_kubectl_apply_patch() {
        // The patch kubectl apply sends when only a label changed.
        let live = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "applied", "labels": {"app": "applied"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}});
        let patch = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new"},
            "labels": {"app": "applied2"}}});
        let out = smp("Pod", live, patch);
        assert_eq!(out["metadata"]["labels"]["app"], "applied2");
        assert_eq!(out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"], "new");
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.25");
    }

    #[test]
    fn smp_services_and_errors() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        let out = smp("Service", svc.clone(), json!({"spec": {"ports": [{"port": 443, "name": "https"}]}}));
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https"}])
        );
        let err = strategic_merge_patch("Service", &svc, &json!({"spec": {"ports": [{"name": "nokey"}]}}));
        assert_eq!(err.map_err(|e| e.code), Err(400));
        assert!(strategic_merge_patch("Pod", &svc, &json!([1])).is_err());
    }
}
