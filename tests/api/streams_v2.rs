//! What a trading screen streams, on every engine: an asset's 24-hour
//! ticker after every point, the whole market in one frame a second
//! (`!all@point`, `!all@ticker`), resumed without a gap, and streams named
//! in the URL.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, assert_consecutive, eventually};
use crate::websocket_v2::{Client, service};

const SYMBOLS: [&str; 5] = ["EURUSD", "USDJPY", "GBPUSD", "AUDUSD", "USDCAD"];

/// A service whose tickers are seeded (their routes answer).
async fn ready(engine: Engine) -> Option<TestApp> {
    let app = service(engine, 1800, &[]).await?;
    eventually("seeded tickers", Duration::from_secs(20), || async {
        let (status, list) = app.get_json("/api/v1/tickers").await;
        (status == 200 && list["tickers"].as_array()?.len() == 5).then_some(())
    })
    .await;
    Some(app)
}

/// A ticker stream sends the asset's ticker after every point: its
/// `closeTime` is that point's second and its `last` that point's value.
async fn a_ticker_stream_follows_every_point(engine: Engine) {
    let Some(app) = ready(engine).await else {
        return;
    };
    let mut c = Client::connect(&app).await;
    c.subscribe(1, json!({"streams": ["EURUSD@ticker", "EURUSD@point"]}))
        .await;
    let snapshot = c.snapshot("EURUSD@ticker").await;
    let first = &snapshot["ticker"];
    assert_eq!(first["symbol"], "EURUSD", "{snapshot}");
    assert!(first["count"].as_u64().unwrap() > 1000, "{snapshot}");
    let mut points = std::collections::BTreeMap::new();
    let mut closes = Vec::new();
    for _ in 0..4 {
        let t = c.data("EURUSD@ticker").await;
        let p = c.data("EURUSD@point").await;
        points.insert(p["time"].as_i64().unwrap(), p["value"].as_f64().unwrap());
        let close = t["closeTime"].as_i64().unwrap();
        closes.push(close);
        assert_eq!(t["symbol"], "EURUSD");
        assert_eq!(t["stale"], false);
        if let Some(value) = points.get(&close) {
            assert_eq!(t["last"].as_f64(), Some(*value), "{t}");
        }
        let high = t["high"].as_f64().unwrap();
        let low = t["low"].as_f64().unwrap();
        let last = t["last"].as_f64().unwrap();
        assert!(low <= last && last <= high, "{t}");
    }
    assert_consecutive(&closes);
    assert_eq!(
        closes[0],
        first["closeTime"].as_i64().unwrap() + 1,
        "no gap after the snapshot"
    );
    app.cleanup().await;
}

