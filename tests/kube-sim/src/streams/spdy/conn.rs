//! The server side of a SPDY/3.1 connection: one task reads frames and dispatches them to the
//! streams the peer opens, one task owns the socket's write half (and the header compressor) and
//! writes frames in the order they are queued.
//!
//! Flow control: windows are always accounted, but this endpoint waits on them (and grants
//! WINDOW_UPDATEs) only once the peer has shown it takes part in flow control by sending SETTINGS
//! or WINDOW_UPDATE. Kubernetes' own SPDY library never does, so towards kubectl this endpoint
//! behaves like the kubelet: it neither waits nor sends window updates.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::frame::{
    FLAG_FIN, Frame, FrameError, HeaderList, SETTINGS_INITIAL_WINDOW_SIZE, decode_header_block,
    encode_header_block, rst,
};
use super::zlib::{HeaderCompressor, HeaderDecompressor, ZlibError};

/// Initial per-stream and per-session window of SPDY/3.1.
pub const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Largest DATA payload this endpoint sends in one frame.
const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Inbound DATA frames buffered per stream before the reader waits for the consumer.
const INBOUND_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("the connection is closed")]
    Closed,
    #[error("the peer reset stream {0}")]
    Reset(u32),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Zlib(#[from] ZlibError),
}

enum Out {
    Frame(Frame),
    /// SYN_REPLY with an empty header block, compressed by the writer so that blocks enter the
    /// zlib stream in wire order.
    Reply {
        stream_id: u32,
    },
    Shutdown,
}

struct StreamState {
    window: std::sync::Mutex<i64>,
    reset: CancellationToken,
    fin_sent: AtomicBool,
}

struct Shared {
    tx: mpsc::Sender<Out>,
    flow_aware: AtomicBool,
    session_window: std::sync::Mutex<i64>,
    initial_window: std::sync::Mutex<i64>,
    window_changed: Notify,
    streams: std::sync::Mutex<HashMap<u32, Arc<StreamState>>>,
    /// Cancelled when the connection is gone (peer closed, I/O error, or shutdown).
    gone: CancellationToken,
}

impl Shared {
    async fn queue(&self, out: Out) -> Result<(), ConnError> {
        self.tx.send(out).await.map_err(|_| ConnError::Closed)
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<StreamState>>> {
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A stream the peer opened (it has already been answered with SYN_REPLY).
pub struct IncomingStream {
    pub id: u32,
    pub headers: HeaderList,
    pub reader: StreamReader,
    pub writer: StreamWriter,
}

impl IncomingStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::frame::header(&self.headers, name)
    }
}

/// The inbound half of a stream: DATA payloads until the peer's FIN or RST.
pub struct StreamReader {
    id: u32,
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
}

impl StreamReader {
    /// The next DATA payload, or `None` at FIN, RST or connection end.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let data = self.rx.recv().await?;
        if self.shared.flow_aware.load(Ordering::Acquire) && !data.is_empty() {
            let delta = data.len() as u32;
            // Grant the window back once the payload is consumed: per stream and per session.
            let _ = self.shared.queue(Out::Frame(Frame::WindowUpdate { stream_id: self.id, delta })).await;
            let _ = self.shared.queue(Out::Frame(Frame::WindowUpdate { stream_id: 0, delta })).await;
        }
        Some(data)
    }
}

