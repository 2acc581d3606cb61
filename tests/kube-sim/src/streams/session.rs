//! Remote-command sessions (exec and attach) over WebSocket channels or SPDY streams: wire the
//! transport to a [`SessionIo`], run the command (or attach), then report the outcome on the
//! error channel the way the kubelet does and close.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::channel::{self, ChannelCodec, Incoming};
use super::negotiate::{Framing, RcVersion};
use super::process::{MainProcess, SessionIo, TermSize, run_exec};
use super::sandbox::Sandbox;
use super::spdy::conn::{Connection, IncomingStream, StreamReader, StreamWriter};
use super::spdy::frame::rst;
use super::status::Outcome;

/// How long a SPDY client may take to open all the streams it asked for (the kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the client to close the connection after the final status.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Which stdio streams the client asked for.
#[derive(Debug, Clone, Copy)]
pub struct StdioFlags {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// What runs at the other end of the streams.
pub enum Runner {
    Exec {
        sandbox: Arc<Sandbox>,
        command: Vec<String>,
    },
    Attach {
        main: Arc<MainProcess>,
    },
    /// Nothing can run; the session only reports this outcome.
    Fail(Outcome),
}

impl Runner {
    async fn run(self, tty: bool, io: SessionIo, gone: CancellationToken) -> Option<Outcome> {
        match self {
            Runner::Exec { sandbox, command } => run_exec(&sandbox, &command, tty, io, gone).await,
            Runner::Attach { main } => main.attach(io, gone).await,
            Runner::Fail(outcome) => Some(outcome),
        }
    }
}

/// Parses resize messages: JSON objects, possibly several or split across messages.
#[derive(Default)]
struct ResizeParser {
    buf: Vec<u8>,
}

impl ResizeParser {
    fn push(&mut self, data: &[u8]) -> Vec<TermSize> {
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        let mut iter = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TermSize>();
        loop {
            match iter.next() {
                Some(Ok(size)) => {
                    sizes.push(size);
                    consumed = iter.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    // Garbage: drop everything buffered.
                    consumed = self.buf.len();
                    break;
                }
                None => {
                    consumed = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
        sizes
    }
}

fn channel_pair<T>(wanted: bool, depth: usize) -> (Option<mpsc::Sender<T>>, Option<mpsc::Receiver<T>>) {
    if wanted {
        let (tx, rx) = mpsc::channel(depth);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    }
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match rx.as_mut() {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// exec/attach over WebSocket channels.
pub async fn ws_session<S>(
    ws: WebSocketStream<S>,
    version: RcVersion,
    framing: Framing,
    flags: StdioFlags,
    runner: Runner,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let codec = ChannelCodec { framing, close_signal: version == RcVersion::V5 };
    let (mut sink, mut stream) = ws.split();
    let gone = shutdown.child_token();
    let stderr_wanted = flags.stderr && !flags.tty;

    let (stdin_tx, stdin_rx) = channel_pair::<Bytes>(flags.stdin, 16);
    let (resize_tx, resize_rx) = channel_pair::<TermSize>(flags.tty, 8);
    let (stdout_tx, mut stdout_rx) = channel_pair::<Bytes>(flags.stdout, 16);
    let (stderr_tx, mut stderr_rx) = channel_pair::<Bytes>(stderr_wanted, 16);

    // Reader: client messages to stdin and resize; its end (close or error) means the client is gone.
    let reader = tokio::spawn({
        let gone = gone.clone();
        let mut stdin_tx = stdin_tx;
        async move {
            let mut resize = ResizeParser::default();
            while let Some(Ok(msg)) = stream.next().await {
                match codec.decode(msg) {
                    Incoming::Data { channel: channel::STDIN, data } => {
                        if let Some(tx) = &stdin_tx
                            && tx.send(data).await.is_err()
                        {
                            stdin_tx = None;
                        }
                    }
                    Incoming::Data { channel: channel::RESIZE, data } => {
                        if let Some(tx) = &resize_tx {
                            for size in resize.push(&data) {
                                let _ = tx.send(size).await;
                            }
                        }
                    }
                    Incoming::CloseChannel(channel::STDIN) => stdin_tx = None,
                    Incoming::Closed => break,
                    _ => {}
                }
            }
            gone.cancel();
        }
    });

    // The kubelet greets with an empty message on the lowest channel it writes to.
    let greeting = if flags.stdout {
        channel::STDOUT
    } else if stderr_wanted {
        channel::STDERR
    } else {
        channel::ERROR
    };
    let writer = tokio::spawn(async move {
        if sink.send(codec.encode(greeting, b"")).await.is_err() {
            return None;
        }
        while stdout_rx.is_some() || stderr_rx.is_some() {
            let (ch, data) = tokio::select! {
                d = recv_opt(&mut stdout_rx), if stdout_rx.is_some() => match d {
                    Some(d) => (channel::STDOUT, d),
                    None => { stdout_rx = None; continue; }
                },
                d = recv_opt(&mut stderr_rx), if stderr_rx.is_some() => match d {
                    Some(d) => (channel::STDERR, d),
                    None => { stderr_rx = None; continue; }
                },
            };
            if sink.send(codec.encode(ch, &data)).await.is_err() {
                return None;
            }
        }
        Some(sink)
    });

    let io = SessionIo { stdin: stdin_rx, resize: resize_rx, stdout: stdout_tx, stderr: stderr_tx };
    let outcome = runner.run(flags.tty, io, gone.clone()).await;
    let sink = writer.await.ok().flatten();
    if let (Some(outcome), Some(mut sink)) = (outcome, sink) {
        if let Some(bytes) = outcome.error_channel_bytes(version) {
            let _ = sink.send(codec.encode(channel::ERROR, &bytes)).await;
        }
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
        // Let the client answer the close before the connection goes.
        let _ = tokio::time::timeout(CLOSE_GRACE, gone.cancelled()).await;
    }
    reader.abort();
}

async fn pump_to_stream(mut rx: mpsc::Receiver<Bytes>, writer: StreamWriter) {
    while let Some(data) = rx.recv().await {
        if writer.write(data).await.is_err() {
            // The client reset the stream: keep draining so the command never blocks on output.
            while rx.recv().await.is_some() {}
            return;
        }
    }
    let _ = writer.close().await;
}

async fn pump_from_stream(mut reader: StreamReader, tx: mpsc::Sender<Bytes>) {
    while let Some(data) = reader.recv().await {
        if tx.send(data).await.is_err() {
            return;
        }
    }
}

async fn pump_resize(mut reader: StreamReader, tx: mpsc::Sender<TermSize>) {
    let mut parser = ResizeParser::default();
    while let Some(data) = reader.recv().await {
        for size in parser.push(&data) {
            if tx.send(size).await.is_err() {
                return;
            }
        }
    }
}

/// exec/attach over SPDY streams (error, stdin, stdout, stderr, resize).
pub async fn spdy_session<S>(
    io: S,
    version: RcVersion,
    flags: StdioFlags,
    runner: Runner,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (conn, mut incoming) = Connection::serve(io);
    let stderr_wanted = flags.stderr && !flags.tty;
    let mut expected = vec!["error"];
    if flags.stdin {
        expected.push("stdin");
    }
    if flags.stdout {
        expected.push("stdout");
    }
    if stderr_wanted {
        expected.push("stderr");
    }
    if flags.tty && version >= RcVersion::V3 {
        expected.push("resize");
    }

    let mut streams: HashMap<String, IncomingStream> = HashMap::new();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while !expected.iter().all(|t| streams.contains_key(*t)) {
        tokio::select! {
            s = incoming.recv() => {
                let Some(s) = s else { conn.shutdown().await; return };
                match s.header("streamtype") {
                    Some(t @ ("error" | "stdin" | "stdout" | "stderr" | "resize")) if !streams.contains_key(t) => {
                        streams.insert(t.to_string(), s);
                    }
                    _ => { let _ = s.writer.reset(rst::PROTOCOL_ERROR).await; }
                }
            }
            _ = &mut deadline => { conn.shutdown().await; return; }
            _ = shutdown.cancelled() => { conn.shutdown().await; return; }
        }
    }
    // Streams opened after this point are refused by the connection.
    drop(incoming);

    let gone = shutdown.child_token();
    let watcher = tokio::spawn({
        let (gone, conn_gone) = (gone.clone(), conn.gone());
        async move {
            conn_gone.cancelled().await;
            gone.cancel();
        }
    });

    let mut tasks = Vec::new();
    let mut io = SessionIo::default();
    if let Some(s) = streams.remove("stdin") {
        let (tx, rx) = mpsc::channel(16);
        io.stdin = Some(rx);
        tasks.push(tokio::spawn(pump_from_stream(s.reader, tx)));
    }
    if let Some(s) = streams.remove("resize") {
        let (tx, rx) = mpsc::channel(8);
        io.resize = Some(rx);
        tasks.push(tokio::spawn(pump_resize(s.reader, tx)));
    }
    let mut outputs = Vec::new();
    for (name, wanted) in [("stdout", flags.stdout), ("stderr", stderr_wanted)] {
        if let Some(s) = streams.remove(name) {
            let (tx, rx) = mpsc::channel(16);
            if wanted {
                if name == "stdout" {
                    io.stdout = Some(tx);
                } else {
                    io.stderr = Some(tx);
                }
            }
            outputs.push(tokio::spawn(pump_to_stream(rx, s.writer)));
        }
    }
    let error_stream = streams.remove("error");

    let outcome = runner.run(flags.tty, io, gone.clone()).await;
    for t in outputs {
        let _ = t.await;
    }
    for t in tasks {
        t.abort();
    }
    if let (Some(outcome), Some(err)) = (outcome, error_stream) {
        if let Some(bytes) = outcome.error_channel_bytes(version) {
            let _ = err.writer.write(Bytes::from(bytes)).await;
        }
        let _ = err.writer.close().await;
        conn.wait_peer_close(CLOSE_GRACE).await;
    }
    watcher.abort();
    conn.shutdown().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn resize_messages_split_and_batched() {
        let mut p = ResizeParser::default();
        assert_eq!(p.push(b"{\"Width\":80,"), vec![]);
        assert_eq!(
            p.push(b"\"Height\":24}\n{\"Width\":100,\"Height\":30}\n"),
            vec![TermSize { width: 80, height: 24 }, TermSize { width: 100, height: 30 }]
        );
        assert_eq!(p.push(b"junk"), vec![]);
        assert_eq!(p.push(b"{\"Width\":1,\"Height\":2}"), vec![TermSize { width: 1, height: 2 }]);
    }
}