/// `!all@point`: one frame a second with every asset's point of that
/// second, in catalog order; `!all@ticker`: every asset's ticker.
async fn the_whole_market_comes_in_one_frame_a_second(engine: Engine) {
    let Some(app) = ready(engine).await else {
        return;
    };
    let mut c = Client::connect(&app).await;
    let answer = c
        .subscribe(1, json!({"streams": ["!all@point", "!all@ticker"]}))
        .await;
    assert_eq!(
        answer["result"]["streams"],
        json!(["!all@point", "!all@ticker"])
    );
    let snapshot = c.snapshot("!all@point").await;
    assert_eq!(snapshot["recovered"], true);
    let frames = snapshot["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 1, "the latest second: {snapshot}");
    let tickers = c.snapshot("!all@ticker").await;
    assert_eq!(tickers["tickers"].as_array().unwrap().len(), 5, "{tickers}");
    let mut seconds = vec![frames[0]["time"].as_i64().unwrap()];
    for _ in 0..4 {
        let frame = c.data("!all@point").await;
        let time = frame["time"].as_i64().unwrap();
        let names: Vec<&str> = frame["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["time"].as_i64(), Some(time), "{frame}");
                p["assetName"].as_str().unwrap()
            })
            .collect();
        assert_eq!(names, SYMBOLS, "every asset, catalog order: {frame}");
        seconds.push(time);
        let all = c.data("!all@ticker").await;
        let closes: Vec<i64> = all["tickers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["closeTime"].as_i64().unwrap())
            .collect();
        assert_eq!(closes.len(), 5, "{all}");
        assert!(closes.iter().all(|&c| c <= all["time"].as_i64().unwrap()));
    }
    assert_consecutive(&seconds);

    // A reconnect with `since` gets every second after it, then live, no
    // gap and no duplicate.
    let epoch = answer["result"]["epoch"].as_str().unwrap().to_owned();
    let since = seconds[seconds.len() - 3];
    drop(c);
    let mut again = Client::connect(&app).await;
    again
        .subscribe(
            2,
            json!({"streams": ["!all@point"], "since": since, "epoch": epoch}),
        )
        .await;
    let snapshot = again.snapshot("!all@point").await;
    assert_eq!(snapshot["recovered"], true, "{snapshot}");
    let mut resumed: Vec<i64> = Vec::new();
    for f in snapshot["frames"].as_array().unwrap() {
        assert_eq!(f["points"].as_array().unwrap().len(), 5, "{f}");
        resumed.push(f["time"].as_i64().unwrap());
    }
    for _ in 0..2 {
        resumed.push(again.data("!all@point").await["time"].as_i64().unwrap());
    }
    assert_eq!(resumed[0], since + 1, "{resumed:?}");
    assert_consecutive(&resumed);
    // An epoch that is not the current one: not recovered.
    let mut other = Client::connect(&app).await;
    other
        .subscribe(
            3,
            json!({"streams": ["!all@point"], "since": since, "epoch": "0"}),
        )
        .await;
    assert_eq!(other.snapshot("!all@point").await["recovered"], false);
    app.cleanup().await;
}

/// `/api/v2/ws?streams=...` subscribes as the connection opens, answered
/// under id "url"; a bad list refuses the upgrade with a 400 problem.
async fn streams_named_in_the_url_are_subscribed_at_once(engine: Engine) {
    let Some(app) = ready(engine).await else {
        return;
    };
    let mut c = Client::connect_to(
        &app,
        "/api/v2/ws?streams=EURUSD@point,usdjpy@kline_1m&history=5",
    )
    .await;
    let answer = c.answer(Value::String("url".into())).await;
    assert_eq!(
        answer["result"]["streams"],
        json!(["EURUSD@point", "USDJPY@kline_1m"]),
        "{answer}"
    );
    let points = c.snapshot("EURUSD@point").await;
    assert_eq!(points["points"].as_array().unwrap().len(), 5, "{points}");
    c.snapshot("USDJPY@kline_1m").await;
    c.data("EURUSD@point").await;
    // The connection goes on like any other.
    let list = c.call(json!(1), "list", json!(null)).await;
    assert_eq!(list["result"]["streams"].as_array().unwrap().len(), 2);
    let too_many = (0..65)
        .map(|_| "EURUSD@point")
        .collect::<Vec<_>>()
        .join(",");
    for query in [
        "streams=EURUSD@nope".to_owned(),
        "streams=XXXYYY@point".to_owned(),
        "streams=".to_owned(),
        format!("streams={too_many}"),
        "streams=EURUSD@point&history=99999".to_owned(),
        "history=60".to_owned(),
    ] {
        let resp = app
            .http
            .get(app.url(&format!("/api/v2/ws?{query}")))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}: no upgrade");
        let problem: Value = resp.json().await.unwrap();
        assert!(
            ["streams", "history"].contains(&problem["parameter"].as_str().unwrap_or_default()),
            "{query}: {problem}"
        );
    }
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    a_ticker_stream_follows_every_point,
    the_whole_market_comes_in_one_frame_a_second,
    streams_named_in_the_url_are_subscribed_at_once,
);
