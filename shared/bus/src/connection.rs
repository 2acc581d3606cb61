//! The bus handle: a cloneable front for the one NATS connection of a process, reporting
//! connection changes on a watch channel.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::watch;

use crate::config::NatsConfig;
use crate::streams::StreamDef;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot read NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("JetStream stream {stream}: {message}")]
    Stream { stream: String, message: String },
}

/// Whether the connection is up, and since when it is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    Disconnected { since: Instant },
}

/// A cloneable handle on the process's NATS connection and JetStream context.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    state: watch::Receiver<ConnectionState>,
    /// The streams this process keeps (asked for with `ensure_stream`), by name: a producer
    /// whose stream disappears under it can recreate it (`ensure_known_stream`).
    known: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, StreamDef>>>,
    /// Where the answers to this connection's RPC requests go (`NatsConfig::rpc_reply_prefix`).
    rpc_replies: Option<std::sync::Arc<str>>,
}

impl Bus {
    /// Connects, retrying in the background if NATS is not up yet: services start and report
    /// not-ready rather than exit when NATS is away.
    pub async fn connect(config: &NatsConfig) -> Result<Bus, BusError> {
        let (tx, rx) = watch::channel(ConnectionState::Disconnected { since: Instant::now() });
        let mut opts = match &config.creds_file {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path.clone())
                .await
                .map_err(|source| BusError::Credentials { path: path.display().to_string(), source })?,
            None => async_nats::ConnectOptions::new(),
        };
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            opts = opts.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &config.tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(prefix) = &config.inbox_prefix {
            opts = opts.custom_inbox_prefix(prefix);
        }
        let name = config.name.clone();
        opts = opts
            .name(&config.name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .ping_interval(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                // Quick first retries so a short outage is bridged fast, capped at one second.
                Duration::from_millis((50 * attempts as u64).min(1000))
            })
            .event_callback(move |event| {
                let tx = tx.clone();
                let name = name.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(connection = %name, "connected to NATS");
                            tx.send_replace(ConnectionState::Connected);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(connection = %name, "disconnected from NATS");
                            tx.send_replace(ConnectionState::Disconnected { since: Instant::now() });
                        }
                        other => tracing::debug!(connection = %name, event = %other, "NATS event"),
                    }
                }
            });
        let addrs: Vec<async_nats::ServerAddr> = config
            .url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<_, std::io::Error>>()
            .map_err(|e| BusError::Connect { url: config.url.clone(), message: e.to_string() })?;
        let client = opts
            .connect(addrs)
            .await
            .map_err(|e| BusError::Connect { url: config.url.clone(), message: e.to_string() })?;
        // A short timeout: an acknowledgement lost with a dying connection is retried soon.
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .max_ack_inflight(4096)
            .build(client.clone());
        Ok(Bus {
            client,
            js,
            state: rx,
            known: Default::default(),
            rpc_replies: config.rpc_reply_prefix.as_deref().map(std::sync::Arc::from),
        })
    }

    /// Where the answers to this connection's RPC requests go, when not to its inbox.
    pub(crate) fn rpc_reply_subject_prefix(&self) -> Option<&str> {
        self.rpc_replies.as_deref()
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state(), ConnectionState::Connected)
    }

    /// Waits until connected, or `timeout` passes.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.state.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| matches!(s, ConnectionState::Connected)))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Creates the stream, or brings its limits in line with `def`.
    pub async fn ensure_stream(&self, def: &StreamDef) -> Result<(), BusError> {
        if let Ok(mut known) = self.known.lock() {
            known.insert(def.name.clone(), def.clone());
        }
        let err = |message: String| BusError::Stream { stream: def.name.clone(), message };
        match self.js.get_stream(&def.name).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(|e| err(e.to_string()))?;
                let wanted = def.to_config();
                let current = &info.config;
                if current.subjects != wanted.subjects
                    || current.max_age != wanted.max_age
                    || current.max_bytes != wanted.max_bytes
                    || current.duplicate_window != wanted.duplicate_window
                    || current.max_messages_per_subject != wanted.max_messages_per_subject
                {
                    self.js.update_stream(wanted).await.map_err(|e| err(e.to_string()))?;
                }
                Ok(())
            }
            Err(_) => {
                self.js.create_stream(def.to_config()).await.map_err(|e| err(e.to_string()))?;
                Ok(())
            }
        }
    }

    /// Ensures the stream in the background, retrying until it works or `stop`: a service
    /// starts even while NATS is away, its outbox or spool keeping what it cannot publish yet.
    pub fn ensure_stream_in_background(&self, def: StreamDef, stop: tokio_util::sync::CancellationToken) {
        let bus = self.clone();
        tokio::spawn(async move {
            loop {
                match bus.ensure_stream(&def).await {
                    Ok(()) => return,
                    Err(e) => tracing::debug!(error = %e, "stream not ensured yet; retrying"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
    }

    /// Ensures stream `name` again with the definition this process ensured it with before
    /// (false when it never did): after the stream was deleted under a running producer.
    pub async fn ensure_known_stream(&self, name: &str) -> Result<bool, BusError> {
        let def = self.known.lock().ok().and_then(|known| known.get(name).cloned());
        match def {
            Some(def) => self.ensure_stream(&def).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// The stream and its last sequence (0 when empty).
    async fn stream_and_last(&self, stream: &str) -> Result<(jetstream::stream::Stream, u64), BusError> {
        let mut s = self.js.get_stream(stream).await.map_err(|e| stream_error(stream, e))?;
        let last = s.info().await.map_err(|e| stream_error(stream, e))?.state.last_sequence;
        Ok((s, last))
    }

    /// The stream's last sequence (0 when empty).
    pub async fn last_sequence(&self, stream: &str) -> Result<u64, BusError> {
        Ok(self.stream_and_last(stream).await?.1)
    }

    /// The stream's last message: its sequence and payload (`None` when the stream is empty).
    pub async fn last_message(&self, stream: &str) -> Result<Option<(u64, bytes::Bytes)>, BusError> {
        let (s, last) = self.stream_and_last(stream).await?;
        if last == 0 {
            return Ok(None);
        }
        let message = s.get_raw_message(last).await.map_err(|e| stream_error(stream, e))?;
        Ok(Some((last, message.payload)))
    }

    /// The message at `sequence`: its subject and payload.
    pub async fn message_at(&self, stream: &str, sequence: u64) -> Result<(String, bytes::Bytes), BusError> {
        let s = self.js.get_stream_no_info(stream).await.map_err(|e| stream_error(stream, e))?;
        let message = s.get_raw_message(sequence).await.map_err(|e| stream_error(stream, e))?;
        Ok((message.subject.to_string(), message.payload))
    }

    /// The last message on `subject` in `stream`, looked for among its last `lookback` messages:
    /// its sequence and payload (`None` when there is none, the stream not existing included).
    /// Found by sequence, from the stream's end backwards: nats-server 2.9.10 crashed on a
    /// last-by-subject request (`jsMsgGetRequest`, nil pointer) during the bench's cold start,
    /// while fetching by sequence is what the relays have always done.
    pub async fn last_message_on(
        &self,
        stream: &str,
        subject: &str,
        lookback: u64,
    ) -> Result<Option<(u64, bytes::Bytes)>, BusError> {
        use jetstream::stream::LastRawMessageErrorKind;
        let (s, last) = match self.stream_and_last(stream).await {
            Ok(found) => found,
            Err(BusError::Stream { message, .. }) if message.contains("not found") => return Ok(None),
            Err(e) => return Err(e),
        };
        for sequence in (last.saturating_sub(lookback) + 1..=last).rev() {
            match s.get_raw_message(sequence).await {
                Ok(m) if m.subject.as_str() == subject => return Ok(Some((sequence, m.payload))),
                Ok(_) => {}
                // Removed by the stream's per-subject limit.
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(stream_error(stream, e)),
            }
        }
        Ok(None)
    }

    /// Publishes one message to a stream and waits for its acknowledgement; returns its sequence.
    pub async fn publish_acked(&self, subject: String, payload: bytes::Bytes) -> Result<u64, BusError> {
        let err = |e: String| BusError::Stream { stream: subject.clone(), message: e };
        let ack = self.js.publish(subject.clone(), payload).await.map_err(|e| err(e.to_string()))?;
        Ok(ack.await.map_err(|e| err(e.to_string()))?.sequence)
    }

    /// Flushes pending writes to the server.
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
    }
}

fn stream_error(stream: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Stream { stream: stream.to_string(), message: e.to_string() }
}
