//! The HTTP server's connections: accepting, deadlines, caps, shutdown.
//!
//! axum's own `serve` holds a connection that sends nothing for as long as
//! the client likes, and once the process runs out of file descriptors it
//! stops accepting altogether. Here every connection is bounded:
//!
//! - a connection must send a whole request header within the idle
//!   deadline of its opening or of its previous answer (hyper's header
//!   read timeout, which also covers the keep-alive wait), or it is closed;
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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::convert::Infallible;

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use super::error::{Kind, Problem};
use super::limit::ConnectionLimiter;

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
/// WebSocket upgrade, which carries it along).
struct Counted {
    tcp: TcpStream,
    open: Arc<OpenSockets>,
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
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
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
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.idle_timeout)
        .keep_alive(true);
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
        let tcp = Counted {
            tcp,
            open: open.clone(),
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
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let builder = builder.clone();
        // A child token per connection: polling the shared token itself
        // would take one lock, shared by every connection, at each wake.
        let shutdown = shutdown.child_token();
        let idle = settings.idle_timeout;
        connections.spawn(async move {
            let _slot = slot;
            // hyper reads the first bytes to tell HTTP/1 from HTTP/2 before
            // its own header deadline starts: a client that sends nothing
            // at all is closed here.
            let mut first_byte = [0u8; 1];
            tokio::select! {
                first = tokio::time::timeout(idle, tcp.tcp.peek(&mut first_byte)) => {
                    if !matches!(first, Ok(Ok(1..))) {
                        return;
                    }
                }
                () = shutdown.cancelled() => return,
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
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
