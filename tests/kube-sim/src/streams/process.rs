//! Running commands in a sandbox with their stdio wired to a session, with or without a pty, and
//! the per-container main process that `attach` connects to.
//!
//! Every command runs in its own process group (a new session when it has a pty); when the
//! command ends, or the client goes away, the whole group is killed so nothing outlives the
//! session.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::sandbox::Sandbox;
use super::status::Outcome;

/// Terminal size as sent on the resize channel (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The session side of a command's stdio. `None` means the client did not ask for that stream.
/// `stdin` ends (the sender is dropped) when the client closes its stdin.
#[derive(Default)]
pub struct SessionIo {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
}

/// Kills a process group when dropped.
struct GroupGuard(Option<rustix::process::Pid>);

impl GroupGuard {
    fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard(pid.and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw))
    }

    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

fn outcome(status: std::io::Result<ExitStatus>, command: &[String]) -> Outcome {
    match status {
        Ok(s) if s.success() => Outcome::Success,
        Ok(s) => Outcome::Exited { code: exit_code(s), command: command.to_vec() },
        Err(e) => Outcome::Internal(format!("error executing command in container: {e}")),
    }
}

/// The error a container runtime reports for a command that does not exist.
pub fn not_found(program: &str) -> Outcome {
    Outcome::Internal(format!(
        "error executing command in container: failed to exec in container: failed to start exec: \
         OCI runtime exec failed: exec failed: unable to start container process: exec: \"{program}\": \
         executable file not found in $PATH: unknown"
    ))
}

async fn pump_output<R: AsyncRead + Unpin>(mut from: R, to: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            // A pty reports EIO once every holder of its other end has exited.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `command` in `sandbox` until it exits or `gone` is cancelled (then it is killed and
/// `None` is returned: nobody is left to tell).
pub async fn run_exec(
    sandbox: &Sandbox,
    command: &[String],
    tty: bool,
    io: SessionIo,
    gone: CancellationToken,
) -> Option<Outcome> {
    let Some(program) = command.first() else {
        return Some(Outcome::Internal("you must specify at least one command for the container".into()));
    };
    if !sandbox.resolves(program) {
        return Some(not_found(program));
    }
    if tty { run_tty(sandbox, command, io, gone).await } else { run_pipes(sandbox, command, io, gone).await }
}

async fn run_pipes(
    sandbox: &Sandbox,
    command: &[String],
    io: SessionIo,
    gone: CancellationToken,
) -> Option<Outcome> {
    let spec = sandbox.launch(command, false);
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env)
        .stdin(if io.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(if io.stdout.is_some() { Stdio::piped() } else { Stdio::null() })
        .stderr(if io.stderr.is_some() { Stdio::piped() } else { Stdio::null() })
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Some(Outcome::Internal(format!("error executing command in container: {e}"))),
    };
    let mut group = GroupGuard::new(child.id());

    let stdin_task = match (child.stdin.take(), io.stdin) {
        (Some(mut pipe), Some(mut rx)) => Some(tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if pipe.write_all(&data).await.is_err() {
                    return;
                }
            }
            // Dropping the pipe is the child's end of input.
        })),
        _ => None,
    };
    let mut pumps = Vec::new();
    if let (Some(pipe), Some(tx)) = (child.stdout.take(), io.stdout) {
        pumps.push(tokio::spawn(pump_output(pipe, tx)));
    }
    if let (Some(pipe), Some(tx)) = (child.stderr.take(), io.stderr) {
        pumps.push(tokio::spawn(pump_output(pipe, tx)));
    }
    // Resize requests without a tty mean nothing; the channel is simply dropped.

    let status = tokio::select! {
        s = child.wait() => s,
        _ = gone.cancelled() => {
            group.kill();
            let _ = child.wait().await;
            if let Some(t) = stdin_task { t.abort(); }
            for p in pumps { p.abort(); }
            return None;
        }
    };
    // Whatever the command left running in its group goes with it; then the pipes drain.
    group.kill();
    if let Some(t) = stdin_task {
        t.abort();
    }
    for p in pumps {
        let _ = p.await;
    }
    Some(outcome(status, command))
}

async fn run_tty(
    sandbox: &Sandbox,
    command: &[String],
    io: SessionIo,
    gone: CancellationToken,
) -> Option<Outcome> {
    let spawned = spawn_on_pty(sandbox, command);
    let (mut child, pty) = match spawned {
        Ok(v) => v,
        Err(e) => return Some(Outcome::Internal(format!("error executing command in container: {e}"))),
    };
    let mut group = GroupGuard::new(child.id());
    let (reader, writer) = pty.into_split();
    let out_task = io.stdout.map(|tx| tokio::spawn(pump_output(reader, tx)));
    let in_task = tokio::spawn(feed_pty(writer, io.stdin, io.resize));

    let status = tokio::select! {
        s = child.wait() => s,
        _ = gone.cancelled() => {
            group.kill();
            let _ = child.wait().await;
            in_task.abort();
            if let Some(t) = out_task { t.abort(); }
            return None;
        }
    };
    group.kill();
    in_task.abort();
    if let Some(mut t) = out_task {
        // The pty's other end closes once the group is gone; bound the wait all the same.
        if tokio::time::timeout(Duration::from_secs(2), &mut t).await.is_err() {
            t.abort();
        }
    }
    Some(outcome(status, command))
}

