//! Rate limiting, HTTP caching and metrics against the real service.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::helpers::{Engine, Options, eventually, spawn_app};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn limited(engine: Engine, per_second: u32, burst: u32, more: &[&str]) -> Options {
    let mut flags = vec![
        "--rate-limit-per-second".to_owned(),
        per_second.to_string(),
        "--rate-limit-burst".to_owned(),
        burst.to_string(),
    ];
    flags.extend(more.iter().map(|s| (*s).to_owned()));
    Options::flags(engine, &flags)
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn the_limit_trips_at_exactly_the_burst_and_recovers(engine: Engine) {
    let Some(app) = spawn_app(limited(engine, 1, 5, &[])).await else {
        return;
    };
    for expected_remaining in (0..5).rev() {
        let resp = app.get("/api/v1/assets").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "ratelimit-limit"), "5");
        assert_eq!(
            header(&resp, "ratelimit-remaining"),
            expected_remaining.to_string()
        );
        assert!(header(&resp, "ratelimit-reset").parse::<u64>().unwrap() <= 5);
    }
    let resp = app.get("/api/v1/rates").await;
    assert_eq!(resp.status(), 429, "the request after the burst");
    assert_eq!(header(&resp, "content-type"), "application/problem+json");
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry), "retry after {retry}");
    assert_eq!(header(&resp, "ratelimit-remaining"), "0");
    assert_eq!(header(&resp, "ratelimit-limit"), "5");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["type"], "/problems/rate-limited");
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let resp = app
        .http
        .get(app.url("/api/v1/rates"))
        .header("x-forwarded-for", "203.0.113.50")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    // Probes, metrics and docs are exempt.
    for path in ["/health/live", "/metrics", "/api-docs/openapi.json"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    // One token a second: the limit recovers.
    eventually("the limit to recover", Duration::from_secs(5), || async {
        (app.get("/api/v1/assets").await.status() == 200).then_some(())
    })
    .await;
    app.cleanup().await;
}

async fn forwarded_for_counts_only_behind_a_trusted_proxy(engine: Engine) {
    let Some(app) = spawn_app(limited(engine, 1, 2, &["--trusted-proxies", "127.0.0.1"])).await
    else {
        return;
    };
    let get = |ip: &'static str| {
        let req = app
            .http
            .get(app.url("/api/v1/assets"))
            .header("x-forwarded-for", ip);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("203.0.113.1").await, 200);
    assert_eq!(get("203.0.113.1").await, 200);
    assert_eq!(get("203.0.113.1").await, 429);
    // Another client behind the same proxy has its own bucket.
    assert_eq!(get("203.0.113.2").await, 200);
    app.cleanup().await;
}

