//! One client connection below hyper: its socket, counted while open and
//! noting its writes as progress; its idle deadline ([`Activity`]); the
//! app as the connection calls it (requests in flight; the app knows the
//! peer, [`super::caller::ForPeer`]);
//! and problem bodies for the answers hyper makes by itself
//! ([`super::bare_errors`]).

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use super::bare_errors::bare_error_answer;
use super::caller::ForPeer;
use super::problem::{Kind, Problem};
use crate::stream::stall::SocketFd;

/// Open client sockets, counted from accept to close.
#[derive(Debug, Default)]
pub(super) struct OpenSockets(AtomicUsize);

/// A client socket that gives its place back when it closes (also after a
/// WebSocket upgrade, which carries it along), and notes its writes as
/// progress ([`Activity`]).
pub(super) struct Counted {
    tcp: TcpStream,
    open: Arc<OpenSockets>,
    activity: Arc<Activity>,
    /// An answer written in place of one of hyper's bare error answers,
    /// and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

/// What a connection last did, for its idle deadline: it is closed once it
/// has had no request in hand and written nothing for the deadline. A
/// request read in full, the end of its handling and every write of an
/// answer are progress; bytes of a header that never completes are not
/// (so a client sending one a byte at a time is still closed).
pub(super) struct Activity {
    /// When progress was last made, in [`coarse_ms`].
    last: AtomicU64,
    /// Requests handed to the app and not answered yet.
    in_flight: AtomicUsize,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            last: AtomicU64::new(coarse_ms()),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn progress(&self) {
        self.last.store(coarse_ms(), Ordering::Relaxed);
    }

    /// When the connection is due to close if nothing happens meanwhile;
    /// `None` when that time has passed.
    pub(super) fn deadline(&self, idle: Duration) -> Option<Instant> {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Some(now + idle);
        }
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let due = self.last.load(Ordering::Relaxed).saturating_add(idle_ms);
        let left = due.checked_sub(coarse_ms()).filter(|&ms| ms > 0)?;
        Some(now + Duration::from_millis(left))
    }
}

/// Milliseconds of a monotonic clock read at every write of every answer:
/// on Linux the coarse clock (a few milliseconds' resolution, read from
/// memory without the time-stamp counter), plenty for idle deadlines of
/// seconds and cheaper than `Instant::now`.
fn coarse_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the struct given.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0 {
            let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
            let ms = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
            return secs.saturating_mul(1000).saturating_add(ms);
        }
    }
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A request in hand: counted from when hyper hands it over until its
/// answer is ready (or the connection drops it), which is progress.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.progress();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection's view of the app: its own copy, which knows the
/// connection's peer; each request counts as in flight while the app
/// answers it.
///
/// The connection keeps its copy of the app and calls it in place: hyper
/// calls a connection's service one request at a time, and the app is
/// always ready (axum's router is), so a request costs no copy of it (each
/// copy touches reference counts that every connection shares). An app
/// that is not ready at once is called through a copy that waits.
pub(super) struct ConnectionService<S> {
    app: RefCell<S>,
    activity: Arc<Activity>,
}

