//! Rendering the overlays (`kubectl kustomize`, kubectl 1.33) and reading YAML documents.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

/// The overlays users apply.
pub const OVERLAYS: &[&str] = &["dev", "production"];

/// One overlay's rendered output.
pub struct Rendered {
    pub overlay: &'static str,
    pub yaml: String,
    pub objects: Vec<Value>,
}

/// Reads every YAML document of `text` (empty documents are skipped).
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Reads the YAML documents of a file, panicking with the file's name on error.
pub fn documents_of(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    documents(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// `kubectl kustomize <dir>` with kubectl 1.33.
pub fn kustomize(dir: &Path) -> Result<String, String> {
    let (mut cmd, _cache) = kubegate_testsupport::kubectl::command(33);
    let out = cmd.arg("kustomize").arg(dir).output().map_err(|e| format!("run kubectl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl kustomize {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// Every overlay rendered once per test process.
pub fn overlays() -> &'static BTreeMap<&'static str, Rendered> {
    static RENDERED: OnceLock<BTreeMap<&'static str, Rendered>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        OVERLAYS
            .iter()
            .map(|&overlay| {
                let dir = crate::deploy_dir().join("kubernetes/overlays").join(overlay);
                let yaml = kustomize(&dir).unwrap_or_else(|e| panic!("{e}"));
                let objects = documents(&yaml)
                    .unwrap_or_else(|e| panic!("the {overlay} overlay renders invalid YAML: {e}"));
                (overlay, Rendered { overlay, yaml, objects })
            })
            .collect()
    })
}
