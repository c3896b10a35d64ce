//! Logging and metrics: a `tracing` subscriber filtered by `RATES_LOG` in
//! the format of `RATES_LOG_FORMAT`, and the Prometheus recorder.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` uses `EnvFilter` syntax
/// (`info`, `ratesd=debug,tower_http=warn`); a bad filter falls back to
/// `info` with a warning rather than leaving the service silent. Text lines
/// carry colour codes only when stdout is a terminal, so a log redirected
/// to a file or a collector stays plain.
pub fn init(filter: &str, format: LogFormat) {
    let (filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(false)
            .with_current_span(true)
            .try_init(),
    };
    if let Some(e) = bad {
        tracing::warn!(error = %e, "RATES_LOG is not a valid filter; logging at info");
    }
}

/// The process-wide Prometheus recorder. Installed once; every app in the
/// process (tests start several) shares it.
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Latency buckets from half a millisecond to ten seconds.
        const BUCKETS: [f64; 14] = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
        let builder = builder
            .set_buckets(&BUCKETS)
            .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's): render
            // our own, unattached one, which then stays empty.
            Err(e) => {
                tracing::warn!(error = %e, "cannot install the metrics recorder");
                metrics_exporter_prometheus::PrometheusBuilder::new()
                    .build_recorder()
                    .handle()
            }
        }
    })
}

/// Describes every metric family and gives each a first value, so that
/// `/metrics` lists them all from the start (a family appears in the
/// Prometheus text only once it has a value).
pub fn register_metrics(sources: &[&'static str]) {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    metrics();
    describe_counter!(
        "ratesd_http_requests_total",
        "HTTP requests by route, method and status"
    );
    describe_histogram!(
        "ratesd_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route"
    );
    describe_counter!(
        "ratesd_http_shortcut_answers_total",
        "HTTP requests the front door answered from a prepared snapshot, without the router"
    );
    describe_counter!(
        "ratesd_http_rate_limited_total",
        "HTTP requests refused by the per-IP limit"
    );
    describe_gauge!("ratesd_ws_connections", "Open WebSocket connections");
    describe_counter!("ratesd_ws_messages_sent_total", "WebSocket messages sent");
    describe_counter!(
        "ratesd_ws_messages_dropped_total",
        "WebSocket messages not delivered, by reason"
    );
    describe_counter!(
        "ratesd_ws_frames_rate_limited_total",
        "Client frames refused by the per-connection limit"
    );
    describe_histogram!(
        "ratesd_ws_point_delay_seconds",
        Unit::Seconds,
        "From the start of a point's second to its write to a subscriber's socket"
    );
    describe_counter!(
        "ratesd_ws_connections_refused_total",
        "WebSocket upgrades refused by the per-IP cap"
    );
    describe_histogram!(
        "ratesd_worker_tick_duration_seconds",
        Unit::Seconds,
        "Time one tick takes"
    );
    describe_histogram!(
        "ratesd_worker_tick_lateness_seconds",
        Unit::Seconds,
        "How far into its second a tick starts"
    );
    describe_counter!(
        "ratesd_worker_ticks_skipped_total",
        "Seconds without a tick because one overran"
    );
    describe_counter!(
        "ratesd_points_written_total",
        "Points written to the engine's windows"
    );
    describe_gauge!(
        "ratesd_worker_leader",
        "1 while this process's worker holds the writer's lease, else 0"
    );
    describe_counter!(
        "ratesd_worker_elections_won_total",
        "Times this process's worker took the writer's lease"
    );
    describe_counter!(
        "ratesd_worker_ticks_fenced_total",
        "Ticks the engine refused because a newer leader had written"
    );
    describe_counter!(
        "ratesd_archive_points_total",
        "Points newly inserted into PostgreSQL"
    );
    describe_counter!(
        "ratesd_archive_reads_refused_total",
        "Client reads of the archive refused at once, by kind (page, export): as many as allowed were running"
    );
    describe_counter!(
        "ratesd_archive_partitions_dropped_total",
        "Day partitions of the archive dropped by the retention"
    );
    describe_gauge!(
        "ratesd_archive_backlog_ticks",
        "Ticks waiting in the archive buffer"
    );
    describe_gauge!(
        "ratesd_archive_lag_seconds",
        "Age of the newest archived point when it was committed"
    );
    describe_counter!(
        "ratesd_upstream_fetch_errors_total",
        "Failed upstream fetches, by source"
    );
    describe_histogram!(
        "ratesd_upstream_fetch_duration_seconds",
        Unit::Seconds,
        "Upstream fetch time, by source"
    );
    describe_gauge!("ratesd_sse_connections", "Open Server-Sent Events streams");
    describe_gauge!(
        "ratesd_live_feed_connected",
        "1 while the engine's live feed is subscribed, 0 while it is lost (Redis unreachable)"
    );
    describe_gauge!(
        "ratesd_stale_assets",
        "Assets whose newest quote is older than the staleness limit, at the scrape"
    );
    describe_counter!("ratesd_redis_errors_total", "Redis errors, by operation");
    describe_counter!(
        "ratesd_postgres_errors_total",
        "PostgreSQL errors, by operation"
    );
    for name in [
        "ratesd_http_shortcut_answers_total",
        "ratesd_http_rate_limited_total",
        "ratesd_ws_messages_sent_total",
        "ratesd_ws_frames_rate_limited_total",
        "ratesd_ws_connections_refused_total",
        "ratesd_worker_ticks_skipped_total",
        "ratesd_points_written_total",
        "ratesd_archive_points_total",
        "ratesd_archive_partitions_dropped_total",
        "ratesd_worker_elections_won_total",
        "ratesd_worker_ticks_fenced_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("ratesd_ws_connections").increment(0.0);
    metrics::gauge!("ratesd_sse_connections").increment(0.0);
    metrics::gauge!("ratesd_archive_backlog_ticks").increment(0.0);
    metrics::gauge!("ratesd_archive_lag_seconds").increment(0.0);
    for kind in ["page", "export"] {
        metrics::counter!("ratesd_archive_reads_refused_total", "kind" => kind).increment(0);
    }
    for reason in ["lagged", "send_timeout", "write_timeout"] {
        metrics::counter!("ratesd_ws_messages_dropped_total", "reason" => reason).increment(0);
    }
    for &source in sources {
        metrics::counter!("ratesd_upstream_fetch_errors_total", "source" => source).increment(0);
    }
    for op in ["write_tick", "archive_read", "lease", "api"] {
        metrics::counter!("ratesd_redis_errors_total", "op" => op).increment(0);
    }
    for op in ["insert", "maintain", "api"] {
        metrics::counter!("ratesd_postgres_errors_total", "op" => op).increment(0);
    }
}