fn spawn_on_pty(
    sandbox: &Sandbox,
    command: &[String],
) -> Result<(tokio::process::Child, pty_process::Pty), pty_process::Error> {
    let (pty, pts) = pty_process::open()?;
    pty.resize(pty_process::Size::new(24, 80))?;
    let spec = sandbox.launch(command, true);
    let child = pty_process::Command::new(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env)
        .kill_on_drop(true)
        .spawn(pts)?;
    Ok((child, pty))
}

/// Copies client input and terminal resizes into a pty until both sources end.
async fn feed_pty(
    mut writer: pty_process::OwnedWritePty,
    mut stdin: Option<mpsc::Receiver<Bytes>>,
    mut resize: Option<mpsc::Receiver<TermSize>>,
) {
    loop {
        // Resizes first: a client sizes its terminal before typing.
        tokio::select! {
            biased;
            size = async { match resize.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                match size {
                    Some(s) if s.width > 0 && s.height > 0 => { let _ = writer.resize(pty_process::Size::new(s.height, s.width)); }
                    Some(_) => {}
                    None => resize = None,
                }
            }
            data = async { match stdin.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                match data {
                    Some(d) => { if writer.write_all(&d).await.is_err() { return; } }
                    None => stdin = None,
                }
            }
        }
        if stdin.is_none() && resize.is_none() {
            return;
        }
    }
}

enum MainInput {
    Data(Bytes),
    Resize(TermSize),
}

/// A container's long-running main process: an interactive `sh` on a pty, started by the first
/// attach and kept until it exits (the next attach then starts a new one, as a restarted
/// container would). Output goes to every attached client; input comes from any of them.
pub struct MainProcess {
    input: mpsc::Sender<MainInput>,
    output: broadcast::Sender<Bytes>,
    exited: CancellationToken,
}

