//! `GET /metrics` (Prometheus text format) and the HTTP request metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(render))
}

/// Prometheus metrics of this process.
///
/// Families (all prefixed `ratesd_`): `http_requests_total` and
/// `http_request_duration_seconds` by route, method and status;
/// `http_rate_limited_total`; `ws_connections`, `ws_messages_sent_total`,
/// `ws_messages_dropped_total` by reason, `ws_frames_rate_limited_total`,
/// `ws_connections_refused_total`; `worker_tick_duration_seconds`,
/// `worker_tick_lateness_seconds`, `worker_ticks_skipped_total`,
/// `points_written_total`; `archive_points_total`, `archive_backlog_ticks`,
/// `archive_lag_seconds`; `upstream_fetch_errors_total` and
/// `upstream_fetch_duration_seconds` by source; `redis_errors_total` and
/// `postgres_errors_total` by operation.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
async fn render() -> Response {
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

/// Counts and times every routed request by its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("ratesd_http_requests_total",
        "route" => route.clone(), "method" => method.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("ratesd_http_request_duration_seconds",
        "route" => route, "method" => method)
    .record(started.elapsed().as_secs_f64());
    response
}
