//! What a browser front end and an unusual client meet at the HTTP edge:
//! CORS, problem bodies on every error (with `type` pages that resolve),
//! compression, query parameters named when bad, `symbols=` subsets, and
//! the limit on unmatched paths.

use std::collections::BTreeSet;

use crate::helpers::{Engine, Options, TestApp, eventually, spawn_app};

const ORIGIN: &str = "https://trader.example";

async fn app_with(engine: Engine, extra: &[&str]) -> Option<TestApp> {
    spawn_app(Options {
        engine,
        archive: false,
        backfill_seconds: 120,
        extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    })
    .await
}

/// Asserts a problem body and returns it.
async fn problem(resp: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

async fn cors_preflights_and_every_answer_to_an_origin_carry_the_headers(engine: Engine) {
    let Some(app) = app_with(
        engine,
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "2"],
    )
    .await
    else {
        return;
    };
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/rates"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "if-none-match")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("if-none-match")
    );
    // A 404 and, past the burst, a 429 carry them too.
    let get = |path: &'static str| app.http.get(app.url(path)).header("origin", ORIGIN).send();
    let not_found = get("/api/v1/rates/XXXYYY").await.unwrap();
    assert_eq!(not_found.headers()["access-control-allow-origin"], "*");
    let mut limited = None;
    for _ in 0..10 {
        let r = get("/api/v1/assets").await.unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("a 429 past the burst");
    let exposed = limited.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        exposed.contains("retry-after") && exposed.contains("etag"),
        "{exposed}"
    );
    assert!(varies_by_origin(&limited), "{:?}", limited.headers());
    app.cleanup().await;
}

/// Whether an answer says it varies by `Origin`.
fn varies_by_origin(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
}

/// A request without `Origin` (no browser on another origin) passes the
/// CORS layer by: with any origin allowed it still gets
/// `Access-Control-Allow-Origin: *` (a cache that ignores `Vary` may hand
/// its answer to a browser), not the exposed list nor a preflight's
/// headers; every answer, with or without, varies by `Origin`.
async fn cors_headers_only_for_an_origin(engine: Engine) {
    let Some(app) = app_with(engine, &[]).await else {
        return;
    };
    let rate = eventually("a rate", std::time::Duration::from_secs(20), || async {
        let r = app.get("/api/v1/rates/EURUSD").await;
        (r.status() == 200).then_some(r)
    })
    .await;
    let no_origin = |r: &reqwest::Response| {
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "*", "{h:?}");
        assert!(!h.contains_key("access-control-expose-headers"), "{h:?}");
        assert!(!h.contains_key("access-control-allow-methods"), "{h:?}");
        assert!(varies_by_origin(r), "{h:?}");
    };
    no_origin(&rate);
    // The prepared answer's own length, and the body it announces.
    let length: usize = rate.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rate.bytes().await.unwrap().len(), length);
    no_origin(&app.get("/api/v1/rates/XXXYYY").await);
    // An OPTIONS without `Origin` is no preflight: the route has no OPTIONS.
    let options = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/rates"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 405);
    no_origin(&options);
    let with = app
        .http
        .get(app.url("/api/v1/rates/EURUSD"))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(with.headers()["access-control-allow-origin"], "*");
    assert!(
        with.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("etag"),
        "{:?}",
        with.headers()
    );
    assert!(varies_by_origin(&with), "{:?}", with.headers());
    app.cleanup().await;
}

async fn cors_origins_can_be_listed(engine: Engine) {
    let Some(app) = app_with(
        engine,
        &[
            "--cors-origins",
            "https://trader.example, https://other.example",
        ],
    )
    .await
    else {
        return;
    };
    let ask = |origin: &'static str| {
        app.http
            .get(app.url("/api/v1/assets"))
            .header("origin", origin)
            .send()
    };
    let listed = ask(ORIGIN).await.unwrap();
    assert_eq!(listed.headers()["access-control-allow-origin"], ORIGIN);
    let unlisted = ask("https://evil.example").await.unwrap();
    assert!(
        unlisted
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // Without an Origin: none of them (the allowed origin depends on it).
    let none = app.get("/api/v1/assets").await;
    assert!(
        !none
            .headers()
            .keys()
            .any(|k| k.as_str().starts_with("access-control-")),
        "{:?}",
        none.headers()
    );
    assert!(varies_by_origin(&none), "{:?}", none.headers());
    app.cleanup().await;
}

