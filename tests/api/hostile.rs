//! What a hostile or careless client sends, on every engine: requests
//! hyper cannot parse (answered with problem bodies, below the router),
//! HTTP/2 connections left open with nothing on them, repeated query
//! parameters, and the caching and documentation of what it gets back.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Engine, Options, TestApp, eventually, spawn_app};

pub async fn app_with(engine: Engine, backfill_seconds: u32, extra: &[&str]) -> Option<TestApp> {
    spawn_app(Options {
        engine,
        archive: false,
        backfill_seconds,
        extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    })
    .await
}

/// Sends `bytes` on a connection of its own and reads until the server
/// closes it.
async fn exchange(app: &TestApp, bytes: &[u8]) -> String {
    let mut conn = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    // The server may answer and close before it has read it all.
    let _ = conn.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server closes the connection after its answer"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// Requests hyper refuses before any route sees them get problem bodies
/// like every other error answer.
async fn requests_that_cannot_be_parsed_get_problem_bodies(engine: Engine) {
    let Some(app) = app_with(engine, 0, &[]).await else {
        return;
    };
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect::<String>()
    );
    let mut client_hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ];
    client_hello.extend([0u8; 200]);
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        (
            "a 100 KB request line",
            long_line.into_bytes(),
            414,
            "request-too-large",
        ),
        (
            "101 headers",
            many_headers.into_bytes(),
            431,
            "request-too-large",
        ),
        (
            "Content-Length: -1",
            b"GET /api/v1/assets HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
            400,
            "malformed-request",
        ),
        (
            "a garbage request line",
            b"\x00\x01garbage\r\n\r\n".to_vec(),
            400,
            "malformed-request",
        ),
        ("a TLS ClientHello", client_hello, 400, "malformed-request"),
    ];
    for (what, bytes, status, slug) in cases {
        let answer = exchange(&app, &bytes).await;
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: {answer:?}"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{what}: {head}"
        );
        let problem: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        assert_eq!(problem["status"], status, "{what}");
        assert_eq!(problem["type"], format!("/problems/{slug}"), "{what}");
        // Its type resolves to a page, as every problem's does.
        let page = app.get(&format!("/problems/{slug}")).await;
        assert_eq!(page.status(), 200, "{what}");
    }
    // A request after a good one on the same connection is answered the
    // same way, after the good one's answer.
    let answer = exchange(
        &app,
        b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        answer.contains("HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json"),
        "{answer}"
    );
    app.cleanup().await;
}

/// An HTTP/2 frame header: length, type, flags, stream.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// A client that speaks HTTP/2, asks once, answers every ping and settings
/// frame, then opens no stream: how long after its opening the server
/// closed it (at most `within`), and whether its request was answered.
async fn idle_http2_client(app: &TestApp, within: Duration) -> (Option<Duration>, bool) {
    let mut conn = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(0x4, 0, 0, &[]));
    // GET http://x/health/live, end of stream: HPACK static entries for
    // :method GET, :scheme http, then literal :path and :authority.
    let mut block = vec![0x82, 0x86, 0x44, 12];
    block.extend(b"/health/live");
    block.extend([0x41, 1, b'x']);
    hello.extend(h2_frame(0x1, 0x5, 1, &block));
    conn.write_all(&hello).await.unwrap();
    let opened = std::time::Instant::now();
    let mut answered = false;
    let closed = tokio::time::timeout(within, async {
        let mut head = [0u8; 9];
        loop {
            if conn.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if conn.read_exact(&mut payload).await.is_err() {
                return;
            }
            match (head[3], head[4] & 1) {
                // A stream's headers: the answer to the request.
                (0x1, _) => answered = true,
                // Settings and pings, acknowledged.
                (0x4, 0) => {
                    let _ = conn.write_all(&h2_frame(0x4, 1, 0, &[])).await;
                }
                (0x6, 0) => {
                    let _ = conn.write_all(&h2_frame(0x6, 1, 0, &payload)).await;
                }
                // GOAWAY: closing.
                (0x7, _) => return,
                _ => {}
            }
        }
    })
    .await;
    (closed.ok().map(|()| opened.elapsed()), answered)
}

