//! Typed request/reply over core NATS, for the few synchronous questions between services (the
//! kubeconfig service asking identity for a token). Replies are `{"ok": …}` or `{"error": …}`.

use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::connection::Bus;

/// A failure the answering service reports, with an HTTP-like status to pass on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcFailure {
    pub status: u16,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no service answers on {0}")]
    NoResponders(String),
    #[error("no answer on {subject} within {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    #[error("request on {subject} failed: {message}")]
    Transport { subject: String, message: String },
    #[error("answer on {subject} is not valid: {message}")]
    BadReply { subject: String, message: String },
    #[error(transparent)]
    Remote(#[from] RpcFailure),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Reply<T> {
    Ok(T),
    Error(RpcFailure),
}

/// Header carrying the correlation id of the request that caused an RPC.
pub const CORRELATION_HEADER: &str = "Kubegate-Correlation-Id";

/// The reply subject of one RPC request: `prefix` and the unique last token of a fresh inbox.
///
/// The answer does not come to the connection's inbox, where the server would have to let the
/// answering service publish (`allow_responses`). NATS 2.9 remembers every message delivered to
/// a connection with that permission for the permission's lifetime, and once it remembers more
/// than 4,096 it walks all of them on every delivery: identity, which also follows its own
/// stream, spent more and more per download under load (~1.6 ms of the server's CPU per download
/// after ~20,000 of them).
fn rpc_reply_subject(prefix: &str, inbox: &str) -> String {
    let unique = inbox.rsplit('.').next().unwrap_or(inbox);
    format!("{prefix}.{unique}")
}

impl Bus {
    /// Sends `request` to `subject` and waits up to `timeout` for the typed answer.
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &str,
        request: &Req,
        correlation_id: &str,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| RpcError::Transport { subject: subject.to_string(), message: e.to_string() })?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(CORRELATION_HEADER, correlation_id);
        if kubegate_telemetry::tracing_enabled() {
            for (k, v) in kubegate_telemetry::propagation::current_context_pairs() {
                headers.insert(k.as_str(), v.as_str());
            }
        }
        // A request nobody received (no responder subscribed yet, e.g. the moment NATS comes
        // back and the services re-subscribe) is sent again until `timeout`; one that may have
        // been received (timed out) is not, as the responder may have acted on it.
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(25);
        let msg = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut req = async_nats::Request::new()
                .payload(body.clone().into())
                .headers(headers.clone())
                .timeout(Some(left.max(Duration::from_millis(1))));
            if let Some(prefix) = self.rpc_reply_subject_prefix() {
                req = req.inbox(rpc_reply_subject(prefix, &self.client().new_inbox()));
            }
            let error = match self.client().send_request(subject.to_string(), req).await {
                Ok(msg) => break msg,
                Err(e) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => RpcError::NoResponders(subject.to_string()),
                    async_nats::RequestErrorKind::TimedOut => {
                        return Err(RpcError::Timeout { subject: subject.to_string(), timeout });
                    }
                    _ => {
                        return Err(RpcError::Transport {
                            subject: subject.to_string(),
                            message: e.to_string(),
                        });
                    }
                },
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(error);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(400));
        };
        match serde_json::from_slice::<Reply<Resp>>(&msg.payload) {
            Ok(Reply::Ok(v)) => Ok(v),
            Ok(Reply::Error(f)) => Err(RpcError::Remote(f)),
            Err(e) => Err(RpcError::BadReply { subject: subject.to_string(), message: e.to_string() }),
        }
    }

    /// Answers requests on `subject` (in queue group `queue`, so replicas share the work) with
    /// `handler`, until `shutdown`. Each request is handled in its own task.
    pub async fn serve<Req, Resp, F, Fut>(
        &self,
        subject: &str,
        queue: &str,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<(), RpcError>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req, String) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Resp, RpcFailure>> + Send + 'static,
    {
        let mut sub = self
            .client()
            .queue_subscribe(subject.to_string(), queue.to_string())
            .await
            .map_err(|e| RpcError::Transport { subject: subject.to_string(), message: e.to_string() })?;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = sub.next() => match m { Some(m) => m, None => break },
            };
            let Some(reply_to) = msg.reply.clone() else { continue };
            let client = self.client().clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let correlation = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(CORRELATION_HEADER))
                    .map(|v| v.as_str().chars().take(128).collect::<String>())
                    .unwrap_or_default();
                // The caller's trace continues here when traces are exported.
                let span = kubegate_telemetry::tracing_enabled().then(|| {
                    let span = tracing::info_span!("rpc", otel.name = "nats-request");
                    let pairs: Vec<(String, String)> = ["traceparent", "tracestate"]
                        .iter()
                        .filter_map(|k| {
                            let v = msg.headers.as_ref()?.get(*k)?;
                            Some((k.to_string(), v.as_str().to_string()))
                        })
                        .collect();
                    kubegate_telemetry::propagation::adopt_pairs_parent(&span, &pairs);
                    span
                });
                let handled = async {
                    match serde_json::from_slice::<Req>(&msg.payload) {
                        Ok(req) => handler(req, correlation).await,
                        Err(e) => Err(RpcFailure { status: 400, message: format!("invalid request: {e}") }),
                    }
                };
                let result = match span {
                    Some(span) => tracing::Instrument::instrument(handled, span).await,
                    None => handled.await,
                };
                let reply = match result {
                    Ok(v) => Reply::Ok(v),
                    Err(f) => Reply::Error(f),
                };
                if let Ok(body) = serde_json::to_vec(&reply) {
                    let _ = client.publish(reply_to, body.into()).await;
                }
            });
        }
        let _ = sub.unsubscribe().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::rpc_reply_subject;

    #[test]
    fn a_reply_subject_takes_the_inbox_unique_token_under_the_prefix() {
        assert_eq!(
            rpc_reply_subject("kubegate.rpc.replies.kubeconfig", "_INBOX_kubegate_kubeconfig.AbC123"),
            "kubegate.rpc.replies.kubeconfig.AbC123"
        );
        assert_eq!(rpc_reply_subject("p", "solo"), "p.solo");
    }
}