/// The outbound half of a stream. Cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    state: Arc<StreamState>,
    shared: Arc<Shared>,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Cancelled when the peer resets this stream or the connection goes away.
    pub fn reset_token(&self) -> CancellationToken {
        self.state.reset.clone()
    }

    pub fn is_reset(&self) -> bool {
        self.state.reset.is_cancelled()
    }

    /// Sends `data` as one or more DATA frames, honouring flow control when the peer uses it.
    pub async fn write(&self, mut data: Bytes) -> Result<(), ConnError> {
        while !data.is_empty() {
            if self.state.reset.is_cancelled() {
                return Err(ConnError::Reset(self.id));
            }
            if self.shared.gone.is_cancelled() {
                return Err(ConnError::Closed);
            }
            let n = self.reserve(data.len().min(MAX_DATA_CHUNK)).await?;
            let chunk = data.split_to(n);
            self.shared
                .queue(Out::Frame(Frame::Data { stream_id: self.id, fin: false, data: chunk }))
                .await?;
        }
        Ok(())
    }

    /// Half-closes the stream (an empty DATA frame with FIN). Idempotent.
    pub async fn close(&self) -> Result<(), ConnError> {
        if self.state.fin_sent.swap(true, Ordering::AcqRel) || self.state.reset.is_cancelled() {
            return Ok(());
        }
        self.shared.queue(Out::Frame(Frame::Data { stream_id: self.id, fin: true, data: Bytes::new() })).await
    }

    /// Resets the stream.
    pub async fn reset(&self, status: u32) -> Result<(), ConnError> {
        if self.state.reset.is_cancelled() {
            return Ok(());
        }
        self.state.reset.cancel();
        self.shared.queue(Out::Frame(Frame::RstStream { stream_id: self.id, status })).await
    }

    /// Takes up to `want` bytes of send window, waiting for it if the peer does flow control.
    async fn reserve(&self, want: usize) -> Result<usize, ConnError> {
        loop {
            let notified = self.shared.window_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut stream_w = lock(&self.state.window);
                let mut session_w = lock(&self.shared.session_window);
                let enforce = self.shared.flow_aware.load(Ordering::Acquire);
                let available = (*stream_w).min(*session_w);
                if !enforce || available > 0 {
                    let n = if enforce { want.min(available as usize) } else { want };
                    *stream_w -= n as i64;
                    *session_w -= n as i64;
                    return Ok(n);
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = self.state.reset.cancelled() => return Err(ConnError::Reset(self.id)),
                _ = self.shared.gone.cancelled() => return Err(ConnError::Closed),
            }
        }
    }
}

/// Handle on a served connection. Dropping it tears the connection down.
pub struct Connection {
    shared: Arc<Shared>,
    stop: CancellationToken,
    _guard: DropGuard,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Connection {
    /// Starts serving `io`; streams the peer opens arrive on the returned receiver.
    pub fn serve<S>(io: S) -> (Connection, mpsc::Receiver<IncomingStream>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (tx, rx) = mpsc::channel(64);
        let gone = CancellationToken::new();
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            tx,
            flow_aware: AtomicBool::new(false),
            session_window: std::sync::Mutex::new(DEFAULT_WINDOW),
            initial_window: std::sync::Mutex::new(DEFAULT_WINDOW),
            window_changed: Notify::new(),
            streams: std::sync::Mutex::new(HashMap::new()),
            gone: gone.clone(),
        });
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        let writer = tokio::spawn(write_loop(write_half, rx, gone.clone(), stop.clone()));
        let reader = tokio::spawn(read_loop(read_half, shared.clone(), incoming_tx, stop.clone()));
        let guard = stop.clone().drop_guard();
        (Connection { shared, stop, _guard: guard, reader, writer }, incoming_rx)
    }

    /// Cancelled once the connection is gone: the peer closed it, an I/O error occurred, or
    /// [`Connection::shutdown`] ran.
    pub fn gone(&self) -> CancellationToken {
        self.shared.gone.clone()
    }

    /// Waits until the peer closes the connection, at most `timeout`.
    pub async fn wait_peer_close(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.shared.gone.cancelled()).await;
    }

    /// Flushes queued frames, closes the socket and stops both tasks.
    pub async fn shutdown(self) {
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), self.shared.queue(Out::Shutdown)).await;
        let mut writer = self.writer;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut writer).await.is_err() {
            writer.abort();
        }
        self.stop.cancel();
        let _ = self.reader.await;
        self.shared.gone.cancel();
    }
}

