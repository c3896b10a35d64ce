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
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use super::bare_errors::raw_answer;
use super::caller::ForPeer;
use super::connection::{Activity, ConnectionService, Counted, OpenSockets};
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
        + ForPeer
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
    // No keep-alive pings on HTTP/2: they are writes, which would keep an
    // idle connection (no stream open) past its deadline; a dead peer is
    // closed by the same deadline.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(None);
    let builder = Arc::new(builder);
    let per_ip = ConnectionLimiter::new();
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
        let over_budget = open.open_one() >= settings.max_open;
        let activity = Arc::new(Activity::new());
        let tcp = Counted::new(tcp, open.clone(), activity.clone());
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
        let Some(slot) = per_ip.try_acquire(peer.ip(), settings.max_per_ip) else {
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
        let service = ConnectionService::new(&app, peer, tcp.fd(), activity.clone());
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
                    // In this order, without drawing a random one at each wake.
                    biased;
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
    let answer = raw_answer(&problem, "retry-after: 1\r\n");
    let write = async {
        tcp.write_all(&answer).await?;
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
