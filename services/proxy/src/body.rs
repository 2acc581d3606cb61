//! Bodies that flow through the proxy without buffering: counted (for the audit record), closed
//! when their token is revoked, and reporting how they ended exactly once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Inner = Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>;

/// How a streamed body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Delivered to the end.
    Complete,
    /// The upstream failed mid-body.
    Failed,
    /// The client went away (the body was dropped unfinished).
    Abandoned,
    /// Cut by kubegate (token revoked, shutdown).
    Cut,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Complete => "complete",
            Ending::Failed => "upstream error",
            Ending::Abandoned => "client went away",
            Ending::Cut => "closed by kubegate",
        }
    }
}

type OnDone = Box<dyn FnOnce(u64, Ending) + Send>;

/// The response body of every answer the proxy gives.
pub struct ProxyBody {
    inner: Option<Inner>,
    full: Option<Bytes>,
    bytes: u64,
    on_done: Option<OnDone>,
    cut: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("stream closed by kubegate: {0}")]
pub struct CutError(&'static str);

impl ProxyBody {
    pub fn full(bytes: Bytes) -> ProxyBody {
        ProxyBody { inner: None, full: Some(bytes), bytes: 0, on_done: None, cut: None }
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::full(Bytes::new())
    }

    /// Streams `body` as it comes.
    pub fn stream<B>(body: B) -> ProxyBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        ProxyBody {
            inner: Some(Box::pin(body.map_err(Into::into))),
            full: None,
            bytes: 0,
            on_done: None,
            cut: None,
        }
    }

    /// Calls `f(bytes sent, how it ended)` once, when the body ends or is dropped.
    pub fn on_done(mut self, f: impl FnOnce(u64, Ending) + Send + 'static) -> ProxyBody {
        self.on_done = Some(Box::new(f));
        self
    }

    /// Ends the body (as an error, so the client sees the stream break) when `token` is cancelled.
    pub fn cut_by(mut self, token: CancellationToken) -> ProxyBody {
        self.cut = Some(Box::pin(token.cancelled_owned()));
        self
    }

    fn finish(&mut self, ending: Ending) {
        if let Some(f) = self.on_done.take() {
            f(self.bytes, ending);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // A writer that knows the length (hyper's HTTP/1.1) stops once the body says it has
        // ended, and drops it without asking for its end: nothing was left, so it is complete.
        let ending = if self.is_end_stream() { Ending::Complete } else { Ending::Abandoned };
        self.finish(ending);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(cut) = this.cut.as_mut()
            && cut.as_mut().poll(cx).is_ready()
        {
            this.inner = None;
            this.full = None;
            this.finish(Ending::Cut);
            return Poll::Ready(Some(Err(Box::new(CutError("token revoked or shutting down")))));
        }
        if let Some(bytes) = this.full.take() {
            this.bytes += bytes.len() as u64;
            if bytes.is_empty() {
                this.finish(Ending::Complete);
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        let Some(inner) = this.inner.as_mut() else {
            this.finish(Ending::Complete);
            return Poll::Ready(None);
        };
        match inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.inner = None;
                this.finish(Ending::Failed);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.inner = None;
                this.finish(Ending::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match (&self.inner, &self.full) {
            (None, None) => true,
            (None, Some(b)) => b.is_empty() && self.cut.is_none(),
            (Some(inner), _) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.full) {
            (None, Some(b)) => SizeHint::with_exact(b.len() as u64),
            (Some(inner), _) => inner.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

/// A request body counted on its way upstream.
pub struct CountingBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> CountingBody<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>) -> CountingBody<B> {
        CountingBody { inner, count }
    }
}

impl<B> Body for CountingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn reports_bytes_and_ending_once() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let body =
            ProxyBody::full(Bytes::from_static(b"hello")).on_done(move |n, e| s.lock().unwrap().push((n, e)));
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"hello");
        assert_eq!(*seen.lock().unwrap(), vec![(5, Ending::Complete)]);
    }

    #[tokio::test]
    async fn a_dropped_stream_is_abandoned_and_a_cut_one_breaks() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
        let token = CancellationToken::new();
        let mut body =
            ProxyBody::stream(rx).cut_by(token.clone()).on_done(move |n, e| s.lock().unwrap().push((n, e)));
        tx.send_data(Bytes::from_static(b"abc")).await.unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"abc"));
        token.cancel();
        assert!(body.frame().await.unwrap().is_err());
        drop(body);
        assert_eq!(*seen.lock().unwrap(), vec![(3, Ending::Cut)]);

        let seen2 = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen2.clone();
        let (_tx, rx) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
        drop(ProxyBody::stream(rx).on_done(move |n, e| s2.lock().unwrap().push((n, e))));
        assert_eq!(*seen2.lock().unwrap(), vec![(0, Ending::Abandoned)]);
    }

    /// What hyper's HTTP/1.1 writer does with a body of known length: polls frames until the
    /// body says it has ended, then drops it without polling for its end. That is a complete
    /// answer, not a client that went away.
    #[tokio::test]
    async fn a_body_dropped_once_it_says_it_ended_is_complete() {
        for (body, sent) in [
            (ProxyBody::stream(http_body_util::Full::new(Bytes::from_static(b"hello"))), 5),
            (ProxyBody::full(Bytes::from_static(b"filtered list")), 13),
            // Empty from the start (a HEAD, a 204): never polled at all.
            (ProxyBody::stream(http_body_util::Empty::<Bytes>::new()), 0),
        ] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s = seen.clone();
            let mut body = body.on_done(move |n, e| s.lock().unwrap().push((n, e)));
            let mut got = 0;
            while !body.is_end_stream() {
                got += body.frame().await.unwrap().unwrap().into_data().unwrap().len();
            }
            drop(body);
            assert_eq!((got, seen.lock().unwrap().clone()), (sent, vec![(sent as u64, Ending::Complete)]));
        }
    }
}
