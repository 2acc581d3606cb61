//! The operations `schemas/openapi.yaml` documents for one service, to compare with what the
//! service's router serves.

use std::collections::BTreeSet;
use std::path::PathBuf;

pub fn document_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/openapi.yaml")
}

/// `(path, METHOD)` of every operation marked `x-kubegate-service: <service>`.
pub fn operations(service: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(document_path()).expect("read schemas/openapi.yaml");
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("schemas/openapi.yaml is valid YAML");
    let mut out = BTreeSet::new();
    let paths = doc.get("paths").and_then(|p| p.as_object()).expect("paths");
    for (path, item) in paths {
        let Some(item) = item.as_object() else { continue };
        for (method, op) in item {
            if !["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                continue;
            }
            if op.get("x-kubegate-service").and_then(|s| s.as_str()) == Some(service) {
                out.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    out
}
