//! Two all-in-one `ratesd` processes in cluster mode on the test binary's
//! real three-master Redis Cluster (`redis_cluster`): REST, WebSocket
//! history then live, the archive, the election, and keys spread over the
//! masters.

use std::process::Stdio;
use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    Needs, PG_BASE, Process, assert_consecutive, eventually, next_frame, reachable, times,
    unique_id, until_action,
};

#[tokio::test]
async fn ratesd_on_a_three_master_cluster() {
    if !reachable(Needs::Postgres) {
        return;
    }
    let Some(seeds) = crate::redis_cluster::seeds() else {
        return;
    };
    let id = unique_id();
    let db_url = format!("{PG_BASE}/ratesd_t_{id}");
    let prefix = format!("test:{id}:");
    let envs = [
        ("RATES_REDIS_MODE", "cluster"),
        ("RATES_REDIS_URL", seeds.as_str()),
        ("RATES_REDIS_PREFIX", prefix.as_str()),
        ("RATES_DATABASE_URL", db_url.as_str()),
        ("RATES_LOG", "warn"),
    ];
    let http = reqwest::Client::new();
    let mut first = Process::spawn(&envs, Stdio::null());
    first.ready(Duration::from_secs(30)).await;
    let second = Process::spawn(&envs, Stdio::null());
    second.ready(Duration::from_secs(30)).await;

    // The election: one leads, the other stands by.
    eventually(
        "one leader, one standby",
        Duration::from_secs(10),
        || async {
            (first.worker_role().await.as_deref() == Some("leader")
                && second.worker_role().await.as_deref() == Some("standby"))
            .then_some(())
        },
    )
    .await;

    // REST, from the node that does not write.
    let rates: serde_json::Value = http
        .get(format!("{}/api/v1/rates", second.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        rates
            .as_array()
            .map(Vec::len)
            .or_else(|| rates["rates"].as_array().map(Vec::len)),
        Some(5),
        "{rates}"
    );

    // WebSocket: the backfilled history (1700+ seconds), then live.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/api/v1/ws", second.port))
            .await
            .unwrap();
    ws.send(Message::text(
        r#"{"action":"subscribe","message":{"assetId":1}}"#,
    ))
    .await
    .unwrap();
    let history = until_action(&mut ws, "asset_history").await;
    let t = times(&history["message"]["points"]);
    assert!(t.len() >= 1700, "{} seconds of history", t.len());
    assert_consecutive(&t);
    let last = *t.last().unwrap();
    for expected in last + 1..=last + 3 {
        let p = next_frame(&mut ws).await;
        assert_eq!(p["action"], "point", "{p}");
        assert_eq!(p["message"]["time"].as_i64().unwrap(), expected);
    }

    // The keys of different assets spread over the masters.
    let per_master = crate::redis_cluster::keys_per_master(&prefix);
    assert!(
        per_master.iter().filter(|&&n| n > 0).count() >= 2,
        "keys per master: {per_master:?}"
    );

    // The archive drains every group's buffer.
    let archive = ratesd::store::Archive::new(&db_url).unwrap();
    eventually("archived points", Duration::from_secs(20), || async {
        let got = crate::helpers::archived(&archive, 1, last - 10, last).await;
        (got.len() == 11).then_some(())
    })
    .await;

    // The leader dies: the standby leads, and the series goes on.
    first.signal("KILL");
    first.exit(Duration::from_secs(5)).await;
    eventually("the standby leads", Duration::from_secs(5), || async {
        (second.worker_role().await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    let newest = || async {
        let r: serde_json::Value = http
            .get(format!("{}/api/v1/rates/EURUSD", second.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        r["time"].as_i64()
    };
    let at_takeover = newest().await.unwrap();
    eventually(
        "points after the takeover",
        Duration::from_secs(10),
        || async { (newest().await? >= at_takeover + 2).then_some(()) },
    )
    .await;
    drop(ws);
    drop(second);
    drop(archive);
    let _ = <sqlx::Postgres as sqlx::migrate::MigrateDatabase>::force_drop_database(&db_url).await;
}