async fn every_error_is_a_problem_whose_type_resolves(engine: Engine) {
    let Some(app) = app_with(engine, &[]).await else {
        return;
    };
    let mut types = BTreeSet::new();
    // 405, with Allow.
    let r = app
        .http
        .delete(app.url("/api/v1/rates"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["allow"].to_str().unwrap().contains("GET"));
    types.insert(problem(r, 405).await["type"].as_str().unwrap().to_owned());
    // 413. The server closes that connection without reading the body: a
    // client of its own, so that no later request is sent on it.
    let r = reqwest::Client::new()
        .get(app.url("/api/v1/rates"))
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    types.insert(problem(r, 413).await["type"].as_str().unwrap().to_owned());
    // 404 for an unknown path, and under the docs.
    for path in ["/nothing/here", "/docs/nothing-here.js"] {
        let r = app.get(path).await;
        types.insert(problem(r, 404).await["type"].as_str().unwrap().to_owned());
    }
    // A parameter given twice is named.
    let r = app
        .get("/api/v1/rates/EURUSD/history?limit=1&limit=2")
        .await;
    let body = problem(r, 400).await;
    assert_eq!(body["parameter"], "limit", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("more than once"));
    types.insert(body["type"].as_str().unwrap().to_owned());
    // 404 for an unknown symbol; 426 for a plain GET on the WebSocket path.
    types.insert(
        problem(app.get("/api/v1/rates/XXXYYY").await, 404).await["type"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    types.insert(
        problem(app.get("/api/v1/ws").await, 426).await["type"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    assert!(types.len() >= 5, "{types:?}");
    for t in types {
        assert!(t.starts_with("/problems/"), "{t}");
        let page = app.get(&t).await;
        assert_eq!(page.status(), 200, "{t} resolves");
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let text = page.text().await.unwrap();
        assert!(text.contains(&t), "the page names its type: {t}");
    }
    problem(app.get("/problems/no-such-thing").await, 404).await;
    app.cleanup().await;
}

async fn history_and_the_openapi_document_are_compressed_rates_are_not(engine: Engine) {
    let Some(app) = app_with(engine, &[]).await else {
        return;
    };
    let path = "/api/v1/rates/EURUSD/history?limit=100";
    eventually(
        "a backfilled window",
        std::time::Duration::from_secs(5),
        || async {
            let (_, page) = app.get_json(path).await;
            (page["points"].as_array()?.len() == 100).then_some(())
        },
    )
    .await;
    // reqwest here has no decompression: what arrives is what was sent.
    let gz = |p: &'static str| {
        app.http
            .get(app.url(p))
            .header("accept-encoding", "gzip")
            .send()
    };
    let plain = app.get(path).await;
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_len = plain.bytes().await.unwrap().len();
    let zipped = gz(path).await.unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let zipped_len = zipped.bytes().await.unwrap().len();
    assert!(
        zipped_len * 4 < plain_len,
        "{zipped_len} of {plain_len} bytes"
    );
    let doc = gz("/api-docs/openapi.json").await.unwrap();
    assert_eq!(doc.headers()["content-encoding"], "gzip");
    let rate = gz("/api/v1/rates/EURUSD").await.unwrap();
    assert!(rate.headers().get("content-encoding").is_none());
    app.cleanup().await;
}

async fn symbols_selects_the_rates_listed(engine: Engine) {
    let Some(app) = app_with(engine, &[]).await else {
        return;
    };
    let (status, all) = eventually("rates", std::time::Duration::from_secs(5), || async {
        let (s, b) = app.get_json("/api/v1/rates").await;
        (s == 200 && b["rates"].as_array()?.len() == 5).then_some((s, b))
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(all["rates"].as_array().unwrap().len(), 5);
    let (status, some) = app.get_json("/api/v1/rates?symbols=usd-jpy,EURUSD").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = some["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["EURUSD", "USDJPY"], "catalog order");
    let (status, body) = app.get_json("/api/v1/rates?symbols=EURUSD,XXXYYY").await;
    assert_eq!((status, body["parameter"].as_str()), (404, Some("symbol")));
    for bad in ["symbols=", "symbols=EURUSD,,USDJPY", "symbols=EUR$USD"] {
        let (status, body) = app.get_json(&format!("/api/v1/rates?{bad}")).await;
        assert_eq!(
            (status, body["parameter"].as_str()),
            (400, Some("symbols")),
            "{bad}"
        );
    }
    app.cleanup().await;
}

/// Every request counts against the caller's limit, whatever it asks for:
/// a path no route serves (one beside the docs' or the metrics' too), a
/// method a route does not take (405).
async fn unmatched_paths_are_rate_limited_too(engine: Engine) {
    let Some(app) = app_with(
        engine,
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "3"],
    )
    .await
    else {
        return;
    };
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = match i % 3 {
            0 => app.get("/no/such/path").await,
            1 => app
                .http
                .post(app.url("/api/v1/rates"))
                .send()
                .await
                .unwrap(),
            _ if i == 2 => app.get("/api-docs/no-such-document").await,
            _ => app.get("/metricsx").await,
        };
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [404, 405, 404, 429, 429, 429]);
    app.cleanup().await;
}

async fn websocket_handshakes_are_checked(engine: Engine) {
    let Some(app) = app_with(engine, &[]).await else {
        return;
    };
    let upgrade = |key: &'static str, version: &'static str| {
        app.http
            .get(app.url("/api/v1/ws"))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", key)
            .header("sec-websocket-version", version)
            .send()
    };
    for key in [
        "",
        "short",
        "not base64 at all!!!!!!!",
        "dGhlIHNhbXBsZSBub25jZXg=",
    ] {
        let r = upgrade(key, "13").await.unwrap();
        assert_eq!(r.headers()["sec-websocket-version"], "13");
        let body = problem(r, 400).await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("Sec-WebSocket-Key"),
            "{key}: {body}"
        );
    }
    let r = upgrade("dGhlIHNhbXBsZSBub25jZQ==", "8").await.unwrap();
    assert_eq!(
        r.headers()["sec-websocket-version"],
        "13",
        "says what it speaks"
    );
    problem(r, 400).await;
    let ok = upgrade("dGhlIHNhbXBsZSBub25jZQ==", "13").await.unwrap();
    assert_eq!(ok.status(), 101);
    // RFC 6455: the key must not appear twice, on every WebSocket route.
    for path in ["/api/v1/ws", "/", "/api/v2/ws"] {
        let r = app
            .http
            .get(app.url(path))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-key", "AQIDBAUGBwgJCgsMDQ4PEA==")
            .header("sec-websocket-version", "13")
            .send()
            .await
            .unwrap();
        let body = problem(r, 400).await;
        assert!(
            body["detail"].as_str().unwrap().contains("appear once"),
            "{path}: {body}"
        );
    }
    app.cleanup().await;
}

async fn the_openapi_document_names_its_operations(engine: Engine) {
    let Some(app) = app_with(engine, &[]).await else {
        return;
    };
    let (status, doc) = app.get_json("/api-docs/openapi.json").await;
    assert_eq!(status, 200);
    let ops: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .filter_map(|o| o["operationId"].as_str())
        .collect();
    for op in [
        "list_assets",
        "list_rates",
        "get_rate",
        "get_rate_history",
        "health_ready",
    ] {
        assert!(ops.contains(op), "{op} in {ops:?}");
    }
    assert!(
        !ops.iter()
            .any(|o| ["render", "live", "ready", "rate"].contains(o)),
        "{ops:?}"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(!schemas.contains_key("i64") && !schemas.contains_key("u32"));
    assert!(!doc.to_string().contains("#/components/schemas/i64"));
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    cors_preflights_and_every_answer_to_an_origin_carry_the_headers,
    cors_origins_can_be_listed,
    cors_headers_only_for_an_origin,
    every_error_is_a_problem_whose_type_resolves,
    history_and_the_openapi_document_are_compressed_rates_are_not,
    symbols_selects_the_rates_listed,
    unmatched_paths_are_rate_limited_too,
    websocket_handshakes_are_checked,
    the_openapi_document_names_its_operations,
);
