//! Clients cannot exhaust the archive: a page's work is bounded by what it
//! holds, client reads have connections of their own (the archiver keeps
//! writing), and reads over the cap are refused at once with a 503 problem.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;

use crate::helpers::{Engine, Options, eventually, now, spawn_app};

/// The worst pages a public client can ask for, each over the whole of time.
fn worst_pages(i: usize) -> String {
    let far = "from=0&to=9000000000000000000";
    match i % 4 {
        0 => format!(
            "/api/v1/rates/EURUSD/candles?interval=1d&{far}&limit={}",
            1000 - i
        ),
        1 => format!(
            "/api/v1/rates/EURUSD/candles?interval=1m&{far}&limit={}",
            1000 - i
        ),
        2 => format!(
            "/api/v1/rates/EURUSD/candles?interval=4h&{far}&limit={}",
            1 + i
        ),
        _ => format!("/api/v1/rates/EURUSD/history?{far}&limit={}", 1000 - i),
    }
}

/// With a year of minutes in the archive, rounds of 20 concurrent
/// worst-case pages: each is answered within a second or refused at once
/// (503 problem, `Retry-After`), and meanwhile the archiver writes every
/// second the worker wrote, each exactly once.
async fn a_year_of_candles_cannot_starve_the_archiver(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    let archive = app.archive.clone().unwrap();
    archive.prepare(true).await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(app.database_url.as_deref().unwrap())
        .await
        .unwrap();
    // A year of EURUSD's minutes, up to two days ago, and their hours (as
    // the archiver's insert keeps them).
    let end = (now() / 86_400 - 2) * 86_400;
    sqlx::query(
        "INSERT INTO minutes (asset_id, open_time, first_ts, last_ts, open, high, low, close, count) \
         SELECT 1, t, t, t + 59, 1.1 + 0.01 * sin(t / 3600.0), 1.1 + 0.01 * sin(t / 3600.0) + 0.001, \
                1.1 + 0.01 * sin(t / 3600.0) - 0.001, 1.1 + 0.01 * cos(t / 3600.0), 60 \
         FROM generate_series($1::int8, $2::int8, 60) t",
    )
    .bind(end - 365 * 86_400)
    .bind(end - 60)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO hours (asset_id, open_time, first_ts, last_ts, open, high, low, close, count) \
         SELECT asset_id, open_time - open_time % 3600, min(first_ts), max(last_ts), \
                (array_agg(open ORDER BY open_time))[1], max(high), min(low), \
                (array_agg(close ORDER BY open_time DESC))[1], sum(count) \
         FROM minutes WHERE asset_id = 1 AND open_time < $1 GROUP BY 1, 2",
    )
    .bind(end)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE minutes, hours")
        .execute(&pool)
        .await
        .unwrap();

    // The archiver's lag, sampled while the pages are asked for.
    let worst_lag = Arc::new(AtomicI64::new(0));
    let watching = tokio::spawn({
        let pool = pool.clone();
        let worst_lag = worst_lag.clone();
        async move {
            loop {
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT max(ts) FROM points WHERE asset_id = 1")
                        .fetch_one(&pool)
                        .await
                        .unwrap_or(None);
                if let Some(newest) = newest {
                    worst_lag.fetch_max(now() - newest, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    // Archived from here on, every second.
    let first = eventually("the archiver writing", Duration::from_secs(15), || async {
        archive
            .seconds(1, now() - 5, now())
            .await
            .ok()?
            .last()
            .copied()
    })
    .await
        + 1;
    let (mut served, mut refused) = (0, 0);
    for _round in 0..3 {
        let answers = futures_util::future::join_all((0..20).map(|i| {
            let http = app.http.clone();
            let url = app.url(&worst_pages(i));
            async move {
                let asked = Instant::now();
                let resp = http.get(&url).send().await.expect("an answer");
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                let body: serde_json::Value = resp.json().await.expect("a JSON body");
                (url, status, retry_after, body, asked.elapsed())
            }
        }))
        .await;
        for (url, status, retry_after, body, took) in answers {
            match status {
                200 => {
                    served += 1;
                    assert!(took < Duration::from_secs(1), "{url} took {took:?}");
                }
                503 => {
                    refused += 1;
                    assert!(
                        took < Duration::from_millis(500),
                        "{url} refused after {took:?}"
                    );
                    assert!(retry_after, "{url}: a refusal says when to retry");
                    assert_eq!(body["type"], "/problems/unavailable", "{body}");
                }
                other => panic!("{url}: {other} {body}"),
            }
        }
    }
    assert!(served > 0, "some pages are served");
    // A whole year of daily candles, bounded and right.
    let (status, page) = app
        .get_json(&worst_pages(0).replace("limit=1000", "limit=1000&"))
        .await;
    if status == 200 {
        // 365 archived days, each whole, and today's from the window.
        let candles = page["candles"].as_array().unwrap();
        assert_eq!(candles.len(), 366, "{page}");
        assert!(
            candles[..365].iter().all(|c| c["count"] == 86_400),
            "{page}"
        );
    }
    // Every second the worker wrote meanwhile (a loaded machine may skip
    // one: a tick that overran) is archived, once.
    let last = now() - 1;
    let (written, _) = app.engine.window(1, first, last, 10_000).await.unwrap();
    let written: Vec<i64> = written.iter().map(|p| p.time).collect();
    assert!(
        written.len() as i64 >= (last - first) / 2,
        "the worker wrote: {written:?}"
    );
    eventually(
        "every written second archived",
        Duration::from_secs(15),
        || async { (archive.seconds(1, first, last).await.ok()? == written).then_some(()) },
    )
    .await;
    watching.abort();
    let lag = worst_lag.load(Ordering::Relaxed);
    assert!(
        lag <= 5,
        "the archiver fell {lag} s behind while clients read"
    );
    eprintln!("served {served}, refused {refused}, archiver lag at most {lag} s");
    pool.close().await;
    app.cleanup().await;
}

crate::helpers::on_both_engines!(a_year_of_candles_cannot_starve_the_archiver);
