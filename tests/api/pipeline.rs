//! The worker's ticks through Redis into the archive, and history read back
//! across both.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::helpers::{
    Engine, Options, assert_consecutive, eventually, spawn_app, spawn_with, times, unique_id,
};
use ratesd::config::Role;
use ratesd::domain::Point;

const ALL: (i64, i64) = (0, i64::MAX);

async fn window(app: &crate::helpers::TestApp, asset: u32) -> Vec<Point> {
    let (points, _) = app
        .engine
        .window(asset, ALL.0, ALL.1, 100_000)
        .await
        .unwrap();
    points
}

async fn one_point_per_asset_per_second_with_consecutive_times(engine: Engine) {
    let Some(app) = spawn_app(Options::on(engine)).await else {
        return;
    };
    let eurusd = eventually("five live points", Duration::from_secs(10), || async {
        let w = window(&app, 1).await;
        (w.len() >= 5).then_some(w)
    })
    .await;
    let t: Vec<i64> = eurusd.iter().map(|p| p.time).collect();
    assert_consecutive(&t);
    let now = ratesd::clock::unix_now();
    assert!(*t.last().unwrap() <= now, "no point from the future");
    for asset in 2..=5 {
        let w = window(&app, asset).await;
        let ta: Vec<i64> = w.iter().map(|p| p.time).collect();
        assert_consecutive(&ta);
        // Every asset of a tick shares that tick's second.
        assert!(
            t.iter().all(|s| ta.contains(s) || *s > *ta.last().unwrap()),
            "{asset}"
        );
        assert!(w.iter().all(|p| p.asset_id == asset));
    }
    app.cleanup().await;
}

