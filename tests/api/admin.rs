//! The admin listener (`RATES_ADMIN_ADDR`): `/metrics` and `/health/*` on
//! an address of their own, `/metrics` gone from the public one, and
//! nothing else there.

use reqwest::StatusCode;

use crate::helpers::{Options, spawn_app};

#[tokio::test]
async fn metrics_and_probes_are_served_on_the_admin_address_and_metrics_leave_the_public_one() {
    let Some(app) = spawn_app(Options {
        archive: false,
        extra: vec!["--admin-addr".into(), "127.0.0.1:0".into()],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let admin = app.admin.clone().expect("an admin listener");
    assert_ne!(admin, app.base);
    let http = &app.http;
    let get = |url: String| async move { http.get(url).send().await.expect("request") };

    let metrics = get(format!("{admin}/metrics")).await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# TYPE ratesd_"),
        "not the service's metrics: {text:.200}"
    );
    for probe in ["/health/live", "/health/ready"] {
        assert_eq!(
            get(format!("{admin}{probe}")).await.status(),
            StatusCode::OK,
            "{probe}"
        );
    }
    // Only the probes and metrics: the API is not served on the admin address.
    let api = get(format!("{admin}/api/v1/rates")).await;
    assert_eq!(api.status(), StatusCode::NOT_FOUND);

    // The public address: no /metrics (a 404 problem), nor in the OpenAPI
    // document; the probes and the API stay.
    let public = get(app.url("/metrics")).await;
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert_eq!(public.headers()["content-type"], "application/problem+json");
    assert_eq!(get(app.url("/health/live")).await.status(), StatusCode::OK);
    let doc: serde_json::Value = get(app.url("/api-docs/openapi.json"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"].get("/metrics").is_none(),
        "/metrics still documented"
    );
    assert!(doc["paths"].get("/api/v1/rates").is_some());
}

/// Without `RATES_ADMIN_ADDR`, `/metrics` is on the public address, as before.
#[tokio::test]
async fn without_an_admin_address_metrics_stay_public() {
    let Some(app) = spawn_app(Options {
        archive: false,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    assert!(app.admin.is_none());
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("# TYPE ratesd_"));
    let doc: serde_json::Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["paths"].get("/metrics").is_some());
}
