//! The request log tests read: what arrived (method, path, query, headers in arrival order),
//! who sent it, who it acted as, and what was answered (status, body bytes sent).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::auth::UserInfo;
use crate::streams::SimBody;

/// One logged request.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub at: SystemTime,
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`), as sent.
    pub query: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Header names (lower case) and values in arrival order; repeated headers keep their
    /// relative order.
    pub headers: Vec<(String, String)>,
    /// The authenticated user (from the token or client certificate).
    pub principal: Option<UserInfo>,
    /// The user the request acted as after impersonation (same as `principal` without it).
    pub effective: Option<UserInfo>,
    /// Response status (0 while the handler has not answered yet).
    pub status: u16,
    /// Response body bytes sent so far.
    pub body_bytes: u64,
    /// True once the response body has been sent completely.
    pub complete: bool,
}

impl LoggedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

#[derive(Debug)]
pub struct Entry {
    at: SystemTime,
    method: String,
    path: String,
    query: String,
    version: String,
    headers: Vec<(String, String)>,
    principal: OnceLock<UserInfo>,
    effective: OnceLock<UserInfo>,
    status: AtomicU16,
    body_bytes: AtomicU64,
    complete: AtomicBool,
}

impl Entry {
    pub fn set_principal(&self, u: &UserInfo) {
        let _ = self.principal.set(u.clone());
    }
    pub fn set_effective(&self, u: &UserInfo) {
        let _ = self.effective.set(u.clone());
    }
    pub fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::Relaxed);
    }
    fn snapshot(&self) -> LoggedRequest {
        LoggedRequest {
            at: self.at,
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            version: self.version.clone(),
            headers: self.headers.clone(),
            principal: self.principal.get().cloned(),
            effective: self.effective.get().cloned(),
            status: self.status.load(Ordering::Relaxed),
            body_bytes: self.body_bytes.load(Ordering::Relaxed),
            complete: self.complete.load(Ordering::Relaxed),
        }
    }
}

/// The bounded log (oldest entries drop first).
#[derive(Debug)]
pub struct RequestLog {
    entries: Mutex<VecDeque<Arc<Entry>>>,
    cap: usize,
}

impl RequestLog {
    pub fn new(cap: usize) -> RequestLog {
        RequestLog { entries: Mutex::new(VecDeque::new()), cap: cap.max(1) }
    }

    pub fn start<B>(&self, req: &http::Request<B>) -> Arc<Entry> {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let version = match req.version() {
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let entry = Arc::new(Entry {
            at: SystemTime::now(),
            method: req.method().as_str().to_string(),
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or_default().to_string(),
            version: version.to_string(),
            headers,
            principal: OnceLock::new(),
            effective: OnceLock::new(),
            status: AtomicU16::new(0),
            body_bytes: AtomicU64::new(0),
            complete: AtomicBool::new(false),
        });
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= self.cap {
            g.pop_front();
        }
        g.push_back(entry.clone());
        entry
    }

    pub fn snapshot(&self) -> Vec<LoggedRequest> {
        let g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        g.iter().map(|e| e.snapshot()).collect()
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Wraps a response body: counts the bytes sent into the log entry and, when asked to, cuts the
/// connection after half of the first data frame.
pub struct TrackedBody {
    inner: SimBody,
    entry: Option<Arc<Entry>>,
    cut: Option<Arc<Notify>>,
    pending_rest: bool,
}

impl TrackedBody {
    pub fn wrap(inner: SimBody, entry: Option<Arc<Entry>>, cut: Option<Arc<Notify>>) -> SimBody {
        if let Some(e) = &entry
            && inner.is_end_stream()
        {
            e.complete.store(true, Ordering::Relaxed);
        }
        if entry.is_none() && cut.is_none() {
            return inner;
        }
        TrackedBody { inner, entry, cut, pending_rest: false }.boxed()
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.pending_rest {
            // The connection is being cut; never finish the body.
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match (frame.into_data(), self.cut.clone()) {
                    (Ok(mut data), Some(cut)) => {
                        let half = data.len() / 2;
                        let first = data.split_to(half.max(1).min(data.len()));
                        self.pending_rest = true;
                        cut.notify_one();
                        Frame::data(first)
                    }
                    (Ok(data), None) => Frame::data(data),
                    (Err(other), _) => other,
                };
                if let (Some(e), Some(d)) = (&self.entry, frame.data_ref()) {
                    e.body_bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                if let Some(e) = &self.entry {
                    e.complete.store(true, Ordering::Relaxed);
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.pending_rest && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
