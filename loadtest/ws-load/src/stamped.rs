//! A TCP stream that notes when its data arrived: the kernel's receive
//! timestamp (`SO_TIMESTAMPNS`), read with `recvmsg`.
//!
//! The load generator shares two cores with the server. The time its own
//! task gets round to reading a frame includes its scheduling behind the
//! server (and behind its own other 9,999 sockets); the kernel's timestamp
//! is when the frame reached the client's socket, which is what a client
//! on another machine would see. ws-load reports both.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

pub struct StampedTcp {
    inner: TcpStream,
    /// Unix nanoseconds at which the data of the last read arrived (0: none yet).
    arrived_ns: AtomicU64,
}

impl StampedTcp {
    /// Turns on receive timestamps for `inner`.
    pub fn new(inner: TcpStream) -> io::Result<Self> {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and an int option of the right size.
        let rc = unsafe {
            libc::setsockopt(
                inner.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            inner,
            arrived_ns: AtomicU64::new(0),
        })
    }

    /// When the data of the last read reached the socket, in Unix
    /// nanoseconds; 0 if the kernel gave no timestamp.
    pub fn arrived_ns(&self) -> u64 {
        self.arrived_ns.load(Ordering::Relaxed)
    }

    /// One `recvmsg` into `buf`: the bytes read and the arrival timestamp, if any.
    fn recv_stamped(&self, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<(usize, u64)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for a few control messages, aligned for `cmsghdr`.
        let mut control = [0u64; 16];
        // SAFETY: msghdr is plain data; every pointer set below outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: the descriptor is open; iov and control point into live buffers.
        let n = unsafe { libc::recvmsg(self.inner.as_raw_fd(), &raw mut msg, 0) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        let mut stamp = 0;
        // SAFETY: walks the control messages the kernel wrote into `control`.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    stamp = u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000
                        + u64::try_from(ts.tv_nsec).unwrap_or(0);
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        Ok((n, stamp))
    }
}

impl AsyncRead for StampedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            // SAFETY: recvmsg only writes bytes; `assume_init` covers what it wrote.
            let unfilled = unsafe { buf.unfilled_mut() };
            match this
                .inner
                .try_io(Interest::READABLE, || this.recv_stamped(unfilled))
            {
                Ok((n, stamp)) => {
                    // SAFETY: the kernel initialised the first `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    if stamp != 0 {
                        this.arrived_ns.store(stamp, Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for StampedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
