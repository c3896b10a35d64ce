//! Sources against fake upstreams: HTTP servers on loopback serving the
//! recorded payloads from tests/fixtures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::helpers::{Engine, Options, eventually, fixture, spawn_app};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const GARBAGE: u8 = 2;
const SLOW: u8 = 3;

/// A fake FXCM and Binance on one loopback port; `mode` switches it between
/// serving the fixtures, answering 500, and answering garbage.
async fn fake_upstream(mode: Arc<AtomicU8>) -> String {
    let fxcm = fixture("fxcm-datadisplayer-2021-strings.txt");
    let binance = fixture("binance-bookticker-documented.json");
    let serve = move |body: String| {
        let mode = mode.clone();
        move || {
            let body = body.clone();
            let mode = mode.load(Ordering::SeqCst);
            async move {
                match mode {
                    HEALTHY => (StatusCode::OK, body),
                    FAILING => (StatusCode::INTERNAL_SERVER_ERROR, "upstream down".into()),
                    SLOW => {
                        // Far beyond the fetch timeout: the worker gives up first.
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        (StatusCode::OK, body)
                    }
                    _ => (StatusCode::OK, "null({\"Rates\":[{\"Sym".into()),
                }
            }
        }
    };
    let app = Router::new()
        .route("/DataDisplayer", get(serve(fxcm)))
        .route("/api/v3/ticker/bookTicker", get(serve(binance)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn rate(app: &crate::helpers::TestApp, symbol: &str) -> Option<serde_json::Value> {
    let (status, body) = app.get_json(&format!("/api/v1/rates/{symbol}")).await;
    (status == 200).then_some(body)
}

async fn fxcm_and_binance_quotes_from_recorded_payloads(engine: Engine) {
    let base = fake_upstream(Arc::new(AtomicU8::new(HEALTHY))).await;
    let Some(app) = spawn_app(Options {
        sources: "fxcm,binance".into(),
        archive: false,
        extra: vec![
            "--fxcm-url".into(),
            format!("{base}/DataDisplayer"),
            "--binance-url".into(),
            base.clone(),
            "--extra-assets".into(),
            "6:LTCBTC:binance=LTCBTC".into(),
        ],
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // Mid prices of tests/fixtures/README.md.
    for (symbol, mid) in [
        ("EURUSD", 1.129575),
        ("USDJPY", 114.51),
        ("GBPUSD", 1.355665),
        ("AUDUSD", 0.71238),
        ("USDCAD", 1.26814),
    ] {
        let q = eventually(symbol, Duration::from_secs(5), || rate(&app, symbol)).await;
        assert_eq!(q["value"].as_f64(), Some(mid), "{symbol}");
        assert_eq!(q["source"], "fxcm");
    }
    let ltc = eventually("LTCBTC", Duration::from_secs(5), || rate(&app, "LTCBTC")).await;
    assert_eq!(ltc["source"], "binance");
    assert_eq!(
        (ltc["bid"].as_f64(), ltc["ask"].as_f64()),
        (Some(4.0), Some(4.000002))
    );
    assert_eq!(ltc["value"].as_f64(), Some(4.000001));
    app.cleanup().await;
}

async fn a_failing_upstream_fails_over_and_back(engine: Engine) {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let base = fake_upstream(mode.clone()).await;
    let Some(app) = spawn_app(Options {
        sources: "fxcm,simulated".into(),
        archive: false,
        extra: vec![
            "--fxcm-url".into(),
            format!("{base}/DataDisplayer"),
            "--stale-after-seconds".into(),
            "2".into(),
        ],
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let source = |want: &'static str| {
        let app = &app;
        move || async move {
            let q = rate(app, "EURUSD").await?;
            (q["source"] == want).then_some(q)
        }
    };
    eventually("fxcm serving", Duration::from_secs(5), source("fxcm")).await;
    for broken in [FAILING, GARBAGE, SLOW] {
        mode.store(broken, Ordering::SeqCst);
        let q = eventually(
            "failover to simulated",
            Duration::from_secs(8),
            source("simulated"),
        )
        .await;
        assert_eq!(q["stale"], false);
        mode.store(HEALTHY, Ordering::SeqCst);
        // The breaker retries after a pause (1 s, doubling): allow a few.
        let q = eventually("back to fxcm", Duration::from_secs(15), source("fxcm")).await;
        assert_eq!(q["value"].as_f64(), Some(1.129575));
    }
    // The window has kept one point a second through both switches.
    let (points, _) = app.engine.window(1, 0, i64::MAX, 100_000).await.unwrap();
    let t: Vec<i64> = points.iter().map(|p| p.time).collect();
    assert!(t.windows(2).all(|w| w[1] > w[0]), "times only move forward");
    app.cleanup().await;
}

async fn with_no_fresh_source_the_asset_goes_stale_and_no_points_are_invented(engine: Engine) {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let base = fake_upstream(mode.clone()).await;
    let Some(app) = spawn_app(Options {
        sources: "fxcm".into(),
        archive: false,
        extra: vec![
            "--fxcm-url".into(),
            format!("{base}/DataDisplayer"),
            "--stale-after-seconds".into(),
            "1".into(),
        ],
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    eventually("a quote", Duration::from_secs(5), || rate(&app, "EURUSD")).await;
    mode.store(FAILING, Ordering::SeqCst);
    let stale = eventually("stale", Duration::from_secs(8), || async {
        let q = rate(&app, "EURUSD").await?;
        (q["stale"] == true).then_some(q)
    })
    .await;
    assert_eq!(stale["source"], "fxcm");
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 503);
    assert_eq!(ready["staleAssets"].as_array().unwrap().len(), 5, "{ready}");
    // Why: the upstream's breaker says so, with its error.
    let fxcm = &ready["sources"]["1:fxcm"];
    assert!(
        fxcm["state"] == "open" || fxcm["state"] == "failing",
        "{ready}"
    );
    assert!(
        fxcm["lastError"].as_str().unwrap().contains("500"),
        "{ready}"
    );
    // No point is written while stale.
    let newest = |app: &crate::helpers::TestApp| {
        let engine = app.engine.clone();
        async move {
            let (points, _) = engine.window(1, 0, i64::MAX, 100_000).await.unwrap();
            points.last().map(|p| p.time)
        }
    };
    let before = newest(&app).await;
    let until = ratesd::clock::unix_now() + 2;
    eventually("two more seconds", Duration::from_secs(5), || async {
        (ratesd::clock::unix_now() > until).then_some(())
    })
    .await;
    assert_eq!(newest(&app).await, before);
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    fxcm_and_binance_quotes_from_recorded_payloads,
    a_failing_upstream_fails_over_and_back,
    with_no_fresh_source_the_asset_goes_stale_and_no_points_are_invented,
);