/// HTTP/2 connections with no stream open are closed at the idle deadline
/// like HTTP/1 ones: the server's own keep-alive pings (which a live client
/// answers) are not activity. A hundred at once: where the server pings,
/// its ping and the deadline fall due together, and only on some
/// connections does the ping come first and keep it open.
async fn an_idle_http2_connection_is_closed_at_the_deadline(engine: Engine) {
    let Some(app) = app_with(engine, 0, &["--http-idle-timeout-seconds", "2"]).await else {
        return;
    };
    let within = Duration::from_millis(3_500);
    let clients = futures_util::future::join_all((0..100).map(|_| idle_http2_client(&app, within)));
    for (closed, answered) in clients.await {
        assert!(answered, "the request was answered over HTTP/2");
        assert!(
            closed.is_some(),
            "an HTTP/2 connection with no stream open is still open after {within:?}"
        );
    }
    app.cleanup().await;
}

/// A parameter a route reads, given twice, is named; one no route reads
/// is ignored, repeated or not, as unknown parameters are.
async fn repeated_parameters_are_named_or_ignored(engine: Engine) {
    let Some(app) = app_with(engine, 0, &[]).await else {
        return;
    };
    let convert = "/api/v1/convert?from=EUR&to=USD";
    eventually("a EURUSD quote", Duration::from_secs(15), || async {
        (app.get(&format!("{convert}&amount=1")).await.status() == 200).then_some(())
    })
    .await;
    for (path, parameter) in [
        (format!("{convert}&amount=1&amount=2"), "amount"),
        (format!("{convert}&from=GBP&amount=1"), "from"),
        (
            "/api/v1/rates/EURUSD/history?limit=1&limit=2".to_owned(),
            "limit",
        ),
        (
            "/api/v1/rates/EURUSD/candles?interval=1m&interval=5m".to_owned(),
            "interval",
        ),
        (
            "/api/v1/rates?symbols=EURUSD&symbols=USDJPY".to_owned(),
            "symbols",
        ),
    ] {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
    }
    for path in [
        format!("{convert}&amount=1&_=1&_=2"),
        "/api/v1/rates/EURUSD?x=1&x=2".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.status(), 200, "{path}");
    }
    app.cleanup().await;
}

/// A page of closed candles with a next page, asked with `from` only, does
/// not change any more: it is cached long; the page that ends now is not.
async fn a_closed_candle_page_with_a_next_page_is_cached_long(engine: Engine) {
    let Some(app) = app_with(engine, 1_800, &[]).await else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let from = (now / 60) * 60 - 20 * 60;
    let page = eventually("a backfilled page", Duration::from_secs(15), || async {
        let resp = app
            .get(&format!(
                "/api/v1/rates/EURUSD/candles?interval=1m&from={from}&limit=2"
            ))
            .await;
        let cache = resp
            .headers()
            .get("cache-control")?
            .to_str()
            .ok()?
            .to_owned();
        let body: serde_json::Value = resp.json().await.ok()?;
        (body["candles"].as_array()?.len() == 2).then_some((cache, body))
    })
    .await;
    let (cache, body) = page;
    assert!(body["next_cursor"].is_string(), "{body}");
    assert_eq!(cache, "public, max-age=600", "{body}");
    let resp = app
        .get(&format!(
            "/api/v1/rates/EURUSD/candles?interval=1m&from={}",
            (now / 60) * 60 - 120
        ))
        .await;
    assert_eq!(resp.headers()["cache-control"], "public, max-age=1");
    app.cleanup().await;
}

/// Every route behind the rate limit documents its 429, so that a client
/// (or schemathesis) meets no undocumented status.
async fn every_rate_limited_route_documents_429(engine: Engine) {
    let Some(app) = app_with(engine, 0, &[]).await else {
        return;
    };
    let (status, doc) = app.get_json("/api-docs/openapi.json").await;
    assert_eq!(status, 200);
    let exempt = ["/health/", "/metrics", "/docs", "/api-docs/"];
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if exempt.iter().any(|e| path.starts_with(e)) {
            continue;
        }
        for (method, operation) in operations.as_object().unwrap() {
            assert!(
                operation["responses"].get("429").is_some(),
                "{method} {path} is rate-limited but does not document 429"
            );
            checked += 1;
        }
    }
    assert!(checked >= 9, "{checked} operations checked");
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    requests_that_cannot_be_parsed_get_problem_bodies,
    an_idle_http2_connection_is_closed_at_the_deadline,
    repeated_parameters_are_named_or_ignored,
    a_closed_candle_page_with_a_next_page_is_cached_long,
    every_rate_limited_route_documents_429,
);
