//! The workspace's own binaries for process-level tests of another package. `CARGO_BIN_EXE_*`
//! exists only for the package under test; the others live in the same target directory
//! (`make test` builds every binary first) and are built here when missing.
//!
//! A binary that exists is used as it is: after changing that package, rebuild it
//! (`cargo build -p <package>`) or run `make test`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Path of binary `bin` of workspace package `package`, built with the test's profile if missing.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    // One build at a time within a test process; cargo's own lock covers other processes.
    static BUILDING: Mutex<()> = Mutex::new(());
    let exe = std::env::current_exe().expect("current test executable");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("cannot find the target directory from {}", exe.display()))
        .to_path_buf();
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        return path;
    }
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if path.is_file() {
        return path;
    }
    let target_dir = profile_dir.parent().expect("target directory").to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]).arg("--target-dir").arg(&target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build {bin}: {e}"));
    assert!(
        status.success() && path.is_file(),
        "{bin} is missing at {} and `cargo build -p {package} --bin {bin}` did not produce it; \
         run `cargo build --workspace --bins` (make test does) and try again",
        path.display()
    );
    path
}
