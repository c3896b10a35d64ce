//! The real binary under SIGTERM: it stops accepting, finishes its tick,
//! flushes the archive buffer, closes sockets with 1001, and exits 0.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Engine, Needs, PG_BASE, Process, reachable, unique_id};
use futures_util::{SinkExt, StreamExt};
use ratesd::config::RedisMode;
use ratesd::store::{Archive, RedisStore};
use sqlx::migrate::MigrateDatabase;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn sigterm_drains_and_exits_zero(engine: Engine) {
    let redis = match engine.redis_args() {
        Some(args) => Some((args[1].clone(), args[3].clone())),
        None if engine.is_redis() => return,
        None => None,
    };
    if !reachable(Needs::Postgres) {
        return;
    }
    let id = unique_id();
    let prefix = format!("test:{id}:");
    let db_url = format!("{PG_BASE}/ratesd_t_{id}");
    let mut envs = vec![
        ("RATES_REDIS_PREFIX", prefix.as_str()),
        ("RATES_DATABASE_URL", &db_url),
        ("RATES_SIMULATED_BACKFILL_SECONDS", "30"),
        ("RATES_LOG", "warn"),
    ];
    if let Some((url, mode)) = &redis {
        envs.push(("RATES_REDIS_URL", url));
        envs.push(("RATES_REDIS_MODE", mode));
    }
    let mut server = Process::spawn(&envs, Stdio::null());
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
    let history = crate::helpers::until_action(&mut ws, "asset_history").await;
    let mut seen = crate::helpers::times(&history["message"]["points"]);

    server.terminate();
    // Every point up to the close, which says the server is going away.
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(t) => {
                    let f: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    if f["action"] == "point" {
                        seen.push(f["message"]["time"].as_i64().unwrap());
                    }
                }
                Message::Close(c) => return c,
                _ => {}
            }
        }
        None
    })
    .await
    .expect("a close within 10 s")
    .expect("a close frame");
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
    // Everything the worker wrote reached the archive before the exit:
    // every second a client saw, the last one included.
    let archive = Archive::new(&db_url).unwrap();
    let archived = archive.seconds(1, 0, i64::MAX).await.unwrap();
    for t in &seen {
        assert!(
            archived.contains(t),
            "second {t} seen live but not archived"
        );
    }
    if let Some((url, mode)) = &redis {
        let mode = if mode == "cluster" {
            RedisMode::Cluster
        } else {
            RedisMode::Standalone
        };
        let redis = RedisStore::new(url, &prefix, mode).unwrap();
        assert_eq!(redis.archive_backlog().await.unwrap(), 0, "buffer flushed");
        let (points, _) = redis.window(1, 0, i64::MAX, 100_000).await.unwrap();
        assert_eq!(archived.len(), points.len());
        redis.delete_all().await.unwrap();
    }
    archive.close().await;
    let _ = sqlx::Postgres::force_drop_database(&db_url).await;
}

crate::helpers::on_both_engines!(sigterm_drains_and_exits_zero);
