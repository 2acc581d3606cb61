//! Per-container sandboxes: a directory tree that plays the container's root filesystem, with a
//! statically linked busybox as its userland, entered with `chroot` (busybox's own applet, so
//! the host needs nothing but the busybox binary and root). When the process is not root, a user
//! namespace (`unshare --map-root-user`) is tried instead.
//!
//! Layout of `<root>`: `bin/busybox` plus one symlink per applet at its usual path, `etc/passwd`,
//! `etc/group`, `etc/hostname`, `etc/hosts`, `root/`, `tmp/` (1777), `dev/` with the usual character
//! devices when the filesystem allows `mknod`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};

/// Where a static busybox is looked for (Debian's `busybox-static` installs `/bin/busybox`).
const BUSYBOX_CANDIDATES: &[&str] =
    &["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox", "/usr/sbin/busybox"];
const UNSHARE_CANDIDATES: &[&str] = &["/usr/bin/unshare", "/bin/unshare"];
const READY_MARKER: &str = ".kube-sim-sandbox";

pub const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "exec sandbox unavailable: no busybox found (looked in {0}); install a statically linked busybox (Debian package busybox-static)"
    )]
    NoBusybox(String),
    #[error("exec sandbox unavailable: cannot prepare {path}: {message}")]
    Layout { path: String, message: String },
    #[error(
        "exec sandbox unavailable: cannot enter the sandbox root with chroot (needs root, or user namespaces, and a statically linked busybox): {0}"
    )]
    Launch(String),
}

/// How a command enters its sandbox.
#[derive(Debug, Clone)]
enum Launcher {
    /// `busybox chroot ROOT CMD…` (needs CAP_SYS_CHROOT).
    Chroot,
    /// `unshare --user --map-root-user busybox chroot ROOT CMD…`.
    UserNamespace(PathBuf),
}

/// All sandboxes of one [`super::Streams`].
pub struct Sandboxes {
    base: PathBuf,
    launcher: OnceLock<Result<Launcher, SandboxError>>,
    map: tokio::sync::Mutex<HashMap<(String, String, String), Arc<Sandbox>>>,
}

/// One container's root filesystem.
pub struct Sandbox {
    pub root: PathBuf,
    pub hostname: String,
    launcher: Launcher,
}

/// The program, arguments and environment that run a command inside a sandbox.
pub struct LaunchSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

fn find_busybox() -> Result<PathBuf, SandboxError> {
    BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| SandboxError::NoBusybox(BUSYBOX_CANDIDATES.join(", ")))
}

/// Keeps a name usable as one path component.
fn component(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') { format!("_{cleaned}") } else { cleaned }
}

impl Sandboxes {
    pub fn new(base: PathBuf) -> Sandboxes {
        Sandboxes { base, launcher: OnceLock::new(), map: tokio::sync::Mutex::new(HashMap::new()) }
    }

    /// The directory playing the root filesystem of a container.
    pub fn root_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.base.join(component(namespace)).join(component(pod)).join(component(container))
    }

    /// The sandbox of a container, created on first use.
    pub async fn get(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<Arc<Sandbox>, SandboxError> {
        let key = (namespace.to_string(), pod.to_string(), container.to_string());
        let mut map = self.map.lock().await;
        if let Some(s) = map.get(&key) {
            return Ok(s.clone());
        }
        let root = self.root_path(namespace, pod, container);
        let hostname = pod.to_string();
        let layout_root = root.clone();
        let layout_host = hostname.clone();
        tokio::task::spawn_blocking(move || build_layout(&layout_root, &layout_host)).await.map_err(
            |e| SandboxError::Layout { path: root.display().to_string(), message: e.to_string() },
        )??;
        let launcher = match self.launcher.get() {
            Some(l) => l.clone()?,
            None => {
                let probe_root = root.clone();
                let chosen = tokio::task::spawn_blocking(move || choose_launcher(&probe_root))
                    .await
                    .map_err(|e| SandboxError::Launch(e.to_string()))?;
                self.launcher.get_or_init(|| chosen).clone()?
            }
        };
        let sandbox = Arc::new(Sandbox { root, hostname, launcher });
        map.insert(key, sandbox.clone());
        Ok(sandbox)
    }
}

fn layout_err(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |e| SandboxError::Layout { path: path.display().to_string(), message: e.to_string() }
}

