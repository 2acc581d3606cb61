//! exec, attach and port-forward: the upgrade request goes upstream over HTTP/1.1; only a 101
//! with a subprotocol the client offered turns into a tunnel, copied byte for byte both ways
//! until either side closes (or the token is revoked). Any other answer is passed back and the
//! client connection closed, so nothing the client sends next can reach the API server
//! (CVE-2018-1002105). Redirects are never followed (CVE-2020-8559).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kubegate_events::audit::{AuditEvent, SessionEnded, SessionKind, SessionStarted};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Proxy;
use crate::body::{BoxError, ProxyBody};
use crate::cache::sessions::Holder;
use crate::cache::{Authenticated, Environment};
use crate::kubernetes::{Draft, upstream_error};
use crate::status::Refusal;
use crate::upstream::Upstream;

const STREAM_PROTOCOL_VERSION: &str = "x-stream-protocol-version";

/// The values of a comma-separated, possibly repeated header.
fn offered(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward(
    proxy: &Arc<Proxy>,
    mut req: Request<Incoming>,
    headers: HeaderMap,
    uri: Uri,
    env: &Environment,
    upstream: &Upstream,
    who: &Authenticated,
    draft: &mut Draft,
) -> Result<Response<ProxyBody>, Refusal> {
    let websocket_offers = offered(req.headers(), SEC_WEBSOCKET_PROTOCOL.as_str());
    let spdy_offers = offered(req.headers(), STREAM_PROTOCOL_VERSION);
    let is_websocket = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("websocket"))
        .unwrap_or(false);
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut upstream_req =
        Request::builder().method(req.method().clone()).uri(uri).version(http::Version::HTTP_11);
    if let Some(h) = upstream_req.headers_mut() {
        *h = headers;
    }
    let upstream_req = upstream_req
        .body(http_body_util::Empty::new().map_err(|e| -> BoxError { match e {} }).boxed())
        .map_err(|e| Refusal::BadRequest(e.to_string()))?;
    let mut response = match tokio::time::timeout(
        proxy.limits.request_timeout,
        upstream.upgrade_client.request(upstream_req),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(upstream_error(env, &e)),
        Err(_) => {
            return Err(Refusal::GatewayTimeout(format!(
                "environment {} did not answer the upgrade in time",
                env.id
            )));
        }
    };

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Pass the refusal on, then close the client connection.
        let status = response.status().as_u16();
        let (mut parts, body) = response.into_parts();
        crate::headers::strip_response_hop_by_hop(parts.status, &mut parts.headers);
        parts.headers.insert(CONNECTION, HeaderValue::from_static("close"));
        let audit = proxy.auditor.clone();
        let record = draft.record(status, true, Some("upgrade refused by the API server".into()), 0);
        let (actor, request_id) = (draft.actor(), draft.request_id.clone());
        let body = ProxyBody::stream(body).on_done(move |bytes, _| {
            let mut record = record;
            if let AuditEvent::RequestAudited(r) = &mut record {
                r.bytes_out = bytes;
            }
            audit.record(record, actor, request_id);
        });
        return Ok(Response::from_parts(parts, body));
    }

    // The API server may only pick what the client offered.
    let protocol = if is_websocket {
        let chosen =
            response.headers().get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).map(str::to_string);
        match chosen {
            Some(p) if websocket_offers.contains(&p) => p,
            Some(p) => {
                return Err(Refusal::BadGateway(format!(
                    "the API server chose subprotocol {p:?}, which the client did not offer"
                )));
            }
            None if websocket_offers.is_empty() => "websocket".to_string(),
            None => {
                return Err(Refusal::BadGateway(
                    "the API server accepted the upgrade without a subprotocol".into(),
                ));
            }
        }
    } else {
        let chosen =
            response.headers().get(STREAM_PROTOCOL_VERSION).and_then(|v| v.to_str().ok()).map(str::to_string);
        match chosen {
            Some(p) if spdy_offers.contains(&p) => format!("SPDY/3.1 {p}"),
            Some(p) => {
                return Err(Refusal::BadGateway(format!(
                    "the API server chose stream protocol {p:?}, which the client did not offer"
                )));
            }
            None if spdy_offers.is_empty() => "SPDY/3.1".to_string(),
            None => {
                return Err(Refusal::BadGateway(
                    "the API server accepted the upgrade without a stream protocol".into(),
                ));
            }
        }
    };

    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    if let Some(h) = answer.headers_mut() {
        *h = response.headers().clone();
    }
    let answer = answer.body(ProxyBody::empty()).map_err(|e| Refusal::Internal(e.to_string()))?;

    let kind = match draft.target.subresource.as_deref() {
        Some("attach") => SessionKind::Attach,
        Some("portforward") => SessionKind::PortForward,
        _ => SessionKind::Exec,
    };
    let (session_id, cancel) = proxy.cache.open_stream(Holder {
        token_id: who.claims.jti.as_str().into(),
        kid: who.kid.clone(),
        user_id: who.user_id,
        iat: who.claims.iat,
        environment_id: env.id,
    });
    let session_name = format!("{}-{session_id}", draft.request_id);
    proxy.auditor.record(draft.record(101, true, None, 0), draft.actor(), draft.request_id.clone());
    proxy.auditor.record(
        AuditEvent::SessionStarted(SessionStarted {
            session_id: session_name.clone(),
            request_id: draft.request_id.clone(),
            kind,
            subject: draft.subject.clone(),
            target: draft.target.clone(),
            protocol,
        }),
        draft.actor(),
        draft.request_id.clone(),
    );

    let proxy = proxy.clone();
    let actor = draft.actor();
    let request_id = draft.request_id.clone();
    let shutdown = proxy.shutdown.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let started_at = chrono::Utc::now();
        let inbound = Arc::new(AtomicU64::new(0));
        let outbound = Arc::new(AtomicU64::new(0));
        let end_reason = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Err(e) => format!("error: upgrade failed: {e}"),
            Ok((client_io, upstream_io)) => {
                let mut client_io = Counted::new(TokioIo::new(client_io), inbound.clone());
                let mut upstream_io = Counted::new(TokioIo::new(upstream_io), outbound.clone());
                tokio::select! {
                    r = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io) => match r {
                        Ok(_) => "closed".to_string(),
                        Err(e) => format!("error: {e}"),
                    },
                    _ = cancel.cancelled() => "revoked".to_string(),
                    _ = shutdown.cancelled() => "shutdown".to_string(),
                }
            }
        };
        proxy.cache.sessions.close(session_id);
        proxy.auditor.record(
            AuditEvent::SessionEnded(SessionEnded {
                session_id: session_name,
                request_id: request_id.clone(),
                kind,
                started_at,
                duration_us: started.elapsed().as_micros() as u64,
                bytes_in: inbound.load(Ordering::Relaxed),
                bytes_out: outbound.load(Ordering::Relaxed),
                end_reason,
            }),
            actor,
            request_id,
        );
    });
    Ok(answer)
}

/// Counts the bytes read from an I/O object (what it sent us).
struct Counted<T> {
    inner: T,
    read: Arc<AtomicU64>,
}

impl<T> Counted<T> {
    fn new(inner: T, read: Arc<AtomicU64>) -> Counted<T> {
        Counted { inner, read }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            self.read.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
