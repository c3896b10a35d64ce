//! A connection's graceful end: the close frame out behind what is queued,
//! what the client still sends read and dropped until it closes too.

use std::task::Poll;
use std::time::Duration;

use tokio::io::ReadBuf;

use super::Outbox;

impl Outbox {
    /// Ends the connection gracefully: writes out what is queued (the
    /// close frame last), shuts the write side, and reads and drops what
    /// the client still sends until it closes too, within `limit` and
    /// `max_discard` bytes. Closing a socket with unread bytes in it resets
    /// the connection, and a reset loses what was still on its way to the
    /// client: the close frame.
    pub async fn linger(&self, limit: Duration, max_discard: usize) {
        let mut shut = false;
        let mut discarded = 0usize;
        // Only at the end of a connection.
        let mut buf = vec![0u8; 16 * 1024];
        let linger = std::future::poll_fn(|cx| {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let Some(io) = inner.io.as_mut() else {
                return Poll::Ready(());
            };
            if !shut {
                match inner.queue.drain(io.as_mut(), cx) {
                    Poll::Ready(Ok(())) => shut = io.as_mut().poll_shutdown(cx).is_ready(),
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            }
            loop {
                let mut read = ReadBuf::new(&mut buf);
                match io.as_mut().poll_read(cx, &mut read) {
                    Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => {
                        discarded += read.filled().len();
                        if discarded > max_discard {
                            return Poll::Ready(());
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        });
        let _ = tokio::time::timeout(limit, linger).await;
    }
}
