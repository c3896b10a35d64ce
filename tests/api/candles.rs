//! Candles and conversion, on every engine: candles equal what the points
//! they sum up give, from the window and from the archive; conversion
//! chains pairs the way the contract says.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    Engine, Options, TestApp, eurusd_rows, eventually, fixture_path, now, spawn_app,
};

/// `(openTime, open, high, low, close, count)` of each candle of a page.
fn ohlc(page: &Value) -> Vec<(i64, f64, f64, f64, f64, u64)> {
    page["candles"]
        .as_array()
        .unwrap_or_else(|| panic!("candles: {page}"))
        .iter()
        .map(|c| {
            (
                c["openTime"].as_i64().unwrap(),
                c["open"].as_f64().unwrap(),
                c["high"].as_f64().unwrap(),
                c["low"].as_f64().unwrap(),
                c["close"].as_f64().unwrap(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `got` and `want` agree: the same buckets and counts, and values equal up
/// to the last bit serde_json's float parsing may lose.
#[track_caller]
fn assert_same(got: &[(i64, f64, f64, f64, f64, u64)], want: &[(i64, f64, f64, f64, f64, u64)]) {
    let close = |a: f64, b: f64| (a - b).abs() <= 4.0 * f64::EPSILON * b.abs().max(1.0);
    let same = got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.0 == w.0
                && g.5 == w.5
                && close(g.1, w.1)
                && close(g.2, w.2)
                && close(g.3, w.3)
                && close(g.4, w.4)
        });
    assert!(same, "candles differ:\n got: {got:?}\nwant: {want:?}");
}

/// What the points give per bucket of `secs`, computed here by hand.
fn expected(points: &[(i64, f64)], secs: i64) -> Vec<(i64, f64, f64, f64, f64, u64)> {
    let mut out: Vec<(i64, f64, f64, f64, f64, u64)> = Vec::new();
    for &(t, v) in points {
        let open = t - t.rem_euclid(secs);
        match out.last_mut() {
            Some(c) if c.0 == open => {
                c.2 = c.2.max(v);
                c.3 = c.3.min(v);
                c.4 = v;
                c.5 += 1;
            }
            _ => out.push((open, v, v, v, v, 1)),
        }
    }
    out
}

/// A service with the simulated 30-minute backfill in its window (no
/// archive), once the backfill has begun to land (with the first tick).
async fn backfilled(engine: Engine) -> Option<TestApp> {
    let app = spawn_app(Options {
        engine,
        backfill_seconds: 1800,
        archive: false,
        ..Options::default()
    })
    .await?;
    eventually("a backfilled window", Duration::from_secs(15), || async {
        let (_, page) = app
            .get_json("/api/v1/rates/EURUSD/history?limit=1000")
            .await;
        (page["points"].as_array()?.len() >= 1000).then_some(())
    })
    .await;
    Some(app)
}

async fn every_minute_candle_equals_its_points(engine: Engine) {
    let Some(app) = backfilled(engine).await else {
        return;
    };
    // The last 20 whole minutes before the current one: closed, settled,
    // and backfilled in full (the backfill lands in chunks).
    let last = (now() / 60) * 60 - 60;
    let first = last - 19 * 60;
    eventually("20 backfilled minutes", Duration::from_secs(15), || async {
        (app.history_points("EURUSD", first, last + 59).await.len() == 1_200).then_some(())
    })
    .await;
    let (status, page) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/candles?interval=1m&from={first}&to={last}"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["symbol"], "EURUSD");
    assert_eq!(page["interval"], "1m");
    let got = ohlc(&page);
    let want = expected(&app.history_points("EURUSD", first, last + 59).await, 60);
    assert_eq!(got.len(), 20, "{got:?}");
    assert_same(&got, &want);
    assert!(
        page["candles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["closed"] == true
                && c["closeTime"].as_i64() == c["openTime"].as_i64().map(|o| o + 59))
    );

    // Without a range: the last `limit` minutes, the forming one last.
    let before = now();
    let (_, page) = app.get_json("/api/v1/rates/EURUSD/candles?limit=3").await;
    let after = now();
    let candles = page["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 3, "{page}");
    let forming = &candles[2];
    assert_eq!(forming["closed"], false, "{page}");
    let open = forming["openTime"].as_i64().unwrap();
    assert!(
        open == before - before % 60 || open == after - after % 60,
        "the forming candle holds the current second: {open} vs {before}..{after}"
    );
    assert!(candles[..2].iter().all(|c| c["closed"] == true));
    // Pages are reused within a tick only: the forming candle moves on.
    let forming = || async {
        let (_, page) = app.get_json("/api/v1/rates/EURUSD/candles?limit=1").await;
        let c = page["candles"].get(0)?.clone();
        Some((c["openTime"].as_i64()?, c["count"].as_u64()?))
    };
    let first = forming().await.expect("a forming candle");
    eventually(
        "the forming candle to grow",
        Duration::from_secs(10),
        || async { forming().await.filter(|&now| now != first).map(drop) },
    )
    .await;
    app.cleanup().await;
}

async fn buckets_are_aligned_in_utc(engine: Engine) {
    let Some(app) = backfilled(engine).await else {
        return;
    };
    let t = now();
    eventually("the whole backfill", Duration::from_secs(15), || async {
        (app.history_points("EURUSD", t - 1_700, t - 100).await.len() == 1_601).then_some(())
    })
    .await;
    for (interval, secs) in [("5m", 300), ("1d", 86_400)] {
        let to = now() - 3;
        let (status, page) = app
            .get_json(&format!(
                "/api/v1/rates/EURUSD/candles?interval={interval}&to={to}&limit=10"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        let got = ohlc(&page);
        assert!(!got.is_empty(), "{page}");
        for c in page["candles"].as_array().unwrap() {
            let open = c["openTime"].as_i64().unwrap();
            assert_eq!(
                open % secs,
                0,
                "{interval} aligned to the epoch in UTC: {c}"
            );
            assert_eq!(c["closeTime"].as_i64().unwrap(), open + secs - 1);
        }
        // The closed buckets are what their points give (the forming one
        // grows while we read). With no archive, the oldest bucket loses
        // its first points as the 30-minute window slides on between the
        // two reads: only buckets wholly inside it by then are compared.
        let first = got[0].0;
        let closed: Vec<_> = got.iter().filter(|c| c.0 + secs <= to).copied().collect();
        if let Some(last) = closed.last() {
            let points = app.history_points("EURUSD", first, last.0 + secs - 1).await;
            let edge = now() - i64::from(Options::default().history_seconds) + 10;
            let inside = |c: &&(i64, f64, f64, f64, f64, u64)| c.0 >= edge;
            let want: Vec<_> = expected(&points, secs)
                .iter()
                .filter(inside)
                .copied()
                .collect();
            let closed: Vec<_> = closed.iter().filter(inside).copied().collect();
            assert!(interval == "1d" || closed.len() >= 4, "{got:?}");
            assert_same(&closed, &want[..closed.len()]);
        }
    }
    app.cleanup().await;
}

async fn hour_candles_older_than_the_window_come_from_the_archive(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    let archive = app.archive.clone().unwrap();
    archive.prepare(true).await.unwrap();
    // Three hours, two days ago, every 7th second missing.
    let start = (now() / 3_600) * 3_600 - 48 * 3_600;
    let old: Vec<(i64, f64)> = (start..start + 3 * 3_600)
        .filter(|t| t % 7 != 0)
        .map(|t| (t, 1.0 + ((t * 37) % 1_000) as f64 / 10_000.0))
        .collect();
    let rows = eurusd_rows(&old);
    // Out of order and twice: the archive's minute rollup must end up as
    // if the points had come in order, once.
    let (evens, odds): (Vec<_>, Vec<_>) = rows.iter().partition(|p| p.time % 2 == 0);
    let mut odds: Vec<_> = odds.into_iter().copied().collect();
    odds.reverse();
    let evens: Vec<_> = evens.into_iter().copied().collect();
    assert_eq!(archive.insert(&odds).await.unwrap(), odds.len() as u64);
    assert_eq!(archive.insert(&evens).await.unwrap(), evens.len() as u64);
    assert_eq!(
        archive.insert(&rows).await.unwrap(),
        0,
        "a replay inserts nothing"
    );
    let (status, page) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/candles?interval=1h&from={start}&to={}",
            start + 2 * 3_600
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_same(&ohlc(&page), &expected(&old, 3_600));
    assert_eq!(ohlc(&page).len(), 3);
    // Every minute too (180 of them, in one page).
    let (_, page) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/candles?interval=1m&from={start}&to={}&limit=1000",
            start + 3 * 3_600 - 60
        ))
        .await;
    assert_same(&ohlc(&page), &expected(&old, 60));
    let cache = app
        .get(&format!(
            "/api/v1/rates/EURUSD/candles?interval=1h&from={start}&to={}",
            start + 2 * 3_600
        ))
        .await
        .headers()
        .get("cache-control")
        .cloned();
    assert_eq!(
        cache.as_ref().and_then(|v| v.to_str().ok()),
        Some("public, max-age=600"),
        "closed candles keep"
    );
    // Paged: one candle a page, cursor and Link as for history.
    let (_, first) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/candles?interval=1h&from={start}&to={}&limit=2",
            start + 2 * 3_600
        ))
        .await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, second) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/candles?interval=1h&from={start}&to={}&limit=2&cursor={cursor}",
            start + 2 * 3_600
        ))
        .await;
    let mut both = ohlc(&first);
    both.extend(ohlc(&second));
    assert_same(&both, &expected(&old, 3_600));
    assert_eq!(second["next_cursor"], Value::Null);
    app.cleanup().await;
}

