//! The HTTP server's connections: accepting, deadlines, caps, shutdown.
//!
//! axum's own `serve` holds a connection that sends nothing for as long as
//! the client likes, and once the process runs out of file descriptors it
//! stops accepting altogether. Here every connection is bounded:
//!
//! - a connection must send a whole request header within the idle
//!   deadline of its opening or of its previous answer (which also bounds
//!   the keep-alive wait), or it is closed. One timer per connection
//!   enforces it, set again only when it fires ([`Activity`]): hyper's own
//!   header read timeout arms and clears a timer for every request, taking
//!   the runtime's timer lock twice a request, which cost the cached routes
//!   up to a fifth of their throughput on a busy 2-core machine
//!   (`loadtest/RESULTS.md`);
//! - one client IP holds at most `max_per_ip` connections: more are
//!   answered 429 and closed at once;
//! - the process keeps headroom below its file limit for Redis, PostgreSQL
//!   and its own files: past `max_open` sockets a new connection is
//!   answered 503 and closed, so the server never stops accepting;
//! - at shutdown idle connections close at once; a request in flight gets
//!   [`SHUTDOWN_GRACE`] to finish.
//!
//! WebSocket connections leave hyper when they upgrade (and so leave the
//! per-IP HTTP cap for the WebSocket cap), but their socket counts against
//! the file budget until it closes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use super::limit::ConnectionLimiter;
use super::problem::{Kind, Problem};

/// How long a request in flight at shutdown may take to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// File descriptors kept free for everything but client sockets: the Redis
/// and PostgreSQL pools, the live subscription, upstream fetches, files.
const RESERVED_FILES: usize = 64;

/// How the server treats connections.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Header read and idle keep-alive deadline.
    pub idle_timeout: Duration,
    /// Connections per client IP; 0: no cap.
    pub max_per_ip: u32,
    /// Client sockets the process may hold at once.
    pub max_open: usize,
}

impl ConnectionSettings {
    pub fn new(idle_timeout: Duration, max_per_ip: u32) -> Self {
        Self {
            idle_timeout,
            max_per_ip,
            max_open: socket_budget(raise_file_limit()),
        }
    }
}

/// Raises the soft limit on open files to the hard one (a process may) and
/// returns it.
pub fn raise_file_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// Client sockets that fit under a file limit of `limit`: all but a
/// reserve of [`RESERVED_FILES`] or 5%, whichever is larger (and at least
/// a handful, so a tiny limit still serves).
pub fn socket_budget(limit: usize) -> usize {
    let reserve = RESERVED_FILES.max(limit / 20);
    limit.saturating_sub(reserve).max(8)
}

/// Open client sockets, counted from accept to close.
#[derive(Debug, Default)]
struct OpenSockets(AtomicUsize);

/// A client socket that gives its place back when it closes (also after a
/// WebSocket upgrade, which carries it along), and notes its writes as
/// progress ([`Activity`]).
struct Counted {
    tcp: TcpStream,
    open: Arc<OpenSockets>,
    activity: Arc<Activity>,
}

/// What a connection last did, for its idle deadline: it is closed once it
/// has had no request in hand and written nothing for the deadline. A
/// request read in full, the end of its handling and every write of an
/// answer are progress; bytes of a header that never completes are not
/// (so a client sending one a byte at a time is still closed).
struct Activity {
    /// The connection's opening: progress is kept as milliseconds since.
    opened: Instant,
    last: AtomicU64,
    /// Requests handed to the app and not answered yet.
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn progress(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// When the connection is due to close if nothing happens meanwhile;
    /// `None` when that time has passed.
    fn deadline(&self, idle: Duration) -> Option<Instant> {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Some(now + idle);
        }
        let at = self.opened + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle;
        (at > now).then_some(at)
    }
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

/// One connection's view of the app: each request gets the peer's address
/// (`ConnectInfo`) and counts as in flight while the app answers it.
struct ConnectionService<S> {
    app: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnectionService<S>
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answering<Oneshot<S, Request<Incoming>>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Answering {
            in_flight: Some(InFlight::begin(&self.activity)),
            answer: self.app.clone().oneshot(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The app's answer to one request, in flight until it is ready.
    struct Answering<F> {
        #[pin]
        answer: F,
        in_flight: Option<InFlight>,
    }
}

impl<F: Future> Future for Answering<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.answer.poll(cx));
        this.in_flight.take();
        Poll::Ready(answer)
    }
}