impl<S: ForPeer> ConnectionService<S> {
    pub(super) fn new(app: &S, peer: SocketAddr, fd: SocketFd, activity: Arc<Activity>) -> Self {
        Self {
            app: RefCell::new(app.for_peer(peer, fd)),
            activity,
        }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnectionService<S>
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answering<S::Future, Oneshot<S, Request<Incoming>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = Some(InFlight::begin(&self.activity));
        // hyper calls one request at a time and never from within a call:
        // the cell is free (were it not, the request would get a 503).
        let Ok(mut app) = self.app.try_borrow_mut() else {
            let busy = Problem::new(
                Kind::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "the connection is busy",
            );
            return Answering::Busy {
                answer: Some(busy.respond()),
            };
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match app.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Answering::Called {
                answer: app.call(request),
                in_flight,
            },
            Poll::Pending => Answering::Waiting {
                answer: app.clone().oneshot(request),
                in_flight,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The app's answer to one request, in flight until it is ready.
    #[project = AnsweringProj]
    pub(super) enum Answering<F, W> {
        Called { #[pin] answer: F, in_flight: Option<InFlight> },
        Waiting { #[pin] answer: W, in_flight: Option<InFlight> },
        Busy { answer: Option<Response> },
    }
}

impl<F, W> Future for Answering<F, W>
where
    F: Future<Output = Result<Response, Infallible>>,
    W: Future<Output = F::Output>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (answer, in_flight) = match self.project() {
            AnsweringProj::Called { answer, in_flight } => {
                (std::task::ready!(answer.poll(cx)), in_flight)
            }
            AnsweringProj::Waiting { answer, in_flight } => {
                (std::task::ready!(answer.poll(cx)), in_flight)
            }
            AnsweringProj::Busy { answer } => {
                return Poll::Ready(Ok(answer.take().unwrap_or_default()));
            }
        };
        in_flight.take();
        Poll::Ready(answer)
    }
}

impl OpenSockets {
    /// Counts one more open socket; answers how many were open before.
    pub(super) fn open_one(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

impl Counted {
    /// The socket's descriptor.
    pub(super) fn fd(&self) -> SocketFd {
        use std::os::fd::AsRawFd;
        SocketFd(self.tcp.as_raw_fd())
    }

    /// A socket just accepted, counted in `open` (already incremented)
    /// until it is dropped.
    pub(super) fn new(tcp: TcpStream, open: Arc<OpenSockets>, activity: Arc<Activity>) -> Self {
        Self {
            tcp,
            open,
            activity,
            replacement: None,
        }
    }

    /// Writes what is left of a replacement answer, if any.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((answer, done)) = &mut self.replacement {
            if *done == answer.len() {
                self.replacement = None;
                break;
            }
            let written = Pin::new(&mut self.tcp).poll_write(cx, &answer[*done..]);
            let n = std::task::ready!(written)?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            self.activity.progress();
        }
        Poll::Ready(Ok(()))
    }

    /// When `bytes` are one of hyper's bare error answers, takes them and
    /// writes a problem answer instead (as far as the socket takes it now).
    fn replace_bare_error(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> bool {
        let Some(answer) = bare_error_answer(bytes) else {
            return false;
        };
        self.replacement = Some((answer, 0));
        // Pending or failed: the next write, flush or shutdown goes on.
        let _ = self.poll_replacement(cx);
        true
    }

    /// A write that sent something is progress.
    fn note(&self, written: &Poll<std::io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(1..))) {
            self.activity.progress();
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        if self.replace_bare_error(cx, buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        let written = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.note(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        // hyper writes a bare error answer as one slice (a head alone).
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && self.replace_bare_error(cx, only)
        {
            return Poll::Ready(Ok(only.len()));
        }
        let written = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.note(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_due_its_deadline_after_its_last_progress_unless_answering() {
        let idle = Duration::from_secs(5);
        let fresh = Arc::new(Activity::new());
        let due = fresh
            .deadline(idle)
            .expect("a new connection has its deadline ahead");
        assert!(due > Instant::now() + Duration::from_secs(4));
        // Opened 10 s ago and nothing since: past its deadline.
        let quiet = Arc::new(Activity {
            last: AtomicU64::new(coarse_ms().saturating_sub(10_000)),
            in_flight: AtomicUsize::new(0),
        });
        assert_eq!(quiet.deadline(idle), None);
        // A request in hand keeps it, however long it takes.
        let request = InFlight::begin(&quiet);
        assert!(quiet.deadline(idle).is_some());
        // Its answer is progress: the deadline is counted from there.
        drop(request);
        assert!(quiet.deadline(idle).unwrap() > Instant::now() + Duration::from_secs(4));
    }
}
