//! The connection's stream as tungstenite sees it: reads pass through;
//! writes go through the outbox's queue.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{MAX_QUEUED_BYTES, Outbox};

/// The connection's stream as tungstenite sees it: reads pass through;
/// writes go through the outbox's queue, and every write is taken whole so
/// that tungstenite never holds half a frame the fan-out could write past.
pub struct SharedIo(pub Arc<Outbox>);

impl AsyncRead for SharedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut guard = self.0.lock();
        let inner = &mut *guard;
        match (inner.io.as_mut(), inner.inflater.as_mut()) {
            (Some(io), Some(inflater)) => inflater.poll_read(io.as_mut(), cx, buf),
            (Some(io), None) => io.as_mut().poll_read(cx, buf),
            // Closed: the end of the stream.
            (None, _) => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for SharedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.0.lock();
        let inner = &mut *guard;
        let Some(io) = inner.io.as_mut().filter(|_| !inner.broken) else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        if inner.queue.is_empty() {
            match io.as_mut().poll_write(cx, buf) {
                Poll::Ready(Ok(n)) if n == buf.len() => return Poll::Ready(Ok(n)),
                Poll::Ready(Ok(n)) => inner.queue.push(Bytes::copy_from_slice(&buf[n..])),
                Poll::Pending => inner.queue.push(Bytes::copy_from_slice(buf)),
                Poll::Ready(Err(e)) => {
                    inner.broken = true;
                    return Poll::Ready(Err(e));
                }
            }
            return Poll::Ready(Ok(buf.len()));
        }
        if inner.queue.bytes + buf.len() > MAX_QUEUED_BYTES {
            // A client that reads nothing and keeps sending (pings, whose
            // pongs would pile up here): make room first, else tungstenite
            // keeps the frames, within its own write-buffer limit.
            match inner.queue.drain(io.as_mut(), cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    inner.broken = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
        inner.queue.push(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    /// Writes out the queue, the fan-out's frames included.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.0.lock();
        let inner = &mut *guard;
        let Some(io) = inner.io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        if let Err(e) = std::task::ready!(inner.queue.drain(io.as_mut(), cx)) {
            inner.broken = true;
            return Poll::Ready(Err(e));
        }
        io.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        match self.0.lock().io.as_mut() {
            Some(io) => io.as_mut().poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The session's stream is the socket's owner: when it goes, so does the
/// socket, whoever still holds the outbox.
impl Drop for SharedIo {
    fn drop(&mut self) {
        self.0.close();
    }
}
