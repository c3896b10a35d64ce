//! The archive partitioned by UTC day: rows land in their day's partition
//! (made ahead, or on demand for a day without one), reads run across
//! days without a gap, the retention drops whole days and nothing else,
//! and the migration moves an existing deployment's rows.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::helpers::{
    Engine, Needs, Options, PG_BASE, archived, assert_consecutive, bare_engine, eventually,
    reachable, spawn_app, unique_id,
};
use ratesd::clock::unix_now;
use ratesd::domain::{ArchivedPoint, Catalog};
use ratesd::store::Archive;
use ratesd::store::archive::{DAY_SECONDS, DayPartition};
use sqlx::migrate::MigrateDatabase;

/// 2026-06-01T00:00:00Z: a day boundary in the past, with no partition on
/// either side until an insert needs one.
const BOUNDARY: i64 = 1_780_272_000;

/// A database of its own, not created yet; `None` (said) without PostgreSQL.
fn own_database() -> Option<String> {
    reachable(Needs::Postgres).then(|| format!("{PG_BASE}/ratesd_t_{}", unique_id()))
}

/// An archive on a database of its own, created and migrated.
async fn prepared_archive() -> Option<(Archive, String)> {
    let url = own_database()?;
    let archive = Archive::new(&url).unwrap();
    archive.prepare(true).await.unwrap();
    Some((archive, url))
}

async fn drop_database(archive: Archive, url: &str) {
    archive.close().await;
    sqlx::Postgres::force_drop_database(url).await.unwrap();
}

/// A direct connection, to look at what only the catalog shows.
async fn sql(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url).await.unwrap()
}

