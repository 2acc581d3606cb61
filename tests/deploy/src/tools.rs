//! The external programs the checks use: `kubernetes-validate` (PyPI, in a virtualenv),
//! `cargo metadata`, `nats-server`, `openssl`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The version of kubernetes-validate the checks are written against (its schemas change with
/// its releases). `deploy/scripts/install-test-deps.sh` installs the same one.
pub const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";

/// Kubernetes versions the manifests must be valid for: the oldest supported and the newest
/// kubectl the project tests with.
pub const KUBERNETES_VERSIONS: &[&str] = &["1.27.0", "1.33.0"];

/// `kubernetes-validate`: `KUBEGATE_KUBERNETES_VALIDATE` if set, else the virtualenv that
/// `deploy/scripts/install-test-deps.sh` creates (run here when it is missing).
pub fn kubernetes_validate() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBEGATE_KUBERNETES_VALIDATE") {
        return PathBuf::from(p);
    }
    let script = crate::deploy_dir().join("scripts/install-test-deps.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--print-validator")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "deploy/scripts/install-test-deps.sh could not install kubernetes-validate \
         {KUBERNETES_VALIDATE_VERSION} (it is what `make deps` runs):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    PathBuf::from(path)
}

/// Validates the objects in `files` against the Kubernetes schemas of `version`, strictly
/// (unknown fields are errors). Returns the validator's report on failure.
pub fn validate_schemas(files: &[&Path], version: &str) -> Result<(), String> {
    let out = Command::new(kubernetes_validate())
        .args(["--strict", "--quiet", "--kubernetes-version", version])
        .args(files)
        .output()
        .map_err(|e| format!("run kubernetes-validate: {e}"))?;
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && !report.contains("ERROR") { Ok(()) } else { Err(report) }
}

/// `cargo metadata --no-deps` of the workspace.
pub fn cargo_metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(crate::repo_root())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// The names of every `bin` target of the workspace's packages.
pub fn workspace_binaries(metadata: &Value) -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"].as_array().into_iter().flatten().any(|k| k == "bin");
            if is_bin {
                bins.insert(target["name"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    bins
}

/// The nats-server binary (Debian installs it in /usr/sbin).
pub fn nats_server() -> PathBuf {
    for candidate in ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("nats-server")
}