async fn a_flooding_websocket_client_is_limited_and_others_are_not(engine: Engine) {
    let Some(app) = spawn_app(limited(engine, 0, 1, &["--ws-frames-per-second", "5"])).await else {
        return;
    };
    let ws_url = format!("{}/api/v1/ws", app.base.replace("http://", "ws://"));
    let (mut calm, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let (mut flood, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    for _ in 0..100 {
        if flood
            .send(Message::text(r#"{"action":"assets","message":{}}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut assets = 0;
    let mut limited = 0;
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = flood.next().await {
            match msg {
                Message::Text(t) => {
                    let f: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    match f["action"].as_str() {
                        Some("assets") => assets += 1,
                        Some("error") => {
                            assert_eq!(f["message"]["error_type"], "RateLimited");
                            limited += 1;
                        }
                        other => panic!("{other:?}"),
                    }
                }
                Message::Close(c) => return c,
                _ => {}
            }
        }
        None
    })
    .await
    .expect("the flood is closed");
    assert_eq!(assets, 10, "a burst of twice 5 frames is served");
    assert!(limited >= 1, "then RateLimited error frames");
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(close.reason.contains("rate limit"), "{}", close.reason);
    // The calm client is served as usual.
    calm.send(Message::text(r#"{"action":"assets","message":{}}"#))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), calm.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        answer
            .to_text()
            .unwrap()
            .starts_with(r#"{"action":"assets""#)
    );
    app.cleanup().await;
}

async fn websocket_connections_per_ip_are_capped(engine: Engine) {
    let Some(app) = spawn_app(limited(engine, 0, 1, &["--ws-max-connections-per-ip", "3"])).await
    else {
        return;
    };
    let ws_url = format!("{}/api/v1/ws", app.base.replace("http://", "ws://"));
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tokio_tungstenite::connect_async(&ws_url).await.unwrap().0);
    }
    match tokio_tungstenite::connect_async(&ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            assert_eq!(resp.headers()["retry-after"], "1");
        }
        other => panic!("the fourth connection should be refused: {other:?}"),
    }
    // Closing one frees its place.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    eventually("a freed place", Duration::from_secs(5), || async {
        tokio_tungstenite::connect_async(&ws_url)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    app.cleanup().await;
}

async fn etags_give_304_and_cache_control(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        backfill_seconds: 120,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    eventually("a quote", Duration::from_secs(5), || async {
        (app.get("/api/v1/rates/EURUSD").await.status() == 200).then_some(())
    })
    .await;
    for path in ["/api/v1/rates", "/api/v1/rates/EURUSD", "/api/v1/assets"] {
        // The rates change every second: retry until two requests land in one tick.
        eventually("a 304", Duration::from_secs(10), || async {
            let first = app.get(path).await;
            assert_eq!(first.status(), 200);
            let etag = header(&first, "etag");
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
            let cc = header(&first, "cache-control");
            let expect = if path.ends_with("assets") {
                "max-age=300"
            } else {
                "max-age=1"
            };
            assert!(cc.contains(expect), "{path}: {cc}");
            let again = app
                .http
                .get(app.url(path))
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            match again.status().as_u16() {
                304 => {
                    assert_eq!(header(&again, "etag"), etag);
                    assert!(again.bytes().await.unwrap().is_empty());
                    Some(())
                }
                200 => {
                    assert_ne!(header(&again, "etag"), etag, "200 only with new data");
                    None
                }
                other => panic!("{path}: {other}"),
            }
        })
        .await;
    }
    // A range that ended in the past is settled: cacheable for a minute, stable tag.
    let now = ratesd::clock::unix_now();
    let path = format!(
        "/api/v1/rates/EURUSD/history?from={}&to={}",
        now - 60,
        now - 10
    );
    let first = app.get(&path).await;
    assert!(header(&first, "cache-control").contains("max-age=60"));
    let etag = header(&first, "etag");
    let again = app
        .http
        .get(app.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    app.cleanup().await;
}

async fn the_cached_answer_follows_the_data_second_by_second(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let pair = eventually(
        "two consecutive seconds",
        Duration::from_secs(10),
        || async {
            // What Redis held before the request: the answer is at most one tick older.
            let newest = app.engine.latest(1).await.unwrap().map(|q| q.time);
            let (status, q) = app.get_json("/api/v1/rates/EURUSD").await;
            if let (200, Some(newest)) = (status, newest) {
                let t = q["time"].as_i64().unwrap();
                assert!(t >= newest - 1, "cached {t}, redis had {newest}");
                seen.lock().unwrap().insert(t);
            }
            let seen = seen.lock().unwrap();
            seen.iter().find(|t| seen.contains(&(**t + 1))).copied()
        },
    )
    .await;
    let seen = seen.into_inner().unwrap();
    assert!(seen.contains(&pair) && seen.contains(&(pair + 1)));
    app.cleanup().await;
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    // The whole name: `ratesd_ws_connections` is not `ratesd_ws_connections_refused_total`.
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn metrics_expose_every_family_and_move_with_traffic(engine: Engine) {
    let Some(app) = spawn_app(Options {
        backfill_seconds: 10,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let scrape = || async { app.get("/metrics").await.text().await.unwrap() };
    let text = scrape().await;
    for family in [
        "ratesd_http_rate_limited_total",
        "ratesd_http_shortcut_answers_total",
        "ratesd_ws_connections",
        "ratesd_ws_messages_sent_total",
        "ratesd_ws_messages_dropped_total",
        "ratesd_points_written_total",
        "ratesd_archive_backlog_ticks",
        "ratesd_archive_lag_seconds",
        "ratesd_upstream_fetch_errors_total",
        "ratesd_redis_errors_total",
        "ratesd_postgres_errors_total",
    ] {
        assert!(text.contains(family), "{family} missing from /metrics");
    }
    let requests = r#"ratesd_http_requests_total{route="/api/v1/rates",method="GET",status="200"}"#;
    let before = metric(&text, requests).unwrap_or(0.0);
    // Each route, status and the fallback under a label of its own (the
    // labels are looked up once per route and cached per thread).
    let one_rate =
        r#"ratesd_http_requests_total{route="/api/v1/rates/{symbol}",method="GET",status="200"}"#;
    let no_rate =
        r#"ratesd_http_requests_total{route="/api/v1/rates/{symbol}",method="GET",status="404"}"#;
    let unmatched = r#"ratesd_http_requests_total{route="unmatched",method="GET",status="404"}"#;
    let others_before = [one_rate, no_rate, unmatched].map(|m| metric(&text, m).unwrap_or(0.0));
    let points_before = metric(&text, "ratesd_points_written_total").unwrap();
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/rates").await.status(), 200);
    }
    let delays = "ratesd_ws_point_delay_seconds_count";
    let delays_before = metric(&text, delays).unwrap_or(0.0);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/ws",
        app.base.replace("http://", "ws://")
    ))
    .await
    .unwrap();
    // A live point delivered is a delay recorded.
    ws.send(Message::text(
        r#"{"action":"subscribe","message":{"assetId":1}}"#,
    ))
    .await
    .unwrap();
    crate::helpers::until_action(&mut ws, "point").await;
    // A point was written: EURUSD has a quote.
    for _ in 0..2 {
        assert_eq!(app.get("/api/v1/rates/EURUSD").await.status(), 200);
        assert_eq!(app.get("/api/v1/rates/NOSUCH").await.status(), 404);
        assert_eq!(app.get("/no/such/path").await.status(), 404);
    }
    eventually("the metrics to move", Duration::from_secs(10), || async {
        let text = scrape().await;
        let moved = metric(&text, requests).unwrap_or(0.0) >= before + 3.0
            && [one_rate, no_rate, unmatched]
                .iter()
                .zip(others_before)
                .all(|(m, before)| metric(&text, m).unwrap_or(0.0) >= before + 2.0)
            && metric(&text, "ratesd_points_written_total").unwrap() > points_before
            && metric(&text, "ratesd_ws_connections").unwrap() >= 1.0
            && text
                .contains(r#"ratesd_http_request_duration_seconds_bucket{route="/api/v1/rates""#)
            && metric(&text, "ratesd_archive_points_total").unwrap() > 0.0
            && metric(&text, delays).unwrap_or(0.0) > delays_before
            // Histograms are listed from their first observation on.
            && text.contains("ratesd_worker_tick_duration_seconds_count")
            && text.contains("ratesd_worker_tick_lateness_seconds_count");
        moved.then_some(())
    })
    .await;
    drop(ws);
    app.cleanup().await;
}

async fn oversized_requests_are_bounded(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // A large body on any route: 413 before a handler sees it (on a client
    // of its own: the server closes that connection unread, and a later
    // request must not be sent on it).
    let resp = reqwest::Client::new()
        .get(app.url("/api/v1/rates"))
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // A huge header: refused by the HTTP layer, the server stays up.
    let resp = reqwest::Client::new()
        .get(app.url("/api/v1/rates"))
        .header("x-junk", "y".repeat(512 * 1024))
        .send()
        .await;
    assert!(resp.map(|r| r.status().is_client_error()).unwrap_or(true));
    // A long query string is just a bad parameter.
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/history?cursor={}",
            "A".repeat(8000)
        ))
        .await;
    assert_eq!((status, body["parameter"].as_str()), (400, Some("cursor")));
    assert_eq!(app.get("/health/live").await.status(), 200);
    app.cleanup().await;
}

async fn invented_methods_do_not_grow_the_metric_labels(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    for i in 0..1000 {
        let method = reqwest::Method::from_bytes(format!("XYZZY{i}").as_bytes()).unwrap();
        let path = if i % 2 == 0 {
            "/api/v1/rates"
        } else {
            "/nothing-here"
        };
        let r = app
            .http
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let methods: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("ratesd_http_requests_total{"))
        .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
        .collect();
    let known = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
    ];
    assert!(methods.contains("other"), "{methods:?}");
    assert!(
        methods.iter().all(|m| known.contains(m)),
        "only the methods HTTP defines, and other: {methods:?}"
    );
    app.cleanup().await;
}

/// A client that floods subscribes (each answered with a whole history)
/// and reads nothing until the end gets the 1008 close like any other
/// flood, not a reset.
async fn a_subscribe_flood_is_closed_with_1008_not_reset(engine: Engine) {
    let Some(app) = spawn_app(Options {
        backfill_seconds: 600,
        ..limited(engine, 0, 1, &["--ws-frames-per-second", "5"])
    })
    .await
    else {
        return;
    };
    let ws_url = format!("{}/api/v1/ws", app.base.replace("http://", "ws://"));
    let (mut flood, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    for _ in 0..200 {
        let subscribe = r#"{"action":"subscribe","message":{"assetId":1}}"#;
        if flood.send(Message::text(subscribe)).await.is_err() {
            break;
        }
    }
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match flood.next().await {
                Some(Ok(Message::Close(c))) => return Ok(c),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("ended without a close frame".into()),
            }
        }
    })
    .await
    .expect("the flood is closed");
    let close = close.expect("a close frame, not a reset").expect("a code");
    assert_eq!(close.code, CloseCode::Policy, "{}", close.reason);
    app.cleanup().await;
}