async fn the_window_is_trimmed_to_its_length(engine: Engine) {
    let Some(app) = spawn_app(Options {
        history_seconds: 5,
        backfill_seconds: 30,
        archive: false,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    // Backfill leaves 4 seconds before the first tick; ticks then keep 5.
    let w = eventually(
        "three ticks past the backfill",
        Duration::from_secs(10),
        || async {
            let w = window(&app, 2).await;
            let newest = w.last()?.time;
            let live = app.engine.latest(2).await.ok()??;
            (newest == live.time && w.len() == 5 && newest >= w[0].time + 4).then_some(w)
        },
    )
    .await;
    assert_consecutive(&w.iter().map(|p| p.time).collect::<Vec<_>>());
    // Stays at 5 as time passes.
    let first = w[0].time;
    let later = eventually("the window to move on", Duration::from_secs(5), || async {
        let w = window(&app, 2).await;
        (w[0].time >= first + 2).then_some(w)
    })
    .await;
    assert!(later.len() <= 5, "window holds {} points", later.len());
    app.cleanup().await;
}

async fn history_pages_walk_archive_and_window_without_gap_or_duplicate(engine: Engine) {
    let Some(app) = spawn_app(Options {
        history_seconds: 20,
        backfill_seconds: 90,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let archive = app.archive.clone().unwrap();
    // Wait until the archive holds every second before the window's oldest.
    let (first, oldest) = eventually(
        "the archive to catch up",
        Duration::from_secs(15),
        || async {
            let archived = archive.seconds(1, ALL.0, ALL.1).await.ok()?;
            let (_, oldest) = app.engine.window(1, 0, 0, 1).await.ok()?;
            let oldest = oldest?;
            let first = *archived.first()?;
            let before: Vec<_> = archived.iter().copied().filter(|&s| s < oldest).collect();
            (before.len() as i64 == oldest - first && before.len() >= 70).then_some((first, oldest))
        },
    )
    .await;
    let to = oldest + 10;
    let mut walked = Vec::new();
    let mut values = BTreeMap::new();
    let mut path = format!("/api/v1/rates/eurusd/history?from={first}&to={to}&limit=7");
    let mut pages = 0;
    loop {
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        pages += 1;
        for p in page["points"].as_array().unwrap() {
            values.insert(p["time"].as_i64().unwrap(), p["value"].as_f64().unwrap());
        }
        walked.extend(times(&page["points"]));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/rates/EURUSD/history?cursor={c}&limit=7"),
            None => break,
        }
        assert!(pages < 100, "runaway pagination");
    }
    assert_eq!(
        walked,
        (first..=to).collect::<Vec<_>>(),
        "every second once, in order"
    );
    assert!(
        first < oldest && oldest <= to,
        "the walk spans the archive and the window"
    );
    // Archive-served values are the ones the worker wrote.
    let archived = crate::helpers::archived(&archive, 1, first, oldest - 1).await;
    for (t, v) in archived {
        assert_eq!(values[&t], v, "second {t}");
    }
    app.cleanup().await;
}

async fn every_point_is_archived_exactly_once_across_a_restart(engine: Engine) {
    let id = unique_id();
    let opts = || Options {
        backfill_seconds: 20,
        engine,
        ..Options::default()
    };
    let Some(mut app) = spawn_with(opts(), &id, Role::All).await else {
        return;
    };
    eventually("three live ticks", Duration::from_secs(10), || async {
        (window(&app, 3).await.len() >= 23).then_some(())
    })
    .await;
    app.stop_service().await;
    let Some(mut app2) = spawn_with(opts(), &id, Role::All).await else {
        return;
    };
    let before_restart = window(&app2, 3).await.len();
    eventually("three more ticks", Duration::from_secs(10), || async {
        (window(&app2, 3).await.len() >= before_restart + 3).then_some(())
    })
    .await;
    app2.stop_service().await;
    let archive = app2.archive.clone().unwrap();
    for asset in 1..=5 {
        // The window holds every point ever written (1800 s > the test's life).
        let written: BTreeMap<i64, f64> = window(&app2, asset)
            .await
            .into_iter()
            .map(|p| (p.time, p.value))
            .collect();
        let archived = crate::helpers::archived(&archive, asset, ALL.0, ALL.1).await;
        let archived_map: BTreeMap<i64, f64> = archived.iter().copied().collect();
        assert_eq!(archived.len(), archived_map.len(), "no second twice");
        assert_eq!(
            archived_map, written,
            "asset {asset}: archive == what was written"
        );
    }
    assert_eq!(
        app2.engine.archive_backlog().await.unwrap(),
        0,
        "buffer drained"
    );
    drop(app);
    app2.cleanup().await;
}

async fn without_an_archive_history_is_the_live_window(engine: Engine) {
    let Some(app) = spawn_app(Options {
        archive: false,
        history_seconds: 30,
        backfill_seconds: 60,
        engine,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let page = eventually("a full window", Duration::from_secs(5), || async {
        let (status, page) = app
            .get_json("/api/v1/rates/GBPUSD/history?from=0&limit=1000")
            .await;
        (status == 200 && page["points"].as_array()?.len() >= 30).then_some(page)
    })
    .await;
    let t = times(&page["points"]);
    assert!(t.len() <= 31, "only the window: {}", t.len());
    assert_consecutive(&t);
    let (_, ready) = app.get_json("/health/ready").await;
    assert_eq!(ready["archive"], "off");
    app.cleanup().await;
}

/// EURUSD's share of a tick at `time`, worth `value`.
fn eurusd_entry(time: i64, value: f64) -> ratesd::store::records::TickEntry {
    ratesd::store::records::TickEntry {
        point: ratesd::domain::Point {
            asset_name: "EURUSD".into(),
            time,
            asset_id: 1,
            value,
        },
        quote: ratesd::domain::StoredQuote {
            asset_id: 1,
            bid: value,
            ask: value,
            value,
            time,
            quoted_at: time,
            source: "simulated".into(),
        },
    }
}

async fn a_second_is_written_once_and_time_never_goes_back(engine: Engine) {
    let Some(store) = crate::helpers::bare_engine(engine) else {
        return;
    };
    let first = store
        .write_tick(100, 1800, &[eurusd_entry(100, 1.1)], None, 1)
        .await
        .unwrap();
    assert_eq!(
        (first.written, first.data_lost),
        (1, true),
        "first tick sets the epoch"
    );
    // A second writer (or a retried tick) for the same second, or an older one: nothing.
    let again = store
        .write_tick(100, 1800, &[eurusd_entry(100, 1.2)], None, 1)
        .await
        .unwrap();
    assert_eq!((again.written, again.data_lost), (0, false));
    assert_eq!(
        store
            .write_tick(99, 1800, &[eurusd_entry(99, 1.3)], None, 1)
            .await
            .unwrap()
            .written,
        0
    );
    assert_eq!(
        store
            .write_tick(101, 1800, &[eurusd_entry(101, 1.4)], None, 1)
            .await
            .unwrap()
            .written,
        1
    );
    let (points, _) = store.window(1, 0, i64::MAX, 10).await.unwrap();
    let got: Vec<(i64, f64)> = points.iter().map(|p| (p.time, p.value)).collect();
    assert_eq!(got, [(100, 1.1), (101, 1.4)]);
    assert_eq!(store.latest(1).await.unwrap().unwrap().value, 1.4);
    if let ratesd::store::Engine::Redis(redis) = &store {
        redis.delete_all().await.unwrap();
    }
}

/// The fence: once a writer of a newer lease generation has written, a
/// tick of an older one is refused whole, whatever its second; the newer
/// one goes on writing.
async fn a_tick_of_an_older_writer_generation_is_refused(engine: Engine) {
    let Some(store) = crate::helpers::bare_engine(engine) else {
        return;
    };
    let old = store
        .write_tick(100, 1800, &[eurusd_entry(100, 1.0)], None, 7)
        .await
        .unwrap();
    assert_eq!((old.written, old.fenced_by), (1, None));
    let new = store
        .write_tick(101, 1800, &[eurusd_entry(101, 2.0)], None, 8)
        .await
        .unwrap();
    assert_eq!((new.written, new.fenced_by), (1, None));
    // The old leader wakes up and writes the next second: refused.
    let stale = store
        .write_tick(102, 1800, &[eurusd_entry(102, 1.0)], None, 7)
        .await
        .unwrap();
    assert_eq!((stale.written, stale.fenced_by), (0, Some(8)));
    let next = store
        .write_tick(102, 1800, &[eurusd_entry(102, 2.0)], None, 8)
        .await
        .unwrap();
    assert_eq!((next.written, next.fenced_by), (1, None));
    let (points, _) = store.window(1, 0, i64::MAX, 10).await.unwrap();
    let got: Vec<(i64, f64)> = points.iter().map(|p| (p.time, p.value)).collect();
    assert_eq!(got, [(100, 1.0), (101, 2.0), (102, 2.0)]);
    assert_eq!(store.latest(1).await.unwrap().unwrap().value, 2.0);
    if let ratesd::store::Engine::Redis(redis) = &store {
        redis.delete_all().await.unwrap();
    }
}

crate::helpers::on_both_engines!(
    a_tick_of_an_older_writer_generation_is_refused,
    one_point_per_asset_per_second_with_consecutive_times,
    the_window_is_trimmed_to_its_length,
    history_pages_walk_archive_and_window_without_gap_or_duplicate,
    every_point_is_archived_exactly_once_across_a_restart,
    without_an_archive_history_is_the_live_window,
    a_second_is_written_once_and_time_never_goes_back,
);
