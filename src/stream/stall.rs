//! A client that keeps its connection alive but never reads: its socket
//! takes whatever is written (the kernel's send buffer is megabytes, an
//! hour of points), so neither a full socket nor the per-feed lag limit
//! shows it for a long time. What shows it is the peer acknowledging
//! nothing: [`WriteStall`] asks the kernel (`TCP_INFO`) how many bytes the
//! client has acknowledged, and a connection that has had bytes waiting and
//! none acknowledged for the write timeout is stalled.
//!
//! Checked on the session's existing wake-ups (its ping timer): no timer
//! or task of its own per connection.

use std::time::Duration;

use tokio::time::Instant;

/// The client socket's descriptor, handed from the HTTP server to the
/// upgrade (a request extension), for [`WriteStall`]. It stays open as long
/// as the connection: only read while the session owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFd(pub i32);

/// What the kernel says of a socket's sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sends {
    /// Bytes the peer has acknowledged since the connection began.
    pub acked: u64,
    /// Whether bytes are in flight or still queued to be sent.
    pub waiting: bool,
}

impl Sends {
    /// Reads `TCP_INFO` of `fd`; `None` where the kernel will not say.
    #[cfg(target_os = "linux")]
    pub fn of(fd: SocketFd) -> Option<Self> {
        // SAFETY: getsockopt writes at most `len` bytes into `info`, a
        // plain struct for which all-zero bytes are valid.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let done = unsafe {
            libc::getsockopt(
                fd.0,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            )
        };
        (done == 0).then_some(Self {
            acked: info.tcpi_bytes_acked,
            waiting: info.tcpi_unacked > 0 || info.tcpi_notsent_bytes > 0,
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn of(_: SocketFd) -> Option<Self> {
        None
    }
}

/// Whether a connection's writes have stopped moving.
#[derive(Debug)]
pub struct WriteStall {
    timeout: Duration,
    acked: u64,
    /// Since when bytes have waited with none acknowledged.
    since: Option<Instant>,
}

impl WriteStall {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            acked: 0,
            since: None,
        }
    }

    /// Notes what the kernel says now; true once bytes have waited with
    /// none acknowledged for the timeout.
    pub fn stalled(&mut self, sends: Sends, now: Instant) -> bool {
        if !sends.waiting || sends.acked != self.acked {
            self.acked = sends.acked;
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        now.duration_since(since) >= self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_bytes_with_no_ack_for_the_timeout_are_a_stall() {
        let t0 = Instant::now();
        let s = |acked, waiting| Sends { acked, waiting };
        let mut stall = WriteStall::new(Duration::from_secs(30));
        assert!(
            !stall.stalled(s(100, true), t0),
            "progress: a first reading"
        );
        assert!(!stall.stalled(s(100, true), t0 + Duration::from_secs(1)));
        assert!(!stall.stalled(s(100, true), t0 + Duration::from_secs(30)));
        assert!(stall.stalled(s(100, true), t0 + Duration::from_secs(31)));
        // Any acknowledged byte starts the count again; so does an empty queue.
        assert!(!stall.stalled(s(101, true), t0 + Duration::from_secs(40)));
        assert!(!stall.stalled(s(101, true), t0 + Duration::from_secs(69)));
        assert!(!stall.stalled(s(101, false), t0 + Duration::from_secs(80)));
        assert!(!stall.stalled(s(101, true), t0 + Duration::from_secs(81)));
        assert!(stall.stalled(s(101, true), t0 + Duration::from_secs(111)));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_tells_of_a_socket_whose_peer_does_not_read() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let fd = SocketFd(client.as_raw_fd());
        let idle = Sends::of(fd).expect("TCP_INFO on Linux");
        assert!(!idle.waiting);
        // The peer reads nothing: past its window, bytes wait unacknowledged.
        client.set_nonblocking(true).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while client.write(&chunk).is_ok() {}
        let full = Sends::of(fd).unwrap();
        assert!(full.waiting, "{full:?}");
        assert!(full.acked > 0, "{full:?}");
    }
}