/// `(partition, asset, second)` of every archived row, by asset and second.
async fn placed_rows(pool: &sqlx::PgPool) -> Vec<(String, i32, i64)> {
    sqlx::query_as(
        "SELECT tableoid::regclass::text, asset_id, ts FROM points ORDER BY asset_id, ts",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn point(asset_id: u32, time: i64) -> ArchivedPoint {
    ArchivedPoint {
        asset_id,
        time,
        // Different for every asset and second, so a misplaced value shows.
        value: f64::from(asset_id) + (time % 100_000) as f64 / 1e6,
    }
}

async fn partition_names(archive: &Archive) -> BTreeSet<String> {
    let partitions = archive.partitions().await.unwrap();
    partitions.into_iter().map(|p| p.name).collect()
}

#[tokio::test]
async fn points_across_a_day_boundary_land_in_two_partitions_and_read_back_without_a_gap() {
    let Some((archive, url)) = prepared_archive().await else {
        return;
    };
    let seconds = BOUNDARY - 30..BOUNDARY + 30;
    let points: Vec<ArchivedPoint> = seconds
        .clone()
        .flat_map(|t| [point(1, t), point(2, t)])
        .collect();
    // Neither day has a partition: the insert makes both and goes through.
    assert_eq!(archive.insert(&points).await.unwrap(), 120);
    // A replay is still a no-op.
    assert_eq!(archive.insert(&points).await.unwrap(), 0);

    let pool = sql(&url).await;
    let rows = placed_rows(&pool).await;
    assert_eq!(rows.len(), 120);
    for (partition, _, ts) in &rows {
        assert_eq!(*partition, DayPartition::of(*ts).name(), "second {ts}");
    }
    let used: BTreeSet<&str> = rows.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        used,
        BTreeSet::from(["points_p20260531", "points_p20260601"])
    );
    let names = partition_names(&archive).await;
    assert!(names.contains("points_p20260531") && names.contains("points_p20260601"));

    // Read back across the boundary: every second, once, with its value.
    let read = archived(&archive, 1, BOUNDARY - 30, BOUNDARY + 29).await;
    let times: Vec<i64> = read.iter().map(|(t, _)| *t).collect();
    assert_eq!(times.first(), Some(&(BOUNDARY - 30)));
    assert_eq!(times.len(), 60);
    assert_consecutive(&times);
    for (t, v) in &read {
        assert_eq!(*v, point(1, *t).value, "second {t}");
    }
    // As the history routes read it, in pages that straddle the boundary.
    let engine = bare_engine(Engine::Embedded).unwrap();
    let catalog = Catalog::with_extra("").unwrap();
    let asset = catalog.by_id(2).unwrap();
    let mut walked = Vec::new();
    let mut from = BOUNDARY - 30;
    while from < BOUNDARY + 30 {
        let page = ratesd::store::history::page(
            &engine,
            Some(&archive),
            asset,
            (from, BOUNDARY + 29),
            i64::MAX,
            7,
        )
        .await
        .unwrap();
        assert!(!page.is_empty() && page.len() <= 7);
        from = page.last().unwrap().time + 1;
        walked.extend(page.iter().map(|p| p.time));
    }
    assert_eq!(walked, seconds.collect::<Vec<_>>());
    pool.close().await;
    drop_database(archive, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_archives_into_day_partitions_it_made_ahead() {
    let Some(app) = spawn_app(Options {
        engine: Engine::Embedded,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let archive = app.archive.clone().unwrap();
    let last = eventually(
        "three archived seconds",
        Duration::from_secs(15),
        || async {
            let archived = archive.seconds(1, 0, i64::MAX).await.ok()?;
            (archived.len() >= 3).then(|| *archived.last().unwrap())
        },
    )
    .await;
    // The day of the newest second and the one after it were made ahead
    // (at most one midnight passed since the start).
    let names = partition_names(&archive).await;
    let day = DayPartition::of(last);
    let next = DayPartition::of(last + DAY_SECONDS);
    assert!(names.contains(&day.name()), "{names:?}");
    assert!(names.contains(&next.name()), "{names:?}");
    let pool = sql(app.database_url.as_deref().unwrap()).await;
    let rows = placed_rows(&pool).await;
    assert!(rows.len() >= 3);
    for (partition, _, ts) in &rows {
        assert_eq!(*partition, DayPartition::of(*ts).name(), "second {ts}");
    }
    pool.close().await;
    app.cleanup().await;
}

#[tokio::test]
async fn the_retention_drops_exactly_the_days_past_it_and_keeps_the_rest() {
    let Some(url) = own_database() else {
        return;
    };
    let now = unix_now();
    let archive = Archive::new(&url).unwrap();
    archive.prepare(true).await.unwrap();
    let today = DayPartition::of(now).from().unwrap();
    // Days 0 (today) to 10 back, each with its first, a middle and its
    // last second; the insert makes the old days' partitions.
    let day = |back: i64| today - back * DAY_SECONDS;
    let seconds_of = |back: i64| {
        let start = day(back);
        [start, start + 43_200, start + DAY_SECONDS - 1]
    };
    let points: Vec<ArchivedPoint> = (0..=10)
        .flat_map(seconds_of)
        .filter(|&t| t <= now)
        .map(|t| point(1, t))
        .collect();
    archive.insert(&points).await.unwrap();
    let name = |back: i64| DayPartition::of(day(back)).name();
    let before = partition_names(&archive).await;
    for back in 0..=10 {
        assert!(before.contains(&name(back)), "{} missing", name(back));
    }

    // 0 keeps everything.
    let kept_all = archive.maintain(now, 0).await.unwrap();
    assert!(kept_all.dropped.is_empty(), "{kept_all:?}");
    assert_eq!(partition_names(&archive).await, before);

    // 3: today and the three days before it stay, the seven older go.
    let done = archive.maintain(now, 3).await.unwrap();
    let expected: Vec<String> = (4..=10).rev().map(name).collect();
    assert_eq!(done.dropped, expected);
    let after = partition_names(&archive).await;
    let mut expected_after = before.clone();
    for dropped in &expected {
        expected_after.remove(dropped);
    }
    assert_eq!(after, expected_after);
    for back in 0..=3 {
        assert!(after.contains(&name(back)), "{} dropped", name(back));
    }
    // The kept days' rows are all there, the dropped days' rows are gone.
    let kept: Vec<i64> = (0..=3)
        .rev()
        .flat_map(seconds_of)
        .filter(|&t| t <= now)
        .collect();
    assert_eq!(archive.seconds(1, i64::MIN, i64::MAX).await.unwrap(), kept);
    // Nothing left to drop.
    assert!(archive.maintain(now, 3).await.unwrap().dropped.is_empty());
    drop_database(archive, &url).await;
}

#[tokio::test]
async fn the_migration_moves_an_existing_deployments_rows_into_day_partitions() {
    let Some(url) = own_database() else {
        return;
    };
    sqlx::Postgres::create_database(&url).await.unwrap();
    // The deployment as it was: the first migration only, with rows.
    let dir = std::env::temp_dir().join(format!("ratesd-migrations-{}", unique_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = "20261123000001_points.sql";
    std::fs::copy(
        format!("{}/migrations/{first}", env!("CARGO_MANIFEST_DIR")),
        dir.join(first),
    )
    .unwrap();
    let pool = sql(&url).await;
    sqlx::migrate::Migrator::new(dir.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // Two assets across a day boundary, and a lone leap-day row years back.
    sqlx::query(
        "INSERT INTO points (asset_id, ts, value) \
         SELECT a, ts, a + ts / 1e9 FROM generate_series(1, 2) a, \
         generate_series($1::bigint - 100, $1::bigint + 99) ts \
         UNION ALL SELECT 3, 1582977600, 1.5",
    )
    .bind(BOUNDARY)
    .execute(&pool)
    .await
    .unwrap();
    let rows_before: Vec<(i32, i64, f64)> =
        sqlx::query_as("SELECT asset_id, ts, value FROM points ORDER BY asset_id, ts")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows_before.len(), 401);

    // What a new ratesd does at start.
    let archive = Archive::new(&url).unwrap();
    archive.prepare(true).await.unwrap();

    let rows_after: Vec<(i32, i64, f64)> =
        sqlx::query_as("SELECT asset_id, ts, value FROM points ORDER BY asset_id, ts")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows_after, rows_before);
    let placed = placed_rows(&pool).await;
    for (partition, _, ts) in &placed {
        assert_eq!(*partition, DayPartition::of(*ts).name(), "second {ts}");
    }
    let used: BTreeSet<&str> = placed.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        used,
        BTreeSet::from(["points_p20200229", "points_p20260531", "points_p20260601"])
    );
    let (partitioned, old_table): (bool, Option<String>) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'points'::regclass), \
         to_regclass('points_unpartitioned')::text",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(partitioned);
    assert_eq!(old_table, None);
    // Today's partition was made at start; the migrated days keep taking
    // rows, and replays of migrated rows are still no-ops.
    let names = partition_names(&archive).await;
    assert!(
        names.contains(&DayPartition::of(unix_now()).name()),
        "{names:?}"
    );
    let replay = [point(1, BOUNDARY), point(1, BOUNDARY + 100)];
    assert_eq!(archive.insert(&replay).await.unwrap(), 1);
    pool.close().await;
    drop_database(archive, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_maintaining_and_inserting_at_once_make_each_partition_once() {
    let Some((archive, url)) = prepared_archive().await else {
        return;
    };
    // Four handles, as four processes: each maintains for a day far ahead
    // and inserts into a day that has no partition yet.
    let handles: Vec<Archive> = (0..4).map(|_| Archive::new(&url).unwrap()).collect();
    let later = unix_now() + 40 * DAY_SECONDS;
    let runs = handles.iter().zip(1u32..).map(|(a, asset)| async move {
        let done = a.maintain(later, 0).await.unwrap();
        let inserted = a
            .insert(&[point(asset, BOUNDARY - 1), point(asset, BOUNDARY)])
            .await
            .unwrap();
        (done.created, inserted)
    });
    let results = futures_util::future::join_all(runs).await;
    let mut created: Vec<String> = results.iter().flat_map(|(c, _)| c.clone()).collect();
    created.sort();
    let unique: BTreeSet<String> = created.iter().cloned().collect();
    assert_eq!(created.len(), unique.len(), "made twice: {created:?}");
    let ahead: BTreeSet<String> = (0..=2)
        .map(|d| DayPartition::of(later + d * DAY_SECONDS).name())
        .collect();
    assert_eq!(unique, ahead);
    assert!(results.iter().all(|(_, inserted)| *inserted == 2));
    assert_eq!(
        archive.seconds(4, 0, i64::MAX).await.unwrap(),
        [BOUNDARY - 1, BOUNDARY]
    );
    for handle in handles {
        handle.close().await;
    }
    drop_database(archive, &url).await;
}
