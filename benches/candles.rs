//! Candles from the archive: how long `1h` and `1d` candles take to answer
//! over an archive of one asset's every second, aggregated in PostgreSQL.
//!
//! `cargo bench --bench candles [-- DAYS]` (default 42: a month and a half,
//! so that 1,000 `1h` candles exist) builds a throw-away database
//! (`BENCH_PG`, default postgres://postgres@127.0.0.1:5432), fills it with
//! DAYS x 86,400 points through `Archive::insert`, then times each query
//! five times and prints the best and the median.

use std::time::{Duration, Instant};

use rand::Rng;
use ratesd::domain::{ArchivedPoint, Catalog, Interval};
use ratesd::store::Archive;
use sqlx::migrate::MigrateDatabase;

#[tokio::main]
async fn main() {
    let days: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(42);
    let pg =
        std::env::var("BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let id = format!("{:012x}", rand::rng().random::<u64>() >> 16);
    let url = format!("{pg}/ratesd_bench_{id}");
    let archive = Archive::new(&url).unwrap();
    archive.prepare(true).await.unwrap();
    let catalog = Catalog::with_extra("").unwrap();
    let eurusd = catalog.by_id(1).unwrap();

    let start = 1_700_000_000 - 1_700_000_000 % 86_400;
    let end = start + days * 86_400;
    let started = Instant::now();
    let mut t = start;
    while t < end {
        let batch: Vec<ArchivedPoint> = (t..(t + 50_000).min(end))
            .map(|time| ArchivedPoint {
                asset_id: 1,
                time,
                value: 1.08 + ((time * 7_919) % 10_000) as f64 * 1e-6,
            })
            .collect();
        archive.insert(&batch).await.unwrap();
        t += 50_000;
    }
    println!(
        "filled {} points ({days} days) in {:.1} s",
        end - start,
        started.elapsed().as_secs_f64()
    );

    for (interval, limit) in [
        (Interval::H1, 1_000),
        (Interval::D1, days as usize),
        (Interval::M1, 1_000),
    ] {
        let mut times: Vec<Duration> = Vec::new();
        let mut got = 0;
        for _ in 0..5 {
            let t0 = Instant::now();
            let candles = archive
                .reads()
                .unwrap()
                .candles(eurusd, interval, start, end - 1, limit)
                .await
                .unwrap();
            times.push(t0.elapsed());
            got = candles.len();
            assert!(candles.iter().all(|c| c.count > 0));
        }
        times.sort();
        println!(
            "{:>3} x {got:>5} candles from the archive: best {:.1} ms, median {:.1} ms",
            interval.name(),
            times[0].as_secs_f64() * 1e3,
            times[2].as_secs_f64() * 1e3,
        );
    }
    archive.close().await;
    sqlx::Postgres::force_drop_database(&url).await.unwrap();
}