/// An answer's headers, those that differ from one request to the next
/// (the date, the caller's remaining quota) by name only.
fn comparable(resp: &reqwest::Response) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = match name.as_str() {
                "date" | "ratelimit-remaining" | "ratelimit-reset" => "…",
                _ => value.to_str().unwrap(),
            };
            (name.as_str().to_owned(), value.to_owned())
        })
        .collect();
    headers.sort();
    headers
}

/// A rate's common request is answered by the front door's shortcut; with
/// a query (a cache buster) or a percent-encoded symbol it goes to the
/// route itself. Both answer alike, headers and body, 200 and 304, over
/// HTTP/1.1 and HTTP/2.
async fn the_shortcut_answers_as_the_route_does(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        ..limited(engine, 1000, 1000, &[])
    })
    .await
    else {
        return;
    };
    let paths = [
        "/api/v1/rates/EURUSD",
        "/api/v1/rates/EURUSD?cache=1",
        "/api/v1/rates/eur-usd",
        "/api/v1/rates/EUR%2FUSD",
    ];
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, if_none_match) in [
        (&app.http, false),
        (&app.http, true),
        (&http2, false),
        (&http2, true),
    ] {
        // Every answer of one tick: retried until all four land in one.
        let answers = eventually(
            "four answers of one tick",
            Duration::from_secs(15),
            || async {
                let tag = match client.get(app.url(paths[0])).send().await.unwrap() {
                    resp if resp.status() == 200 => header(&resp, "etag"),
                    _ => return None,
                };
                let mut answers = Vec::new();
                for path in paths {
                    let mut request = client.get(app.url(path));
                    if if_none_match {
                        request = request.header("if-none-match", &tag);
                    }
                    let resp = request.send().await.unwrap();
                    if resp.headers().get("etag").and_then(|v| v.to_str().ok()) != Some(&tag) {
                        return None;
                    }
                    answers.push((
                        path,
                        resp.status(),
                        comparable(&resp),
                        resp.bytes().await.unwrap(),
                    ));
                }
                Some(answers)
            },
        )
        .await;
        let (_, status, headers, body) = &answers[0];
        assert_eq!(status.as_u16(), if if_none_match { 304 } else { 200 });
        assert!(
            headers.iter().any(|(name, _)| name == "ratelimit-policy"),
            "{headers:?}"
        );
        for (path, other_status, other_headers, other_body) in &answers[1..] {
            assert_eq!(other_status, status, "{path}");
            assert_eq!(other_headers, headers, "{path}");
            assert_eq!(other_body, body, "{path}");
        }
    }
    // The shortcut did answer (the counter is the process's: every test
    // app's; none while request spans are logged, as `TEST_LOG` may ask).
    let spans = std::env::var("TEST_LOG").is_ok_and(|f| f.contains("debug") || f.contains("trace"));
    if !spans {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let given =
            metric(&metrics, "ratesd_http_shortcut_answers_total").expect("the shortcut's counter");
        assert!(given > 0.0, "{given}");
    }
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    the_shortcut_answers_as_the_route_does,
    the_limit_trips_at_exactly_the_burst_and_recovers,
    forwarded_for_counts_only_behind_a_trusted_proxy,
    a_flooding_websocket_client_is_limited_and_others_are_not,
    websocket_connections_per_ip_are_capped,
    etags_give_304_and_cache_control,
    the_cached_answer_follows_the_data_second_by_second,
    metrics_expose_every_family_and_move_with_traffic,
    oversized_requests_are_bounded,
    invented_methods_do_not_grow_the_metric_labels,
    a_subscribe_flood_is_closed_with_1008_not_reset,
);