impl Counted {
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
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.note(&written);
        written
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.note(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `shutdown`, then closes idle
/// connections at once and waits up to [`SHUTDOWN_GRACE`] for the rest.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    settings: ConnectionSettings,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header deadline is the connection's own timer (below), not
    // hyper's per-request one.
    builder.http1().header_read_timeout(None).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.idle_timeout)
        .keep_alive_timeout(settings.idle_timeout);
    let builder = Arc::new(builder);
    let per_ip = ConnectionLimiter::new(settings.max_per_ip);
    let open = Arc::new(OpenSockets::default());
    let connections = TaskTracker::new();
    tracing::info!(
        max_open = settings.max_open,
        max_per_ip = settings.max_per_ip,
        idle_timeout = ?settings.idle_timeout,
        "accepting connections"
    );
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(&e).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let over_budget = open.0.fetch_add(1, Ordering::Relaxed) >= settings.max_open;
        let activity = Arc::new(Activity::new());
        let tcp = Counted {
            tcp,
            open: open.clone(),
            activity: activity.clone(),
        };
        if over_budget {
            metrics::counter!("ratesd_http_connections_refused_total", "reason" => "capacity")
                .increment(1);
            tracing::debug!(%peer, "refusing a connection: at the socket budget");
            connections.spawn(refuse(
                tcp,
                Problem::new(
                    Kind::Unavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is at its connection limit",
                ),
            ));
            continue;
        }
        let Some(slot) = per_ip.try_acquire(peer.ip()) else {
            metrics::counter!("ratesd_http_connections_refused_total", "reason" => "per_ip")
                .increment(1);
            tracing::debug!(%peer, "refusing a connection: too many from this address");
            connections.spawn(refuse(
                tcp,
                Problem::new(
                    Kind::TooManyConnections,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address",
                ),
            ));
            continue;
        };
        let service = ConnectionService {
            app: app.clone(),
            peer,
            activity: activity.clone(),
        };
        let builder = builder.clone();
        // A child token per connection: polling the shared token itself
        // would take one lock, shared by every connection, at each wake.
        let shutdown = shutdown.child_token();
        let idle = settings.idle_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            let mut conn = std::pin::pin!(conn);
            let deadline = tokio::time::sleep(idle);
            let mut deadline = std::pin::pin!(deadline);
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    () = deadline.as_mut() => match activity.deadline(idle) {
                        Some(at) => deadline.as_mut().reset(at.into()),
                        // Dropping the connection closes it.
                        None => {
                            tracing::debug!(%peer, "closing an idle connection");
                            return;
                        }
                    },
                    () = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                        return;
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// An accept that failed: out of file descriptors (wait for one to close,
/// as axum does), or a connection gone before it was taken (nothing to do).
async fn accept_error(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; retrying in 50 ms");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Answers a connection that will not be served with `problem` and closes
/// it, without reading its request.
async fn refuse(mut tcp: Counted, problem: Problem) {
    let status = problem.status;
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = serde_json::to_string(&problem).unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
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
            opened: Instant::now() - Duration::from_secs(10),
            last: AtomicU64::new(0),
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

    #[test]
    fn the_budget_keeps_a_reserve() {
        assert_eq!(socket_budget(256), 192);
        assert_eq!(socket_budget(20_000), 19_000);
        assert_eq!(socket_budget(1024), 960);
        assert_eq!(socket_budget(10), 8);
    }

    #[test]
    fn the_soft_file_limit_is_raised_to_the_hard_one() {
        let limit = raise_file_limit();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct given.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(limit as u64, lim.rlim_cur);
    }
}
