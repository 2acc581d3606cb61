//! Port-forwarding sessions: SPDY (`portforward.k8s.io`, directly or tunnelled through a
//! WebSocket) with one `error` and one `data` stream per forwarded connection, and the older
//! WebSocket channel protocol (`v4.channel.k8s.io`) with two channels per port from the query.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::PodTarget;
use super::backends::Backends;
use super::channel::{ChannelCodec, Incoming};
use super::negotiate::Framing;
use super::spdy::conn::{Connection, IncomingStream};
use super::spdy::frame::rst;

/// How long the second stream of a pair may take to arrive (the kubelet's default).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pair {
    error: Option<IncomingStream>,
    data: Option<IncomingStream>,
    since: Option<Instant>,
}

/// The request id pairing an error and a data stream; clients before request ids are derived
/// from the stream ids (the error stream is opened right before its data stream).
fn request_id(stream: &IncomingStream) -> Option<String> {
    if let Some(id) = stream.header("requestid") {
        return Some(id.to_string());
    }
    match stream.header("streamtype")? {
        "error" => Some(stream.id.to_string()),
        "data" => Some(stream.id.saturating_sub(2).to_string()),
        _ => None,
    }
}

pub async fn spdy_session<S>(io: S, target: PodTarget, backends: Arc<Backends>, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (conn, mut incoming) = Connection::serve(io);
    let mut pending: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    let target = Arc::new(target);
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            s = incoming.recv() => {
                let Some(stream) = s else { break };
                let Some(id) = request_id(&stream) else {
                    let _ = stream.writer.reset(rst::PROTOCOL_ERROR).await;
                    continue;
                };
                let pair = pending.entry(id.clone()).or_default();
                pair.since.get_or_insert_with(Instant::now);
                let slot = match stream.header("streamtype") {
                    Some("error") => &mut pair.error,
                    Some("data") => &mut pair.data,
                    _ => {
                        let _ = stream.writer.reset(rst::PROTOCOL_ERROR).await;
                        continue;
                    }
                };
                if slot.is_some() {
                    // A second stream of the same kind for one request is a protocol error.
                    let _ = stream.writer.reset(rst::PROTOCOL_ERROR).await;
                    continue;
                }
                *slot = Some(stream);
                if pair.error.is_some()
                    && pair.data.is_some()
                    && let Some(Pair { error: Some(error), data: Some(data), .. }) = pending.remove(&id)
                {
                    forwards.spawn(forward(error, data, target.clone(), backends.clone()));
                }
            }
            _ = sweep.tick() => {
                let expired: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| p.since.is_some_and(|t| t.elapsed() > PAIR_TIMEOUT))
                    .map(|(k, _)| k.clone())
                    .collect();
                for id in expired {
                    if let Some(p) = pending.remove(&id) {
                        if let Some(e) = p.error {
                            let msg = format!("timed out waiting for the data stream of request {id}");
                            let _ = e.writer.write(Bytes::from(msg)).await;
                            let _ = e.writer.close().await;
                        }
                        if let Some(d) = p.data {
                            let _ = d.writer.reset(rst::CANCEL).await;
                        }
                    }
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    forwards.abort_all();
    while forwards.join_next().await.is_some() {}
    conn.shutdown().await;
}

/// One forwarded connection: bytes between the data stream and the pod port's backend. The
/// error stream carries a message if the port cannot be reached, and is closed at the end.
async fn forward(
    error: IncomingStream,
    mut data: IncomingStream,
    target: Arc<PodTarget>,
    backends: Arc<Backends>,
) {
    let port_header = data.header("port").unwrap_or_default().to_string();
    let fail = |msg: String| async {
        let _ = error.writer.write(Bytes::from(msg)).await;
        let _ = error.writer.close().await;
        let _ = data.writer.close().await;
    };
    let Ok(port) = port_header.parse::<u16>() else {
        fail(format!("invalid port header {port_header:?}")).await;
        return;
    };
    let prefix = format!("error forwarding port {port} to pod {}/{}, uid : ", target.namespace, target.pod);
    let addr = match backends.addr(&target, port).await {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            fail(format!(
                "{prefix}failed to connect to localhost:{port} inside the pod: connect: connection refused"
            ))
            .await;
            return;
        }
        Err(e) => {
            fail(format!("{prefix}{e}")).await;
            return;
        }
    };
    let tcp = match TcpStream::connect(addr).await {
        Ok(t) => t,
        Err(e) => {
            fail(format!("{prefix}{e}")).await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let writer = data.writer.clone();
    let reset = writer.reset_token();
    let upstream = async {
        while let Some(chunk) = data.reader.recv().await {
            if to_pod.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // The client closed its side: so does the pod-side connection.
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = writer.close().await;
    };
    // The forward ends when the pod side has said all it will (as the kubelet's does): the client
    // waits for the error stream to close before it closes its local connection.
    tokio::pin!(upstream);
    tokio::pin!(downstream);
    let mut upstream_done = false;
    loop {
        tokio::select! {
            _ = &mut upstream, if !upstream_done => upstream_done = true,
            _ = &mut downstream => break,
            _ = reset.cancelled() => break,
        }
    }
    let _ = error.writer.close().await;
}

/// Port-forwarding over WebSocket channels: channel 2i carries data for `ports[i]`, channel
/// 2i+1 its errors; each channel first announces its port (little-endian u16).
pub async fn ws_channel_session<S>(
    ws: WebSocketStream<S>,
    framing: Framing,
    ports: Vec<u16>,
    target: PodTarget,
    backends: Arc<Backends>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let codec = ChannelCodec { framing, close_signal: false };
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(64);
    let mut to_pods: Vec<Option<mpsc::Sender<Bytes>>> = Vec::new();
    let mut pumps = JoinSet::new();

    for (i, port) in ports.iter().copied().enumerate() {
        let data_ch = (2 * i) as u8;
        let err_ch = data_ch + 1;
        let announce = Bytes::copy_from_slice(&port.to_le_bytes());
        let _ = out_tx.send((data_ch, announce.clone())).await;
        let _ = out_tx.send((err_ch, announce)).await;
        let conn = match backends.addr(&target, port).await {
            Ok(Some(addr)) => TcpStream::connect(addr).await.map_err(|e| e.to_string()),
            Ok(None) => Err("connect: connection refused".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match conn {
            Ok(tcp) => {
                let (mut from_pod, mut to_pod) = tcp.into_split();
                let (tx, mut rx) = mpsc::channel::<Bytes>(16);
                to_pods.push(Some(tx));
                let out = out_tx.clone();
                pumps.spawn(async move {
                    let up = async {
                        while let Some(b) = rx.recv().await {
                            if to_pod.write_all(&b).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_pod.shutdown().await;
                    };
                    let down = async {
                        let mut buf = vec![0u8; 32 * 1024];
                        loop {
                            match from_pod.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if out.send((data_ch, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    // The session for this port ends when the pod side has said all it will.
                    tokio::select! {
                        _ = down => {}
                        _ = async { up.await; std::future::pending::<()>().await } => {}
                    }
                });
            }
            Err(e) => {
                to_pods.push(None);
                let msg = format!(
                    "error forwarding port {port} to pod {}/{}, uid : failed to connect to localhost:{port} inside the pod: {e}",
                    target.namespace, target.pod
                );
                let _ = out_tx.send((err_ch, Bytes::from(msg))).await;
            }
        }
    }
    drop(out_tx);

    let client_gone = CancellationToken::new();
    let reader = tokio::spawn({
        let client_gone = client_gone.clone();
        async move {
            while let Some(Ok(msg)) = stream.next().await {
                match codec.decode(msg) {
                    Incoming::Data { channel, data } if channel % 2 == 0 => {
                        let idx = usize::from(channel / 2);
                        if let Some(Some(tx)) = to_pods.get(idx)
                            && tx.send(data).await.is_err()
                        {
                            to_pods[idx] = None;
                        }
                    }
                    Incoming::Closed => break,
                    _ => {}
                }
            }
            client_gone.cancel();
        }
    });

    let writer = async {
        while let Some((ch, data)) = out_rx.recv().await {
            if sink.send(codec.encode(ch, &data)).await.is_err() {
                return false;
            }
        }
        true
    };
    let finished = tokio::select! {
        ok = async { let ok = writer.await; while pumps.join_next().await.is_some() {} ok } => ok,
        _ = client_gone.cancelled() => false,
        _ = shutdown.cancelled() => false,
    };
    pumps.abort_all();
    if finished {
        let _ =
            sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), client_gone.cancelled()).await;
    }
    reader.abort();
}