fn build_layout(root: &Path, hostname: &str) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    if root.join(READY_MARKER).is_file() {
        return Ok(());
    }
    let busybox = find_busybox()?;
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/local/bin",
        "etc",
        "root",
        "dev",
        "proc",
        "var/tmp",
        "home",
    ] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(layout_err(&d))?;
    }
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(layout_err(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).map_err(layout_err(&tmp))?;

    let own_busybox = root.join("bin/busybox");
    std::fs::copy(&busybox, &own_busybox).map_err(layout_err(&own_busybox))?;
    std::fs::set_permissions(&own_busybox, std::fs::Permissions::from_mode(0o755))
        .map_err(layout_err(&own_busybox))?;

    // One symlink per applet, at the path busybox itself would install it.
    let listed = std::process::Command::new(&own_busybox)
        .arg("--list-full")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(layout_err(&own_busybox))?;
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let rel = line.trim().trim_start_matches('/');
        if rel.is_empty() || rel == "bin/busybox" || rel.contains("..") {
            continue;
        }
        let link = root.join(rel);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(layout_err(parent))?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).map_err(layout_err(&link))?;
    }

    let files: [(&str, String); 4] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n".into(),
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".into()),
        ("etc/hostname", format!("{hostname}\n")),
        ("etc/hosts", format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{hostname}\n")),
    ];
    for (rel, content) in files {
        let p = root.join(rel);
        std::fs::write(&p, content).map_err(layout_err(&p))?;
    }
    make_devices(&root.join("dev"));
    let marker = root.join(READY_MARKER);
    std::fs::write(&marker, b"").map_err(layout_err(&marker))?;
    Ok(())
}

/// Best effort: without CAP_MKNOD (or on a nodev mount) the sandbox has no device nodes.
fn make_devices(dev: &Path) {
    use rustix::fs::{FileType, Mode, makedev, mknodat};
    for (name, major, minor) in
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
    {
        let path = dev.join(name);
        if path.symlink_metadata().is_ok() {
            continue;
        }
        let _ = mknodat(
            rustix::fs::CWD,
            &path,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            makedev(major, minor),
        );
    }
}

fn probe(program: &Path, pre: &[OsString], root: &Path) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(pre)
        .arg(root.join("bin/busybox"))
        .arg("chroot")
        .arg(root)
        .args(["/bin/busybox", "true"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) }
}

fn choose_launcher(root: &Path) -> Result<Launcher, SandboxError> {
    let busybox = root.join("bin/busybox");
    let direct = {
        let out = std::process::Command::new(&busybox)
            .arg("chroot")
            .arg(root)
            .args(["/bin/busybox", "true"])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match out {
            Ok(o) if o.status.success() => return Ok(Launcher::Chroot),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        }
    };
    for unshare in UNSHARE_CANDIDATES.iter().map(PathBuf::from).filter(|p| p.is_file()) {
        let pre = [OsString::from("--user"), OsString::from("--map-root-user")];
        if probe(&unshare, &pre, root).is_ok() {
            return Ok(Launcher::UserNamespace(unshare));
        }
    }
    Err(SandboxError::Launch(direct))
}

impl Sandbox {
    /// Whether `program` names an executable inside the sandbox (PATH lookup for bare names).
    pub fn resolves(&self, program: &str) -> bool {
        if program.is_empty() {
            return false;
        }
        let exists = |inner: &str| {
            let rel = inner.trim_start_matches('/');
            !rel.is_empty()
                && !rel.split('/').any(|c| c == "..")
                && self.root.join(rel).symlink_metadata().is_ok()
        };
        if program.contains('/') {
            return exists(program);
        }
        CONTAINER_PATH.split(':').any(|dir| exists(&format!("{dir}/{program}")))
    }

    /// How to run `argv` inside this sandbox.
    pub fn launch(&self, argv: &[String], tty: bool) -> LaunchSpec {
        let busybox = self.root.join("bin/busybox");
        let mut args: Vec<OsString> = Vec::new();
        let program = match &self.launcher {
            Launcher::Chroot => busybox,
            Launcher::UserNamespace(unshare) => {
                args.extend([
                    OsString::from("--user"),
                    OsString::from("--map-root-user"),
                    busybox.into_os_string(),
                ]);
                unshare.clone()
            }
        };
        args.push("chroot".into());
        args.push(self.root.clone().into_os_string());
        args.extend(argv.iter().map(OsString::from));
        let mut env = vec![
            ("PATH".to_string(), CONTAINER_PATH.to_string()),
            ("HOSTNAME".to_string(), self.hostname.clone()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        if tty {
            env.push(("TERM".to_string(), "xterm".to_string()));
        }
        LaunchSpec { program, args, env }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names_stay_single_path_components() {
        assert_eq!(component("nginx"), "nginx");
        assert_eq!(component("../etc"), ".._etc");
        assert_eq!(component(".."), "_..");
        assert_eq!(component("a/b"), "a_b");
        assert_eq!(component(""), "_");
    }

    #[tokio::test]
    async fn sandbox_has_a_busybox_userland_and_resolves_commands() {
        if find_busybox().is_err() {
            eprintln!("skipping: no busybox on this machine");
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let sandboxes = Sandboxes::new(base.path().to_path_buf());
        let sb = sandboxes.get("default", "nginx", "nginx").await.unwrap();
        assert!(sb.root.starts_with(base.path()));
        assert!(sb.resolves("sh") && sb.resolves("tar") && sb.resolves("cat") && sb.resolves("/bin/ls"));
        assert!(!sb.resolves("no-such-command") && !sb.resolves("/../../bin/sh"));
        let again = sandboxes.get("default", "nginx", "nginx").await.unwrap();
        assert!(Arc::ptr_eq(&sb, &again));
        let spec = sb.launch(&["echo".into(), "hi".into()], false);
        let out = std::process::Command::new(&spec.program)
            .args(&spec.args)
            .env_clear()
            .envs(spec.env)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    }
}
