//! The dashboard (`deploy/grafana/ratesd.json`) and the alerts
//! (`deploy/prometheus/alerts.yml`) name only metrics a live server has.
//! (`promtool test rules` tests the alerts themselves, in `.ci/run`.)

use std::collections::BTreeSet;

use crate::helpers::{Options, spawn_app};

/// Every `ratesd_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ratesd_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn deploy_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_name_is_on_metrics() {
    let Some(app) = spawn_app(Options {
        archive: false,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // The dashboard is JSON whose every panel asks something.
    let dashboard = deploy_file("grafana/ratesd.json");
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<&str> = parsed["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let alerts = deploy_file("prometheus/alerts.yml");
    let wanted: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .chain(metric_names(&alerts))
        .collect();
    for family in [
        "ratesd_worker_leader",
        "ratesd_stale_assets",
        "ratesd_archive_backlog_ticks",
        "ratesd_http_requests_total",
        "ratesd_ws_point_delay_seconds_bucket",
        "ratesd_live_feed_connected",
        "ratesd_redis_errors_total",
        "ratesd_postgres_errors_total",
    ] {
        assert!(
            wanted.contains(family),
            "{family} is neither charted nor alerted on"
        );
    }

    // A request first, so that the request families have a sample.
    assert_eq!(app.get("/api/v1/rates/EURUSD").await.status(), 200);
    let text = app.get("/metrics").await.text().await.unwrap();
    let exposed: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|n| !exposed.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "named by the dashboard or alerts but not on /metrics: {missing:?}"
    );
    // What the alerts read holds the healthy values here.
    assert!(text.contains("\nratesd_live_feed_connected 1\n"), "{text}");
    assert!(text.contains("\nratesd_stale_assets 0\n"), "{text}");
    app.cleanup().await;
}
