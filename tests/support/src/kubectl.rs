//! The versioned kubectl binaries (`kubectl.1.27` … `kubectl.1.33`) installed by Debian's
//! `kubectl` package. `/usr/bin/kubectl` is a dispatcher that first calls `/version`, so tests
//! always run a versioned binary directly.

use std::path::PathBuf;
use std::process::Command;

/// Path of `kubectl.1.<minor>`: found on PATH, else among the files of the `kubectl` package.
pub fn kubectl(minor: u32) -> PathBuf {
    let name = format!("kubectl.1.{minor}");
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(&name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let listed = Command::new("dpkg").args(["-L", "kubectl"]).output();
    if let Ok(out) = listed {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.ends_with(&format!("/{name}")) {
                return PathBuf::from(line);
            }
        }
    }
    panic!("{name} not found on PATH nor in the kubectl package (dpkg -L kubectl)");
}

/// A kubectl command for `minor` with a fresh discovery cache directory (a stale cache hides
/// bugs). The returned TempDir must outlive the command.
pub fn command(minor: u32) -> (Command, tempfile::TempDir) {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(kubectl(minor));
    cmd.arg("--cache-dir").arg(cache.path().join("cache"));
    cmd.env("HOME", cache.path());
    cmd.env_remove("KUBECONFIG");
    (cmd, cache)
}
