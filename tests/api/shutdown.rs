//! The real binary under SIGTERM: it stops accepting, finishes its tick,
//! flushes the archive buffer, closes sockets with 1001, and exits 0.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{PG_BASE, Process, unique_id};
use futures_util::{SinkExt, StreamExt};
use ratesd::store::{Archive, RedisStore};
use sqlx::migrate::MigrateDatabase;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let id = unique_id();
    let prefix = format!("test:{id}:");
    let db_url = format!("{PG_BASE}/ratesd_t_{id}");
    let mut server = Process::spawn(
        &[
            ("RATES_REDIS_PREFIX", &prefix),
            ("RATES_DATABASE_URL", &db_url),
            ("RATES_SIMULATED_BACKFILL_SECONDS", "30"),
            ("RATES_LOG", "warn"),
        ],
        Stdio::null(),
    );
    let (base, port) = (server.base.clone(), server.port);
    let http = reqwest::Client::new();
    server.ready(Duration::from_secs(15)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/v1/ws"))
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"action":"subscribe","message":{"assetId":1}}"#,
    ))
    .await
    .unwrap();
    let _history = ws.next().await.unwrap().unwrap();

    server.terminate();
    let close = crate::helpers::close_frame(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(close.code, CloseCode::Away);
    let status = server.exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "clean exit");
    // No longer accepting.
    assert!(
        http.get(format!("{base}/health/live"))
            .send()
            .await
            .is_err()
    );
    // Everything the worker wrote reached the archive before the exit.
    let redis = RedisStore::new("redis://127.0.0.1:6379", &prefix).unwrap();
    assert_eq!(redis.archive_backlog().await.unwrap(), 0, "buffer flushed");
    let archive = Archive::new(&db_url).unwrap();
    let (members, _) = redis.window(1, 0, i64::MAX, 100_000).await.unwrap();
    let written = redis.parse_points(1, &members).unwrap().len();
    assert_eq!(
        archive.seconds(1, 0, i64::MAX).await.unwrap().len(),
        written
    );
    archive.close().await;
    redis.delete_all().await.unwrap();
    let _ = sqlx::Postgres::force_drop_database(&db_url).await;
}