/// Candles of an hour and longer read whole hours from the archive's hour
/// rollup, the rest of the hour the window starts in from its minutes and
/// points, and the window: each bucket made once from all of them, equal
/// to what its points give.
async fn long_candles_join_the_hour_and_minute_rollups_and_the_window(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    let archive = app.archive.clone().unwrap();
    archive.prepare(true).await.unwrap();
    // Every second from two whole hours back to just before the service's
    // first tick, in the archive only: the window holds what came after.
    let started = now() - 2;
    let from = (started / 3_600) * 3_600 - 2 * 3_600;
    let rows: Vec<ratesd::domain::ArchivedPoint> = (from..started)
        .map(|time| ratesd::domain::ArchivedPoint {
            asset_id: 1,
            time,
            value: 1.0 + ((time * 7_919) % 10_000) as f64 / 100_000.0,
        })
        .collect();
    for batch in rows.chunks(5_000) {
        archive.insert(batch).await.unwrap();
    }
    for (interval, secs) in [("1h", 3_600), ("4h", 4 * 3_600), ("1d", 86_400)] {
        let first = from - from.rem_euclid(secs);
        // Read until no tick lands between the points and the candles.
        let (got, want) = eventually(interval, Duration::from_secs(30), || async {
            let before = app.history_points("EURUSD", from, now() + 5).await;
            let (status, page) = app
                .get_json(&format!(
                    "/api/v1/rates/EURUSD/candles?interval={interval}&from={first}"
                ))
                .await;
            assert_eq!(status, 200, "{page}");
            let after = app.history_points("EURUSD", from, now() + 5).await;
            (before == after && before.last().is_some_and(|p| p.0 >= started))
                .then(|| (ohlc(&page), expected(&after, secs)))
        })
        .await;
        assert_same(&got, &want);
        assert!(got.last().unwrap().5 > 1, "{interval}: the forming bucket");
    }
    app.cleanup().await;
}

