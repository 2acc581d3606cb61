//! A Python interpreter with the official Kubernetes client (`pip install kubernetes`), kept in
//! a virtualenv under `$HOME/.cache/kubegate/venv` and created on first use. `KUBEGATE_PYTHON`
//! names another interpreter that already has the package.

use std::path::{Path, PathBuf};
use std::process::Command;

fn has_client(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import kubernetes"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The interpreter to run Kubernetes-client scripts with. Panics with pip's output when the
/// package cannot be installed.
pub fn kubernetes_python() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBEGATE_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let cache = home.join(".cache").join("kubegate");
    let venv = cache.join("venv");
    let python = venv.join("bin").join("python");
    if has_client(&python) {
        return python;
    }
    // Build aside and move into place, so concurrent test processes never see half a venv.
    std::fs::create_dir_all(&cache).expect("create the venv cache directory");
    let staging = cache.join(format!("venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let out =
        Command::new("python3").arg("-m").arg("venv").arg(&staging).output().expect("run python3 -m venv");
    assert!(out.status.success(), "python3 -m venv failed: {}", String::from_utf8_lossy(&out.stderr));
    let staged_python = staging.join("bin").join("python");
    let out = Command::new(&staged_python)
        .args(["-m", "pip", "install", "--quiet", "kubernetes"])
        .output()
        .expect("run pip");
    assert!(
        out.status.success(),
        "pip install kubernetes failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if std::fs::rename(&staging, &venv).is_err() {
        // Another process won the race (or a broken venv is in the way): use whichever works.
        if has_client(&python) {
            let _ = std::fs::remove_dir_all(&staging);
            return python;
        }
        let _ = std::fs::remove_dir_all(&venv);
        std::fs::rename(&staging, &venv).expect("move the venv into place");
    }
    python
}
