//! Test harness: the real service on port 0 against the real Redis and
//! PostgreSQL, isolated by its own key prefix and its own database.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use ratesd::app::App;
use ratesd::config::{Config, Role};
use ratesd::store::{Archive, RedisStore};
use sqlx::migrate::MigrateDatabase;

pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";

pub struct TestApp {
    pub base: String,
    pub prefix: String,
    pub database_url: Option<String>,
    pub redis: RedisStore,
    pub archive: Option<Archive>,
    pub config: Config,
    pub http: reqwest::Client,
    app: Option<App>,
}

/// What a test wants different from the defaults.
pub struct Options {
    pub sources: String,
    pub history_seconds: u32,
    pub backfill_seconds: u32,
    pub archive: bool,
    /// An archive elsewhere than the shared PostgreSQL (a test's own server).
    pub database_url: Option<String>,
    pub extra: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sources: "simulated".into(),
            history_seconds: 1800,
            backfill_seconds: 0,
            archive: true,
            database_url: None,
            extra: Vec::new(),
        }
    }
}

pub fn unique_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

pub async fn spawn_app(opts: Options) -> TestApp {
    spawn_with(opts, &unique_id(), Role::All).await
}

/// Starts the service with a given isolation id, so that a test can restart
/// it on the same prefix and database.
pub async fn spawn_with(opts: Options, id: &str, role: Role) -> TestApp {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let prefix = format!("test:{id}:");
    let database_url = opts
        .database_url
        .or_else(|| opts.archive.then(|| format!("{PG_BASE}/ratesd_t_{id}")));
    let mut args: Vec<String> = vec![
        "ratesd".into(),
        "--http-addr".into(),
        "127.0.0.1:0".into(),
        "--redis-prefix".into(),
        prefix.clone(),
        "--database-url".into(),
        database_url.clone().unwrap_or_else(|| "off".into()),
        "--sources".into(),
        opts.sources,
        "--history-seconds".into(),
        opts.history_seconds.to_string(),
        "--simulated-backfill-seconds".into(),
        opts.backfill_seconds.to_string(),
    ];
    // Tests hammer one loopback address: no HTTP rate limit unless a test asks.
    if !opts.extra.iter().any(|a| a == "--rate-limit-per-second") {
        args.extend(["--rate-limit-per-second".into(), "0".into()]);
    }
    args.extend(opts.extra);
    let config = Config::from_args(&args).expect("test config");
    let app = App::start(&config, role).await.expect("app starts");
    let base = app
        .addr()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    let redis = RedisStore::new(&config.redis_url, &prefix).unwrap();
    let archive = database_url.as_deref().map(|u| Archive::new(u).unwrap());
    TestApp {
        base,
        prefix,
        database_url,
        redis,
        archive,
        config,
        http: reqwest::Client::new(),
        app: Some(app),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.get(path).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json body"))
    }

    /// Stops the service but keeps its Redis keys and database.
    pub async fn stop_service(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// Stops the service and removes its keys and database.
    pub async fn cleanup(mut self) {
        self.stop_service().await;
        let _ = self.redis.delete_all().await;
        if let Some(archive) = &self.archive {
            archive.close().await;
        }
        if let Some(url) = &self.database_url {
            let _ = sqlx::Postgres::force_drop_database(url).await;
        }
    }
}

/// Polls `check` until it yields `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The times of a JSON array of points.
pub fn times(points: &serde_json::Value) -> Vec<i64> {
    points
        .as_array()
        .expect("points array")
        .iter()
        .map(|p| p["time"].as_i64().expect("time"))
        .collect()
}

pub fn assert_consecutive(times: &[i64]) {
    for w in times.windows(2) {
        assert_eq!(w[1], w[0] + 1, "times not consecutive: {times:?}");
    }
}

/// What the WebSocket helpers below read from: a client socket.
pub trait WsStream:
    futures_util::Stream<
        Item = Result<
            tokio_tungstenite::tungstenite::Message,
            tokio_tungstenite::tungstenite::Error,
        >,
    > + Unpin
{
}

impl<S> WsStream for S where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin
{
}

/// How long a test waits for the server's next WebSocket frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

/// The next text frame of a WebSocket as JSON, skipping pings; panics if
/// none comes within [`FRAME_WAIT`] or the connection closes.
pub async fn next_frame<S>(ws: &mut S) -> serde_json::Value
where
    S: WsStream,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("a frame within the deadline")
            .expect("connection open")
            .expect("no protocol error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Frames until one with `action`, skipping others (points in flight).
pub async fn until_action<S>(ws: &mut S, action: &str) -> serde_json::Value
where
    S: WsStream,
{
    loop {
        let f = next_frame(ws).await;
        if f["action"] == action {
            return f;
        }
    }
}

/// Reads a WebSocket until its close frame, skipping other messages;
/// panics if none comes within `timeout`, or if the connection ends
/// without one.
pub async fn close_frame<S>(
    ws: &mut S,
    timeout: Duration,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame
where
    S: WsStream,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let close = tokio::time::timeout(timeout, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(c) = msg {
                return c;
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("no close frame within {timeout:?}"));
    close.expect("the connection ended without a close frame")
}
