//! `GET /metrics` (Prometheus text format) and the HTTP request metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::health::HealthState;

pub fn router() -> OpenApiRouter<Arc<HealthState>> {
    OpenApiRouter::new().routes(routes!(render))
}

/// Prometheus metrics of this process.
///
/// Families (all prefixed `ratesd_`): `http_requests_total` and
/// `http_request_duration_seconds` by route, method and status;
/// `http_rate_limited_total`; `ws_connections`, `ws_messages_sent_total`,
/// `ws_messages_dropped_total` by reason, `ws_frames_rate_limited_total`,
/// `ws_connections_refused_total`, `ws_point_delay_seconds` (from the start
/// of a point's second to its write to each subscriber's socket: the
/// fan-out delay clients see, less the network); `worker_tick_duration_seconds`,
/// `worker_tick_lateness_seconds`, `worker_ticks_skipped_total`,
/// `points_written_total`; `archive_points_total`, `archive_backlog_ticks`,
/// `archive_lag_seconds`; `upstream_fetch_errors_total` and
/// `upstream_fetch_duration_seconds` by source; `redis_errors_total` and
/// `postgres_errors_total` by operation; `live_feed_connected` and
/// `stale_assets`, read at each scrape.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
async fn render(State(health): State<Arc<HealthState>>) -> Response {
    health.observe().await;
    let body = crate::telemetry::metrics().render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Records one answered request. Labels are interned `'static` strings (a
/// few routes, methods and statuses), and each worker thread keeps the
/// handles of the label sets it has recorded, so that a request costs two
/// atomic updates rather than a registry lookup that builds its key.
pub fn record(
    route: &'static str,
    method: &'static str,
    status: axum::http::StatusCode,
    elapsed: std::time::Duration,
) {
    use std::cell::RefCell;

    use rustc_hash::FxHashMap;
    /// A label set by the addresses of its interned values.
    type LabelSet = (usize, usize, usize);
    thread_local! {
        static HANDLES: RefCell<FxHashMap<LabelSet, (metrics::Counter, metrics::Histogram)>> =
            RefCell::new(FxHashMap::default());
    }
    let status = status_label(status.as_u16());
    let key = (
        route.as_ptr() as usize,
        method.as_ptr() as usize,
        status.as_ptr() as usize,
    );
    HANDLES.with_borrow_mut(|handles| {
        let (count, duration) = handles.entry(key).or_insert_with(|| {
            // The recorder is installed before the first request; this
            // makes sure of it (a handle taken before would record nothing).
            crate::telemetry::metrics();
            (
                metrics::counter!("ratesd_http_requests_total",
                    "route" => route, "method" => method, "status" => status),
                metrics::histogram!("ratesd_http_request_duration_seconds",
                    "route" => route, "method" => method),
            )
        });
        count.increment(1);
        duration.record(elapsed.as_secs_f64());
    });
}

/// The `method` label: the methods HTTP defines, and `other` for any a
/// client invents, so that no client can grow the set of series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The `status` label: a status code is three digits, so the set is
/// bounded; the common ones are not even looked up.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        204 => "204",
        304 => "304",
        400 => "400",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        503 => "503",
        100..=999 => intern(&status.to_string()),
        _ => "other",
    }
}

/// A `'static` copy of a label value, made once per distinct value. The
/// values are route templates and statuses: a small, bounded set (never a
/// value a client chooses freely).
pub fn intern(s: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{OnceLock, RwLock};
    static SEEN: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = seen.read().unwrap_or_else(|e| e.into_inner()).get(s) {
        return v;
    }
    let mut w = seen.write().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = w.get(s) {
        return v;
    }
    let v: &'static str = Box::leak(s.to_owned().into_boxed_str());
    w.insert(v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn invented_methods_share_one_label() {
        for name in ["XYZZY1", "XYZZY2", "PROPFIND"] {
            let m = Method::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "other");
        }
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
    }

    #[test]
    fn statuses_are_three_digits_or_other() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(418), "418");
        assert_eq!(status_label(5), "other");
        assert_eq!(status_label(1000), "other");
    }
}