async fn write_loop<W: AsyncWrite>(
    io: W,
    mut rx: mpsc::Receiver<Out>,
    gone: CancellationToken,
    stop: CancellationToken,
) {
    tokio::pin!(io);
    let mut compressor = HeaderCompressor::default();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let empty_headers = encode_header_block(&[]);
    'outer: loop {
        let first = tokio::select! {
            out = rx.recv() => out,
            _ = stop.cancelled() => None,
        };
        let Some(mut out) = first else { break };
        loop {
            let frame = match out {
                Out::Shutdown => {
                    let _ = io.write_all(&buf).await;
                    let _ = io.flush().await;
                    break 'outer;
                }
                Out::Frame(frame) => frame,
                Out::Reply { stream_id } => match compressor.compress(&empty_headers) {
                    Ok(block) => Frame::SynReply { stream_id, fin: false, header_block: block.into() },
                    Err(_) => break 'outer,
                },
            };
            if frame.encode(&mut buf).is_err() {
                break 'outer;
            }
            if buf.len() >= 64 * 1024 {
                break;
            }
            match rx.try_recv() {
                Ok(next) => out = next,
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            r = async { io.write_all(&buf).await?; io.flush().await } => r,
            _ = stop.cancelled() => break,
        };
        buf.clear();
        if written.is_err() {
            break;
        }
    }
    gone.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), io.shutdown()).await;
}

struct ReaderState {
    shared: Arc<Shared>,
    decompressor: HeaderDecompressor,
    inbound: HashMap<u32, mpsc::Sender<Bytes>>,
    last_peer_stream: u32,
    peer_went_away: bool,
    incoming: mpsc::Sender<IncomingStream>,
}

