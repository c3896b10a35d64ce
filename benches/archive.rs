//! Archive throughput into the local PostgreSQL, in points per second.
//!
//! `cargo bench --bench archive [-- POINTS]` measures two paths on a
//! throw-away database and Redis prefix:
//! 1. `insert`: batches of 10,000 points straight into `Archive::insert`;
//! 2. `buffer -> archive`: the archiver draining points that the worker's
//!    backfill put into the Redis stream, as in production.
//!
//! Needs Redis and PostgreSQL as for the tests (`RATES_REDIS_URL`,
//! `BENCH_PG`, default postgres://postgres@127.0.0.1:5432).

use std::time::{Duration, Instant};

use rand::Rng;
use ratesd::config::RedisMode;
use ratesd::domain::ArchivedPoint;
use ratesd::domain::Point;
use ratesd::store::Archiver;
use ratesd::store::{Archive, Engine, RedisStore};
use sqlx::migrate::MigrateDatabase;
use tokio_util::sync::CancellationToken;

const ASSETS: u32 = 5;

#[tokio::main]
async fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let pg =
        std::env::var("BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let redis_url =
        std::env::var("RATES_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let id = format!("{:012x}", rand::rng().random::<u64>() >> 16);

    // 1. Straight inserts.
    let url = format!("{pg}/ratesd_bench_{id}");
    let archive = Archive::new(&url).unwrap();
    archive.prepare(true).await.unwrap();
    let seconds = (total / ASSETS as usize) as i64;
    let points: Vec<ArchivedPoint> = (0..seconds)
        .flat_map(|t| {
            (1..=ASSETS).map(move |asset_id| ArchivedPoint {
                asset_id,
                time: 1_700_000_000 + t,
                value: 1.0 + (t % 1000) as f64 * 1e-6,
            })
        })
        .collect();
    let started = Instant::now();
    let mut inserted = 0;
    for batch in points.chunks(10_000) {
        inserted += archive.insert(batch).await.unwrap();
    }
    report(
        "insert (10k-point batches)",
        inserted as usize,
        started.elapsed(),
    );
    // Replaying the same points inserts nothing: idempotent.
    let started = Instant::now();
    let mut replayed = 0;
    for batch in points.chunks(10_000) {
        replayed += archive.insert(batch).await.unwrap();
    }
    assert_eq!(replayed, 0, "replay must insert nothing");
    report("replay (all conflicts)", points.len(), started.elapsed());
    archive.close().await;
    sqlx::Postgres::force_drop_database(&url).await.unwrap();

    // 2. Through the archive buffer, as in production.
    let url = format!("{pg}/ratesd_bench_{id}_b");
    let archive = Archive::new(&url).unwrap();
    archive.prepare(true).await.unwrap();
    let redis = Engine::Redis(std::sync::Arc::new(
        RedisStore::new(&redis_url, &format!("bench:{id}:"), RedisMode::Standalone).unwrap(),
    ));
    let by_second: Vec<Vec<Point>> = (0..seconds)
        .map(|t| {
            (1..=ASSETS)
                .map(|asset_id| Point {
                    asset_name: format!("A{asset_id}"),
                    time: 1_700_000_000 + t,
                    asset_id,
                    value: 1.0 + (t % 1000) as f64 * 1e-6,
                })
                .collect()
        })
        .collect();
    redis
        .write_backfill(&by_second, 1_700_000_000 + seconds, 1, Some(10_000_000))
        .await
        .unwrap();
    let backlog = redis.archive_backlog().await.unwrap();
    let shutdown = CancellationToken::new();
    let archiver = Archiver {
        engine: redis.clone(),
        archive: archive.clone(),
        migrate: false,
        buffer_ticks: 10_000_000,
        retention_days: 0,
    };
    let started = Instant::now();
    let task = tokio::spawn(archiver.run(shutdown.clone()));
    while redis.archive_backlog().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.unwrap();
    let archived = archive.seconds(1, 0, i64::MAX).await.unwrap().len() as i64;
    assert_eq!(archived, seconds, "every point archived");
    report(
        &format!("buffer -> archive ({backlog} stream entries)"),
        total - total % ASSETS as usize,
        elapsed,
    );
    if let Engine::Redis(r) = &redis {
        r.delete_all().await.unwrap();
    }
    archive.close().await;
    sqlx::Postgres::force_drop_database(&url).await.unwrap();
}

fn report(what: &str, points: usize, elapsed: Duration) {
    println!(
        "archive/{what}: {points} points in {:.3} s = {:.0} points/s",
        elapsed.as_secs_f64(),
        points as f64 / elapsed.as_secs_f64()
    );
}
