//! The real binary under SIGTERM: it stops accepting, finishes its tick,
//! flushes the archive buffer, closes sockets with 1001, and exits 0.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{PG_BASE, eventually, unique_id};
use futures_util::{SinkExt, StreamExt};
use ratesd::store::{Archive, RedisStore};
use sqlx::migrate::MigrateDatabase;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let id = unique_id();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = format!("test:{id}:");
    let db_url = format!("{PG_BASE}/ratesd_t_{id}");
    let child = Command::new(env!("CARGO_BIN_EXE_ratesd"))
        .env("RATES_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RATES_REDIS_PREFIX", &prefix)
        .env("RATES_DATABASE_URL", &db_url)
        .env("RATES_SIMULATED_BACKFILL_SECONDS", "30")
        .env("RATES_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ratesd starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually("ready", Duration::from_secs(15), || async {
        let r = http.get(format!("{base}/health/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/v1/ws"))
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"action":"subscribe","message":{"assetId":1}}"#,
    ))
    .await
    .unwrap();
    let _history = ws.next().await.unwrap().unwrap();

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let close = common::close_frame(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(close.code, CloseCode::Away);
    let child = std::sync::Mutex::new(child);
    let status = eventually("exit", Duration::from_secs(20), || async {
        child.lock().unwrap().try_wait().ok().flatten()
    })
    .await;
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
