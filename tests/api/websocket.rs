//! The WebSocket protocol of API.md against the real service and Redis.

use std::time::Duration;

use crate::helpers::{
    Engine, Options, TestApp, assert_consecutive, next_frame, spawn_app, until_action,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

async fn connect(app: &TestApp, path: &str) -> Ws {
    let url = format!("{}{path}", app.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

fn subscribe(id: u32) -> Value {
    json!({"action": "subscribe", "message": {"assetId": id}})
}

fn point_times(history: &Value) -> Vec<i64> {
    crate::helpers::times(&history["message"]["points"])
}

async fn assets_answer_lists_the_catalog_on_both_endpoints(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    for path in ["/api/v1/ws", "/"] {
        let mut ws = connect(&app, path).await;
        send(&mut ws, json!({"action": "assets", "message": {}})).await;
        let f = next_frame(&mut ws).await;
        assert_eq!(f["action"], "assets", "{path}");
        assert_eq!(
            f["message"]["assets"][0],
            json!({"id": 1, "name": "EURUSD"})
        );
        assert_eq!(f["message"]["assets"].as_array().unwrap().len(), 5);
    }
    // A plain GET / is the test page.
    let resp = app.get("/").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("<canvas"));
    app.cleanup().await;
}

async fn subscribe_gives_backfilled_history_then_live_points_one_second_apart(engine: Engine) {
    let Some(app) = spawn_app(Options {
        backfill_seconds: 1800,
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let mut ws = connect(&app, "/api/v1/ws").await;
    // The backfill lands with the first tick; subscribe once it has.
    crate::helpers::eventually("a backfilled history", WAIT, || async {
        let mut ws = connect(&app, "/api/v1/ws").await;
        send(&mut ws, subscribe(1)).await;
        let h = until_action(&mut ws, "asset_history").await;
        (point_times(&h).len() >= 1700).then_some(())
    })
    .await;
    send(&mut ws, subscribe(1)).await;
    let h = until_action(&mut ws, "asset_history").await;
    let t = point_times(&h);
    assert!(t.len() >= 1700 && t.len() <= 1800, "{} points", t.len());
    assert_consecutive(&t);
    assert!(
        h["message"]["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["assetId"] == 1 && p["assetName"] == "EURUSD" && p["value"].is_f64())
    );
    let last = *t.last().unwrap();
    for expected in last + 1..=last + 3 {
        let p = next_frame(&mut ws).await;
        assert_eq!(p["action"], "point");
        assert_eq!(p["message"]["time"].as_i64().unwrap(), expected);
    }
    app.cleanup().await;
}

async fn handoff_is_exact_at_every_offset_inside_the_second(engine: Engine) {
    let Some(app) = spawn_app(Options {
        backfill_seconds: 120,
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // Wait for the worker to be ticking.
    crate::helpers::eventually("ticks", WAIT, || async {
        app.engine.latest(1).await.ok().flatten().map(|_| ())
    })
    .await;
    let mut tasks = Vec::new();
    for k in 0..24u64 {
        let url = format!("{}/api/v1/ws", app.base.replace("http://", "ws://"));
        tasks.push(tokio::spawn(async move {
            // Subscribe k * 41 ms into a second (spanning 0..984 ms).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let target = Duration::from_millis(k * 41);
            let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
            let wait = if target >= into {
                target - into
            } else {
                Duration::from_secs(1) + target - into
            };
            tokio::time::sleep(wait).await;
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            send(&mut ws, subscribe((k % 5 + 1) as u32)).await;
            let h = until_action(&mut ws, "asset_history").await;
            let last = *point_times(&h).last().expect("history");
            let first_live = until_action(&mut ws, "point").await;
            let second_live = until_action(&mut ws, "point").await;
            (
                k,
                last,
                first_live["message"]["time"].as_i64().unwrap(),
                second_live["message"]["time"].as_i64().unwrap(),
            )
        }));
    }
    for t in tasks {
        let (k, last, first, second) = t.await.unwrap();
        assert_eq!(first, last + 1, "offset {} ms: gap or duplicate", k * 41);
        assert_eq!(second, first + 1, "offset {} ms", k * 41);
    }
    app.cleanup().await;
}

async fn a_second_subscribe_switches_the_asset(engine: Engine) {
    let Some(app) = spawn_app(Options {
        backfill_seconds: 60,
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let mut ws = connect(&app, "/api/v1/ws").await;
    send(&mut ws, subscribe(1)).await;
    until_action(&mut ws, "asset_history").await;
    let p = until_action(&mut ws, "point").await;
    assert_eq!(p["message"]["assetId"], 1);
    send(&mut ws, subscribe(2)).await;
    let h = until_action(&mut ws, "asset_history").await;
    let points = h["message"]["points"].as_array().unwrap();
    assert!(!points.is_empty());
    assert!(
        points
            .iter()
            .all(|p| p["assetId"] == 2 && p["assetName"] == "USDJPY")
    );
    let last = point_times(&h).last().copied().unwrap();
    for expected in last + 1..=last + 3 {
        let f = next_frame(&mut ws).await;
        assert_eq!(f["action"], "point");
        assert_eq!(f["message"]["assetId"], 2, "only the new asset's points");
        assert_eq!(f["message"]["time"].as_i64().unwrap(), expected);
    }
    app.cleanup().await;
}

async fn every_bad_frame_gets_an_error_and_the_connection_survives(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let mut ws = connect(&app, "/api/v1/ws").await;
    let cases: Vec<(Message, &str, &str)> = vec![
        (
            Message::text("not json"),
            "ValidationError",
            "not valid JSON",
        ),
        (
            Message::binary(vec![1u8, 2, 3]),
            "ValidationError",
            "binary frames",
        ),
        (
            Message::text(r#"{"message":{}}"#),
            "ValidationError",
            "missing 'action'",
        ),
        (
            Message::text(r#"{"action":"foo","message":{}}"#),
            "ValidationError",
            "unknown action 'foo'; expected one of: assets, subscribe",
        ),
        (
            Message::text(r#"{"action":"subscribe","message":{}}"#),
            "ValidationError",
            "assetId",
        ),
        (
            Message::text(r#"{"action":"subscribe","message":{"assetId":"1"}}"#),
            "ValidationError",
            "assetId must be",
        ),
        (
            Message::text(r#"{"action":"subscribe","message":{"assetId":1.5}}"#),
            "ValidationError",
            "assetId must be",
        ),
        (
            Message::text(r#"{"action":"subscribe","message":{"assetId":99}}"#),
            "NotFound",
            "unknown assetId 99",
        ),
    ];
    for (msg, kind, text) in cases {
        let shown = format!("{msg:?}");
        ws.send(msg).await.unwrap();
        let f = next_frame(&mut ws).await;
        assert_eq!(f["action"], "error", "{shown}");
        assert_eq!(f["message"]["error_type"], kind, "{shown}");
        let got = f["message"]["error_text"].as_str().unwrap();
        assert!(got.contains(text), "{shown}: {got}");
    }
    send(&mut ws, json!({"action": "assets", "message": {}})).await;
    assert_eq!(next_frame(&mut ws).await["action"], "assets", "still open");
    app.cleanup().await;
}

async fn an_oversized_frame_is_refused_with_1009(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let mut ws = connect(&app, "/api/v1/ws").await;
    let huge = format!(r#"{{"action":"assets","pad":"{}"}}"#, "x".repeat(70 * 1024));
    ws.send(Message::text(huge)).await.unwrap();
    let outcome = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(c)))) => return Some(c.code),
                Some(Ok(Message::Text(t))) => {
                    let f: Value = serde_json::from_str(t.as_str()).unwrap();
                    assert_eq!(f["action"], "error", "{f}");
                    return None;
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("an answer");
    assert_eq!(outcome, Some(CloseCode::Size));
    app.cleanup().await;
}

async fn two_hundred_clients_on_one_asset_get_the_same_points(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut ws = connect(&app, "/api/v1/ws").await;
        send(&mut ws, subscribe(3)).await;
        until_action(&mut ws, "asset_history").await;
        clients.push(ws);
    }
    // Everyone has attached; from the next second on, all see the same points.
    let start = ratesd::clock::unix_now() + 1;
    let mut tasks = Vec::new();
    for mut ws in clients {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 3 {
                let f = until_action(&mut ws, "point").await;
                let t = f["message"]["time"].as_i64().unwrap();
                if t >= start {
                    got.push((t, f["message"]["value"].as_f64().unwrap()));
                }
            }
            got
        }));
    }
    let mut first = None;
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got[1].0, got[0].0 + 1);
        assert_eq!(got[2].0, got[1].0 + 1);
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "every client sees the same points"),
        }
    }
    app.cleanup().await;
}

async fn a_client_that_never_reads_does_not_hold_up_the_others(engine: Engine) {
    let Some(app) = spawn_app(Options {
        backfill_seconds: 1800,
        archive: false,
        // Its flood of subscribes must reach the server, not be rate limited.
        extra: vec!["--ws-frames-per-second".into(), "0".into()],
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    crate::helpers::eventually("backfill", WAIT, || async {
        (app.engine.window_after(1, 0).await.ok()?.len() >= 1800).then_some(())
    })
    .await;
    // The stuck client asks for ~130 KB of history 200 times and reads
    // nothing: its socket and the server's write buffer fill up.
    let mut stuck = connect(&app, "/api/v1/ws").await;
    for _ in 0..200 {
        send(&mut stuck, subscribe(1)).await;
    }
    let mut ws = connect(&app, "/api/v1/ws").await;
    send(&mut ws, subscribe(1)).await;
    let h = until_action(&mut ws, "asset_history").await;
    let mut last = *point_times(&h).last().unwrap();
    for _ in 0..5 {
        let p = until_action(&mut ws, "point").await;
        let t = p["message"]["time"].as_i64().unwrap();
        assert_eq!(t, last + 1, "the reading client misses nothing");
        last = t;
    }
    drop(stuck);
    app.cleanup().await;
}

async fn shutdown_closes_sockets_with_1001(engine: Engine) {
    let Some(mut app) = spawn_app(Options {
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // A subscribed socket learns it from its live channel, an idle one
    // from the shutdown signal: both are closed.
    let mut ws = connect(&app, "/api/v1/ws").await;
    send(&mut ws, subscribe(1)).await;
    until_action(&mut ws, "asset_history").await;
    let mut idle = connect(&app, "/api/v1/ws").await;
    send(&mut idle, json!({"action": "assets", "message": {}})).await;
    until_action(&mut idle, "assets").await;
    let stop = tokio::spawn(async move {
        app.stop_service().await;
        app
    });
    for ws in [&mut ws, &mut idle] {
        let close = crate::helpers::close_frame(ws, WAIT).await;
        assert_eq!(close.code, CloseCode::Away);
    }
    stop.await.unwrap().cleanup().await;
}

/// Frames (opcode, payload) a server sent, parsed from raw bytes (server
/// frames are unmasked).
fn parse_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 2 {
        let opcode = b[0] & 0x0f;
        let (len, head) = match b[1] & 0x7f {
            126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        if b.len() < head + len {
            break;
        }
        out.push((opcode, b[head..head + len].to_vec()));
        b = &b[head + len..];
    }
    out
}

async fn a_client_that_stops_answering_pings_is_closed(engine: Engine) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(app) = spawn_app(Options {
        archive: false,
        extra: vec!["--ws-ping-seconds".into(), "1".into()],
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // A raw client: it upgrades, then never writes again, so it answers no
    // ping (a tungstenite client would answer them as soon as it reads).
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET /api/v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let read_all = tokio::time::timeout(WAIT, tcp.read_to_end(&mut received)).await;
    assert!(
        read_all.is_ok(),
        "the server closed the connection within {WAIT:?}"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let body = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let frames = parse_frames(&received[body..]);
    let pings = frames.iter().filter(|f| f.0 == 0x9).count();
    assert!(pings >= 2, "the server pinged: {frames:?}");
    let close = frames.iter().find(|f| f.0 == 0x8).expect("a close frame");
    assert_eq!(u16::from_be_bytes([close.1[0], close.1[1]]), 1008);
    let reason = String::from_utf8_lossy(&close.1[2..]);
    assert!(reason.contains("ping"), "{reason}");
    app.cleanup().await;
}

/// Subscribes that arrive together (a reconnect storm) share one read of
/// the window; a history that ends before the newest announced second is
/// read again, so the handoff stays gapless.
async fn a_subscribe_storm_reads_the_history_once(engine: Engine) {
    use ratesd::stream::history::HistoryCache;
    use std::sync::Arc;

    let Some(app) = spawn_app(Options {
        archive: false,
        backfill_seconds: 60,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let catalog = app.config.catalog().unwrap();
    let cache = Arc::new(HistoryCache::new(&catalog));
    let newest = crate::helpers::eventually("a window", WAIT, || async {
        let last = app.engine.window_after(1, 0).await.ok()?.last()?.time;
        Some(last)
    })
    .await;
    let gets = (0..200).map(|_| {
        let (cache, engine) = (cache.clone(), app.engine.clone());
        tokio::spawn(async move { cache.get(&engine, None, 1, 1800, newest).await.unwrap() })
    });
    let histories = futures_util::future::join_all(gets).await;
    let first = histories[0].as_ref().unwrap().clone();
    assert!(first.last >= Some(newest), "{:?} < {newest}", first.last);
    for h in &histories {
        assert!(Arc::ptr_eq(h.as_ref().unwrap(), &first), "one read for all");
    }
    let later = first.last.unwrap() + 1;
    let again = cache.get(&app.engine, None, 1, 1800, later).await.unwrap();
    assert!(
        !Arc::ptr_eq(&again, &first),
        "a history too old is read again"
    );
    assert!(again.last >= first.last);
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    assets_answer_lists_the_catalog_on_both_endpoints,
    subscribe_gives_backfilled_history_then_live_points_one_second_apart,
    handoff_is_exact_at_every_offset_inside_the_second,
    a_second_subscribe_switches_the_asset,
    every_bad_frame_gets_an_error_and_the_connection_survives,
    an_oversized_frame_is_refused_with_1009,
    two_hundred_clients_on_one_asset_get_the_same_points,
    a_client_that_never_reads_does_not_hold_up_the_others,
    shutdown_closes_sockets_with_1001,
    a_client_that_stops_answering_pings_is_closed,
    a_subscribe_storm_reads_the_history_once,
);
