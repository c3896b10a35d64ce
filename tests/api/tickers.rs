//! 24-hour tickers on every engine, with and without an archive: each
//! equals what the `1m` candles of its range sum up to, and with an
//! archive the range reaches back a whole day.

use std::time::Duration;

use ratesd::config::Role;
use ratesd::store::Archive;
use serde_json::Value;

use crate::helpers::{
    Engine, Needs, Options, PG_BASE, TestApp, eventually, now, reachable, spawn_app, spawn_with,
    unique_id,
};

/// `(open, high, low, last, count)` of the `1m` candles of `symbol` from
/// `from` on, following cursors.
async fn by_candles(app: &TestApp, symbol: &str, from: i64) -> (f64, f64, f64, f64, u64) {
    let mut candles: Vec<Value> = Vec::new();
    let base = format!("/api/v1/rates/{symbol}/candles?interval=1m&from={from}&limit=1000");
    let mut url = base.clone();
    loop {
        let (status, page) = app.get_json(&url).await;
        assert_eq!(status, 200, "{page}");
        candles.extend(page["candles"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{base}&cursor={c}"),
            None => break,
        }
    }
    let f = |c: &Value, k: &str| c[k].as_f64().unwrap();
    (
        f(&candles[0], "open"),
        candles
            .iter()
            .map(|c| f(c, "high"))
            .fold(f64::MIN, f64::max),
        candles.iter().map(|c| f(c, "low")).fold(f64::MAX, f64::min),
        f(candles.last().unwrap(), "close"),
        candles.iter().map(|c| c["count"].as_u64().unwrap()).sum(),
    )
}

/// Each asset's ticker, and the same figures from its `1m` candles read
/// with no tick in between; both as `(ticker, candles)`.
async fn tickers_and_candles(app: &TestApp) -> Vec<(Value, (f64, f64, f64, f64, u64))> {
    eventually(
        "tickers equal to their candles",
        Duration::from_secs(30),
        || async {
            let (status, list) = app.get_json("/api/v1/tickers").await;
            if status != 200 {
                return None;
            }
            let mut out = Vec::new();
            for t in list["tickers"].as_array()? {
                let symbol = t["symbol"].as_str()?;
                let candles = by_candles(app, symbol, t["openTime"].as_i64()?).await;
                out.push((t.clone(), candles));
            }
            // A tick between the two reads moves both: read again.
            let (_, again) = app.get_json("/api/v1/tickers").await;
            (again == list && out.len() == 5).then_some(out)
        },
    )
    .await
}

fn assert_ticker_is_its_candles(
    t: &Value,
    (open, high, low, last, count): (f64, f64, f64, f64, u64),
) {
    let f = |k: &str| t[k].as_f64().unwrap();
    assert_eq!(
        (
            f("open"),
            f("high"),
            f("low"),
            f("last"),
            t["count"].as_u64().unwrap()
        ),
        (open, high, low, last, count),
        "{t}"
    );
    let change = ((last - open) * 1e6).round() / 1e6;
    assert_eq!(f("change"), change, "{t}");
    let percent = (100.0 * (last - open) / open * 1e4).round() / 1e4;
    assert_eq!(f("changePercent"), percent, "{t}");
    assert_eq!(t["stale"], false);
    let (open_time, close_time) = (
        t["openTime"].as_i64().unwrap(),
        t["closeTime"].as_i64().unwrap(),
    );
    assert_eq!(open_time % 60, 0, "{t}");
    assert!(close_time - open_time < 86_400, "{t}");
}

/// Without an archive: the range is the live window's whole minutes.
async fn tickers_equal_their_candles_without_an_archive(engine: Engine) {
    let Some(app) = spawn_app(Options {
        engine,
        archive: false,
        backfill_seconds: 1_800,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    for (t, candles) in tickers_and_candles(&app).await {
        assert_ticker_is_its_candles(&t, candles);
        let close = t["closeTime"].as_i64().unwrap();
        let open_time = t["openTime"].as_i64().unwrap();
        // The first whole minute of the 1,800-second window.
        assert_eq!(open_time, (close - 1_800 + 60) / 60 * 60, "{t}");
    }
    // One asset's own route is the same ticker.
    let (status, one) = app.get_json("/api/v1/rates/eur-usd/ticker").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["symbol"], "EURUSD");
    let (status, problem) = app.get_json("/api/v1/rates/XXXYYY/ticker").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/unknown-symbol"))
    );
    app.cleanup().await;
}

/// With an archive holding two days (a point a minute before the service
/// started): the range reaches back its whole day, and is still what the
/// candles of that day sum up to.
async fn tickers_reach_back_a_day_with_an_archive(engine: Engine) {
    if !reachable(Needs::Postgres) {
        return;
    }
    let id = unique_id();
    let archive = Archive::new(&format!("{PG_BASE}/ratesd_t_{id}")).unwrap();
    archive.prepare(true).await.unwrap();
    let started = now();
    let first = started - 2 * 86_400;
    let rows: Vec<ratesd::domain::ArchivedPoint> = (0..2 * 1_440)
        .map(|i| ratesd::domain::ArchivedPoint {
            asset_id: 1,
            time: first + i * 60,
            value: (1_000_000 + (i * 7_919) % 10_000 * 10) as f64 / 1e6,
        })
        .collect();
    archive.insert(&rows).await.unwrap();
    archive.close().await;
    let Some(app) = spawn_with(
        Options {
            engine,
            ..Options::default()
        },
        &id,
        Role::All,
    )
    .await
    else {
        return;
    };
    let all = tickers_and_candles(&app).await;
    let (eurusd, candles) = all.iter().find(|(t, _)| t["symbol"] == "EURUSD").unwrap();
    assert_ticker_is_its_candles(eurusd, *candles);
    let close = eurusd["closeTime"].as_i64().unwrap();
    let open_time = close / 60 * 60 - 1_439 * 60;
    assert_eq!(eurusd["openTime"], open_time, "a whole day: {eurusd}");
    let archived: Vec<_> = rows.iter().filter(|p| p.time >= open_time).collect();
    assert_eq!(eurusd["open"].as_f64(), Some(archived[0].value), "{eurusd}");
    let live = eurusd["count"].as_u64().unwrap() - archived.len() as u64;
    assert!(
        live >= 1 && live <= (close - started + 2) as u64,
        "{eurusd}: {live} live points"
    );
    // The other assets have only the live points: their range starts at
    // the first minute that has one.
    for (t, candles) in &all {
        assert_ticker_is_its_candles(t, *candles);
    }
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    tickers_equal_their_candles_without_an_archive,
    tickers_reach_back_a_day_with_an_archive,
);