impl MainProcess {
    pub fn start(
        sandbox: &Sandbox,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Result<Arc<MainProcess>, String> {
        let command = vec!["/bin/sh".to_string()];
        let (mut child, pty) = spawn_on_pty(sandbox, &command).map_err(|e| e.to_string())?;
        let mut group = GroupGuard::new(child.id());
        let (mut reader, mut writer) = pty.into_split();
        let (input, mut input_rx) = mpsc::channel::<MainInput>(64);
        let (output, _) = broadcast::channel::<Bytes>(256);
        let exited = CancellationToken::new();
        let main = Arc::new(MainProcess { input, output: output.clone(), exited: exited.clone() });

        tracker.spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let io = async {
                loop {
                    tokio::select! {
                        n = reader.read(&mut buf) => match n {
                            Ok(0) | Err(_) => return,
                            // No attached client is fine: output is dropped, like a container's
                            // stdout nobody is attached to.
                            Ok(n) => { let _ = output.send(Bytes::copy_from_slice(&buf[..n])); }
                        },
                        msg = input_rx.recv() => match msg {
                            Some(MainInput::Data(d)) => { if writer.write_all(&d).await.is_err() { return; } }
                            Some(MainInput::Resize(s)) => {
                                if s.width > 0 && s.height > 0 {
                                    let _ = writer.resize(pty_process::Size::new(s.height, s.width));
                                }
                            }
                            None => return,
                        },
                    }
                }
            };
            tokio::select! {
                _ = io => {}
                _ = child.wait() => {}
                _ = shutdown.cancelled() => {}
            }
            group.kill();
            let _ = child.wait().await;
            exited.cancel();
        });
        Ok(main)
    }

    pub fn is_running(&self) -> bool {
        !self.exited.is_cancelled()
    }

    /// Connects one attach session until the main process exits (`Some(Success)`) or the
    /// client goes away (`None`). The process keeps running after a client leaves.
    pub async fn attach(&self, io: SessionIo, gone: CancellationToken) -> Option<Outcome> {
        let mut output = self.output.subscribe();
        let SessionIo { mut stdin, mut resize, stdout, stderr: _ } = io;
        loop {
            tokio::select! {
                _ = gone.cancelled() => return None,
                _ = self.exited.cancelled() => return Some(Outcome::Success),
                chunk = output.recv() => match chunk {
                    Ok(data) => {
                        if let Some(tx) = &stdout && tx.send(data).await.is_err() {
                            return None;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Some(Outcome::Success),
                },
                data = async { match stdin.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    match data {
                        Some(d) => { let _ = self.input.send(MainInput::Data(d)).await; }
                        // Closing stdin detaches input only; the process keeps its terminal.
                        None => stdin = None,
                    }
                }
                size = async { match resize.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                    match size {
                        Some(s) => { let _ = self.input.send(MainInput::Resize(s)).await; }
                        None => resize = None,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::streams::sandbox::Sandboxes;

    async fn sandbox() -> Option<(tempfile::TempDir, Arc<Sandbox>)> {
        let base = tempfile::tempdir().unwrap();
        let sandboxes = Sandboxes::new(base.path().to_path_buf());
        match sandboxes.get("ns", "pod", "c").await {
            Ok(sb) => Some((base, sb)),
            Err(e) => {
                eprintln!("skipping: {e}");
                None
            }
        }
    }

    async fn collect(mut rx: mpsc::Receiver<Bytes>) -> String {
        let mut all = Vec::new();
        while let Some(b) = rx.recv().await {
            all.extend_from_slice(&b);
        }
        String::from_utf8_lossy(&all).into_owned()
    }

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[tokio::test]
    async fn pipes_stdin_round_trip_and_exit_codes() {
        let Some((_base, sb)) = sandbox().await else { return };
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel(4);
        let (err_tx, err_rx) = mpsc::channel(4);
        let io = SessionIo { stdin: Some(in_rx), resize: None, stdout: Some(out_tx), stderr: Some(err_tx) };
        let out = tokio::spawn(collect(out_rx));
        let err = tokio::spawn(collect(err_rx));
        let run = tokio::spawn({
            let sb = sb.clone();
            async move {
                run_exec(
                    &sb,
                    &argv(&["sh", "-c", "cat; echo oops >&2; exit 3"]),
                    false,
                    io,
                    CancellationToken::new(),
                )
                .await
            }
        });
        in_tx.send(Bytes::from_static(b"line1\nline2\n")).await.unwrap();
        drop(in_tx);
        let outcome = run.await.unwrap().unwrap();
        assert_eq!(
            outcome,
            Outcome::Exited { code: 3, command: argv(&["sh", "-c", "cat; echo oops >&2; exit 3"]) }
        );
        assert_eq!(out.await.unwrap(), "line1\nline2\n");
        assert_eq!(err.await.unwrap(), "oops\n");
    }

    #[tokio::test]
    async fn files_land_in_the_sandbox_not_on_the_host() {
        let Some((_base, sb)) = sandbox().await else { return };
        let marker = format!("kube-sim-sandbox-test-{}", std::process::id());
        let io = SessionIo::default();
        let cmd = argv(&["sh", "-c", &format!("echo inside > /tmp/{marker}")]);
        assert_eq!(run_exec(&sb, &cmd, false, io, CancellationToken::new()).await, Some(Outcome::Success));
        assert!(sb.root.join("tmp").join(&marker).is_file());
        assert!(!std::path::Path::new("/tmp").join(&marker).exists());
    }

    #[tokio::test]
    async fn unknown_commands_are_runtime_errors() {
        let Some((_base, sb)) = sandbox().await else { return };
        let o = run_exec(&sb, &argv(&["no-such-cmd"]), false, SessionIo::default(), CancellationToken::new())
            .await;
        assert!(matches!(o, Some(Outcome::Internal(m)) if m.contains("executable file not found")));
    }

    #[tokio::test]
    async fn a_gone_client_kills_the_whole_group() {
        let Some((_base, sb)) = sandbox().await else { return };
        let gone = CancellationToken::new();
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let io = SessionIo { stdout: Some(out_tx), ..SessionIo::default() };
        let run = tokio::spawn({
            let (sb, gone) = (sb.clone(), gone.clone());
            async move { run_exec(&sb, &argv(&["sh", "-c", "sleep 300 & echo $!; wait"]), false, io, gone).await }
        });
        let pid_line = out_rx.recv().await.unwrap();
        let pid: i32 = String::from_utf8_lossy(&pid_line).trim().parse().unwrap();
        gone.cancel();
        assert_eq!(run.await.unwrap(), None);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.contains(") Z ") {
                break; // a zombie waiting for its (killed) parent's reaper is dead already
            }
            assert!(std::time::Instant::now() < deadline, "background sleep {pid} survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn tty_commands_get_a_terminal_and_resizes() {
        let Some((_base, sb)) = sandbox().await else { return };
        let (in_tx, in_rx) = mpsc::channel(4);
        let (rs_tx, rs_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel(64);
        let io = SessionIo { stdin: Some(in_rx), resize: Some(rs_rx), stdout: Some(out_tx), stderr: None };
        let out = tokio::spawn(collect(out_rx));
        let run = tokio::spawn({
            let sb = sb.clone();
            async move { run_exec(&sb, &argv(&["sh"]), true, io, CancellationToken::new()).await }
        });
        rs_tx.send(TermSize { width: 100, height: 30 }).await.unwrap();
        in_tx.send(Bytes::from_static(b"stty size; exit 4\r")).await.unwrap();
        let outcome = run.await.unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Exited { code: 4, .. }), "{outcome:?}");
        let text = out.await.unwrap();
        assert!(text.contains("30 100"), "{text:?}");
    }
}
