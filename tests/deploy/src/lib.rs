//! Checks of `deploy/`: renders the kustomize overlays with a real kubectl, reads the YAML into
//! JSON values, and gives the tests what they share (label selectors, a network-policy
//! evaluator, the Dockerfile's instructions, the workspace's binaries, the schema validator).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod dockerfile;
pub mod k8s;
pub mod netpol;
pub mod render;
pub mod tools;

use std::path::PathBuf;

/// The repository root (this crate lives in `tests/deploy`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// `deploy/` inside the repository.
pub fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}