async fn read_loop<R: AsyncRead>(
    io: R,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<IncomingStream>,
    stop: CancellationToken,
) {
    tokio::pin!(io);
    let mut state = ReaderState {
        shared: shared.clone(),
        decompressor: HeaderDecompressor::default(),
        inbound: HashMap::new(),
        last_peer_stream: 0,
        peer_went_away: false,
        incoming,
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'outer: loop {
        loop {
            match Frame::decode(&mut buf) {
                Ok(Some(frame)) => {
                    let handled = tokio::select! {
                        r = state.handle(frame) => r,
                        _ = stop.cancelled() => break 'outer,
                    };
                    if handled.is_err() {
                        break 'outer;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let _ = shared
                        .queue(Out::Frame(Frame::GoAway {
                            last_good_stream_id: state.last_peer_stream,
                            status: 1,
                        }))
                        .await;
                    break 'outer;
                }
            }
        }
        let n = tokio::select! {
            r = io.read_buf(&mut buf) => r,
            _ = stop.cancelled() => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The peer is gone: end every inbound stream and wake every writer.
    state.inbound.clear();
    for s in shared.lock_streams().values() {
        s.reset.cancel();
    }
    shared.gone.cancel();
    shared.window_changed.notify_waiters();
}

impl ReaderState {
    async fn handle(&mut self, frame: Frame) -> Result<(), ConnError> {
        match frame {
            Frame::SynStream { stream_id, flags, header_block, .. } => {
                let headers = decode_header_block(&self.decompressor.decompress(&header_block)?);
                let valid = stream_id % 2 == 1 && stream_id > self.last_peer_stream;
                if !valid {
                    let status = if stream_id <= self.last_peer_stream {
                        rst::STREAM_IN_USE
                    } else {
                        rst::PROTOCOL_ERROR
                    };
                    return self.shared.queue(Out::Frame(Frame::RstStream { stream_id, status })).await;
                }
                self.last_peer_stream = stream_id;
                let Ok(headers) = headers else {
                    return self
                        .shared
                        .queue(Out::Frame(Frame::RstStream { stream_id, status: rst::PROTOCOL_ERROR }))
                        .await;
                };
                if self.peer_went_away {
                    return self
                        .shared
                        .queue(Out::Frame(Frame::RstStream { stream_id, status: rst::REFUSED_STREAM }))
                        .await;
                }
                let state = Arc::new(StreamState {
                    window: std::sync::Mutex::new(*lock(&self.shared.initial_window)),
                    reset: self.shared.gone.child_token(),
                    fin_sent: AtomicBool::new(false),
                });
                self.shared.lock_streams().insert(stream_id, state.clone());
                let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
                if flags & FLAG_FIN == 0 {
                    self.inbound.insert(stream_id, tx);
                }
                self.shared.queue(Out::Reply { stream_id }).await?;
                let stream = IncomingStream {
                    id: stream_id,
                    headers,
                    reader: StreamReader { id: stream_id, rx, shared: self.shared.clone() },
                    writer: StreamWriter { id: stream_id, state, shared: self.shared.clone() },
                };
                // Nobody listening for new streams any more: refuse it.
                if self.incoming.send(stream).await.is_err() {
                    self.inbound.remove(&stream_id);
                    return self
                        .shared
                        .queue(Out::Frame(Frame::RstStream { stream_id, status: rst::REFUSED_STREAM }))
                        .await;
                }
            }
            Frame::Data { stream_id, fin, data } => {
                if let Some(tx) = self.inbound.get(&stream_id)
                    && !data.is_empty()
                    && tx.send(data).await.is_err()
                {
                    // The consumer dropped its reader: discard further data.
                    self.inbound.remove(&stream_id);
                }
                if fin {
                    self.inbound.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                self.inbound.remove(&stream_id);
                if let Some(s) = self.shared.lock_streams().remove(&stream_id) {
                    s.reset.cancel();
                }
                self.shared.window_changed.notify_waiters();
            }
            Frame::Settings { entries, .. } => {
                for e in entries {
                    if e.id == SETTINGS_INITIAL_WINDOW_SIZE {
                        self.shared.flow_aware.store(true, Ordering::Release);
                        let new = i64::from(e.value);
                        let delta = {
                            let mut initial = lock(&self.shared.initial_window);
                            let delta = new - *initial;
                            *initial = new;
                            delta
                        };
                        for s in self.shared.lock_streams().values() {
                            *lock(&s.window) += delta;
                        }
                        self.shared.window_changed.notify_waiters();
                    }
                }
            }
            Frame::WindowUpdate { stream_id, delta } => {
                self.shared.flow_aware.store(true, Ordering::Release);
                if stream_id == 0 {
                    *lock(&self.shared.session_window) += i64::from(delta);
                } else if let Some(s) = self.shared.lock_streams().get(&stream_id) {
                    *lock(&s.window) += i64::from(delta);
                }
                self.shared.window_changed.notify_waiters();
            }
            Frame::Ping { id } => {
                // Only peer-initiated pings (odd ids from a client) are answered; this endpoint
                // sends none of its own.
                if id % 2 == 1 {
                    self.shared.queue(Out::Frame(Frame::Ping { id })).await?;
                }
            }
            Frame::GoAway { .. } => {
                self.peer_went_away = true;
            }
            Frame::SynReply { header_block, .. } | Frame::Headers { header_block, .. } => {
                // Keep the shared zlib stream in step even though these carry nothing we use.
                self.decompressor.decompress(&header_block)?;
            }
            Frame::Unknown { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::streams::spdy::frame::Setting;
    use std::time::Duration;

    struct Client {
        io: tokio::io::DuplexStream,
        compressor: HeaderCompressor,
        decompressor: HeaderDecompressor,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, frame: Frame) {
            let mut out = BytesMut::new();
            frame.encode(&mut out).unwrap();
            self.io.write_all(&out).await.unwrap();
        }

        async fn open(&mut self, id: u32, headers: &[(&str, &str)], fin: bool) {
            let list: Vec<(String, String)> =
                headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let block = self.compressor.compress(&encode_header_block(&list)).unwrap();
            self.send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                flags: if fin { FLAG_FIN } else { 0 },
                header_block: block.into(),
            })
            .await;
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = Frame::decode(&mut self.buf).unwrap() {
                    if let Frame::SynReply { header_block, .. } = &f {
                        let plain = self.decompressor.decompress(header_block).unwrap();
                        assert!(decode_header_block(&plain).unwrap().is_empty());
                    }
                    return Some(f);
                }
                let n = tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf))
                    .await
                    .expect("frame in time")
                    .unwrap();
                if n == 0 {
                    return None;
                }
            }
        }
    }

    fn pair() -> (Client, Connection, mpsc::Receiver<IncomingStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (conn, incoming) = Connection::serve(b);
        let client = Client {
            io: a,
            compressor: HeaderCompressor::default(),
            decompressor: HeaderDecompressor::default(),
            buf: BytesMut::new(),
        };
        (client, conn, incoming)
    }

    #[tokio::test]
    async fn streams_are_replied_and_carry_data_both_ways() {
        let (mut client, conn, mut incoming) = pair();
        client.open(1, &[("streamtype", "error")], false).await;
        client.open(3, &[("streamtype", "stdin")], false).await;
        let error = incoming.recv().await.unwrap();
        let mut stdin = incoming.recv().await.unwrap();
        assert_eq!(error.header("streamtype"), Some("error"));
        assert_eq!(stdin.id, 3);
        assert!(matches!(client.next().await, Some(Frame::SynReply { stream_id: 1, fin: false, .. })));
        assert!(matches!(client.next().await, Some(Frame::SynReply { stream_id: 3, .. })));

        client.send(Frame::Data { stream_id: 3, fin: false, data: Bytes::from_static(b"hello") }).await;
        client.send(Frame::Data { stream_id: 3, fin: true, data: Bytes::new() }).await;
        assert_eq!(stdin.reader.recv().await.unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(stdin.reader.recv().await, None, "FIN ends the inbound half");

        error.writer.write(Bytes::from(vec![7u8; 100_000])).await.unwrap();
        error.writer.close().await.unwrap();
        let mut got = 0;
        loop {
            match client.next().await.unwrap() {
                Frame::Data { stream_id: 1, fin: false, data } => got += data.len(),
                Frame::Data { stream_id: 1, fin: true, .. } => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, 100_000, "no flow-control stall for a peer that never sends WINDOW_UPDATE");
        drop(error.reader);
        conn.shutdown().await;
        assert_eq!(client.next().await, None);
    }

    #[tokio::test]
    async fn flow_control_is_honoured_once_the_peer_uses_it() {
        let (mut client, conn, mut incoming) = pair();
        client
            .send(Frame::Settings {
                flags: 0,
                entries: vec![Setting { flags: 0, id: SETTINGS_INITIAL_WINDOW_SIZE, value: 1000 }],
            })
            .await;
        client.open(1, &[("streamtype", "stdout")], false).await;
        let out = incoming.recv().await.unwrap();
        assert!(matches!(client.next().await, Some(Frame::SynReply { .. })));
        let writer = out.writer.clone();
        let send = tokio::spawn(async move { writer.write(Bytes::from(vec![1u8; 2500])).await });
        let mut got = 0;
        while got < 1000 {
            match client.next().await.unwrap() {
                Frame::Data { data, .. } => got += data.len(),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, 1000, "stops at the window");
        assert!(!send.is_finished());
        client.send(Frame::WindowUpdate { stream_id: 1, delta: 5000 }).await;
        while got < 2500 {
            match client.next().await.unwrap() {
                Frame::Data { data, .. } => got += data.len(),
                other => panic!("unexpected {other:?}"),
            }
        }
        send.await.unwrap().unwrap();
        drop(out);
        conn.shutdown().await;
    }

    #[tokio::test]
    async fn ping_reset_and_peer_close() {
        let (mut client, conn, mut incoming) = pair();
        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
        client.open(1, &[("streamtype", "data")], false).await;
        let s = incoming.recv().await.unwrap();
        assert!(matches!(client.next().await, Some(Frame::SynReply { .. })));
        client.send(Frame::RstStream { stream_id: 1, status: rst::CANCEL }).await;
        tokio::time::timeout(Duration::from_secs(5), s.writer.reset_token().cancelled()).await.unwrap();
        assert!(matches!(s.writer.write(Bytes::from_static(b"x")).await, Err(ConnError::Reset(1))));
        // A stream id going backwards is refused.
        client.open(1, &[("streamtype", "data")], false).await;
        assert!(matches!(client.next().await, Some(Frame::RstStream { stream_id: 1, .. })));
        let gone = conn.gone();
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), gone.cancelled()).await.unwrap();
        conn.shutdown().await;
    }
}