async fn bad_candle_parameters_are_named(engine: Engine) {
    let Some(app) = spawn_app(Options {
        engine,
        archive: false,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    for (query, parameter) in [
        ("interval=2m", "interval"),
        ("interval=1M", "interval"),
        ("interval=", "interval"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("from=abc", "from"),
        ("from=-5", "from"),
        ("to=1.5", "to"),
        ("from=200&to=100", "from"),
        ("cursor=abc", "cursor"),
        ("interval=1m&interval=5m", "interval"),
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/rates/EURUSD/candles?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{query}: {body}");
    }
    // The far future: no candle, no overflow.
    for query in [
        "from=9223372036854775806&to=9223372036854775807",
        "to=9223372036854775807&interval=1d&limit=1000",
        "from=0&to=9223372036854775807&interval=4h&limit=2",
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/rates/EURUSD/candles?{query}"))
            .await;
        assert_eq!(status, 200, "{query}: {body}");
    }
    let (status, body) = app.get_json("/api/v1/rates/XXXYYY/candles").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["type"], "/problems/unknown-symbol");
    app.cleanup().await;
}

async fn conversion_chains_pairs(engine: Engine) {
    let Some(app) = spawn_app(Options {
        engine,
        archive: false,
        sources: format!(
            "file:{}",
            fixture_path("fxcm-datadisplayer-2021-strings.txt")
        ),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // The recording's mid prices (tests/fixtures/README.md).
    let (eurusd, usdjpy, gbpusd, usdcad) = (1.129575, 114.51, 1.355665, 1.26814);
    eventually("every rate", Duration::from_secs(15), || async {
        let (_, r) = app.get_json("/api/v1/rates").await;
        (r["rates"].as_array()?.len() == 5).then_some(())
    })
    .await;
    let convert = |query: &'static str| {
        let app = &app;
        async move { app.get_json(&format!("/api/v1/convert?{query}")).await }
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);

    let (status, c) = convert("from=EUR&to=USD").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["rate"].as_f64(), c["amount"].as_f64()),
        (Some(eurusd), Some(1.0))
    );
    assert_eq!(c["path"], serde_json::json!(["EURUSD"]));
    assert_eq!(c["stale"], false);
    assert!(c["time"].as_i64().unwrap() > now() - 30);

    let (_, c) = convert("from=jpy&to=usd&amount=1000").await;
    assert_eq!(c["rate"].as_f64(), Some(1.0 / usdjpy));
    assert!(close(c["result"].as_f64().unwrap(), 1000.0 / usdjpy), "{c}");
    assert_eq!(c["path"], serde_json::json!(["USDJPY"]));
    assert_eq!(
        (c["from"].as_str(), c["to"].as_str()),
        (Some("JPY"), Some("USD"))
    );

    let (_, c) = convert("from=EUR&to=JPY&amount=100").await;
    assert!(close(c["rate"].as_f64().unwrap(), eurusd * usdjpy), "{c}");
    assert!(
        close(c["result"].as_f64().unwrap(), 100.0 * eurusd * usdjpy),
        "{c}"
    );
    assert_eq!(c["path"], serde_json::json!(["EURUSD", "USDJPY"]));

    let (_, c) = convert("from=GBP&to=CAD").await;
    assert!(close(c["rate"].as_f64().unwrap(), gbpusd * usdcad), "{c}");
    assert_eq!(c["path"], serde_json::json!(["GBPUSD", "USDCAD"]));

    let (status, c) = convert("from=EUR&to=EUR&amount=5").await;
    assert_eq!(status, 200);
    assert_eq!(
        (c["rate"].as_f64(), c["result"].as_f64()),
        (Some(1.0), Some(5.0))
    );
    assert_eq!(c["path"], serde_json::json!([]));

    let (status, c) = convert("from=XAU&to=USD").await;
    assert_eq!(status, 404, "{c}");
    assert_eq!(c["type"], "/problems/unknown-currency");
    assert_eq!(c["parameter"], "from");
    let (status, c) = convert("from=EUR&to=CHF").await;
    assert_eq!((status, c["parameter"].as_str()), (404, Some("to")), "{c}");

    for amount in ["0", "-1", "abc", "nan", "inf", "-inf", "1e400", ""] {
        let (status, c) = app
            .get_json(&format!("/api/v1/convert?from=EUR&to=USD&amount={amount}"))
            .await;
        assert_eq!(status, 400, "amount={amount}: {c}");
        assert_eq!(c["parameter"], "amount", "amount={amount}");
    }
    let (status, c) = convert("from=EUR&to=JPY&amount=1e308").await;
    assert_eq!(
        (status, c["parameter"].as_str()),
        (400, Some("amount")),
        "the result would be infinite: {c}"
    );
    for query in ["to=USD", "from=EUR", "from=E&to=USD", "from=EUR&to=US%20D"] {
        let (status, c) = app.get_json(&format!("/api/v1/convert?{query}")).await;
        assert_eq!(status, 400, "{query}: {c}");
    }
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    every_minute_candle_equals_its_points,
    buckets_are_aligned_in_utc,
    hour_candles_older_than_the_window_come_from_the_archive,
    long_candles_join_the_hour_and_minute_rollups_and_the_window,
    bad_candle_parameters_are_named,
    conversion_chains_pairs,
);
