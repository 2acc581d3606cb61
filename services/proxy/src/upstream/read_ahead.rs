//! A read-ahead buffer under the upstream TLS. rustls takes its input at most 4 KiB at a time, so
//! a 100 KB answer read straight from the socket cost some 25 `recvfrom` calls; reading ahead
//! into [`READ_AHEAD`] bytes and handing rustls its 4 KiB from memory costs two. Writes pass
//! straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::TryFutureExt;
use http::Uri;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// Bytes read from the socket at once, per upstream connection.
pub const READ_AHEAD: usize = 64 * 1024;

/// A connector whose connections read ahead.
#[derive(Debug, Clone)]
pub struct ReadAheadConnector<C>(pub C);

impl<C> tower::Service<Uri> for ReadAheadConnector<C>
where
    C: tower::Service<Uri>,
{
    type Response = ReadAhead<C::Response>;
    type Error = C::Error;
    type Future = futures::future::MapOk<C::Future, fn(C::Response) -> ReadAhead<C::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.0.call(uri).map_ok(ReadAhead::new as fn(C::Response) -> ReadAhead<C::Response>)
    }
}

/// A connection with a read-ahead buffer (allocated at its first read).
#[derive(Debug)]
pub struct ReadAhead<T> {
    inner: T,
    buf: Vec<u8>,
    /// `buf[start..end]` is read and not yet handed out.
    start: usize,
    end: usize,
}

impl<T> ReadAhead<T> {
    pub fn new(inner: T) -> ReadAhead<T> {
        ReadAhead { inner, buf: Vec::new(), start: 0, end: 0 }
    }
}

impl<T: Read + Unpin> Read for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut out: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start == this.end {
            if out.remaining() >= READ_AHEAD {
                // A read as large as the buffer gains nothing from it.
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.buf.is_empty() {
                this.buf = vec![0; READ_AHEAD];
            }
            let mut fill = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, fill.unfilled()))?;
            let n = fill.filled().len();
            (this.start, this.end) = (0, n);
            if n == 0 {
                // The end of the stream: a read of nothing.
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.end - this.start);
        out.put_slice(&this.buf[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<T: Write + Unpin> Write for ReadAhead<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for ReadAhead<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A socket stand-in that counts the reads that reach it.
    struct Counting<T> {
        inner: T,
        reads: Arc<AtomicUsize>,
    }

    impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<T> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut this.inner).poll_read(cx, buf)
        }
    }

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read_and_the_bytes_are_the_same() {
        let (near, mut far) = tokio::io::duplex(256 * 1024);
        let reads = Arc::new(AtomicUsize::new(0));
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&sent).await.unwrap();
        far.write_all(b"ping").await.unwrap();
        drop(far);
        // tokio I/O → hyper I/O (read-ahead) → tokio I/O, as hyper-rustls stacks them.
        let counting = TokioIo::new(Counting { inner: near, reads: reads.clone() });
        let mut conn = TokioIo::new(ReadAhead::new(counting));
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(&got[..sent.len()], sent.as_slice());
        assert_eq!(&got[sent.len()..], b"ping");
        // 100,004 bytes in 4 KiB reads: 25 of them, served by 2 reads of the socket and the
        // one that sees its end.
        assert!(
            reads.load(Ordering::Relaxed) <= 4,
            "{} reads reached the socket",
            reads.load(Ordering::Relaxed)
        );
    }

    #[tokio::test]
    async fn writes_pass_through() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut conn = TokioIo::new(ReadAhead::new(TokioIo::new(near)));
        conn.write_all(b"hello").await.unwrap();
        conn.flush().await.unwrap();
        let mut got = [0u8; 5];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }
}
