//! Test harness: the real service on port 0, on the embedded engine or
//! against the real Redis, with the real PostgreSQL; each test isolated by
//! its own key prefix and its own database.
//!
//! A test that needs Redis or PostgreSQL (or a Redis Cluster, Chromium,
//! root) and finds it missing says so in one line and passes as skipped
//! ([`skip`]), except under `CI=true`, where it fails: on a bare machine the
//! embedded-engine tests still run. libtest counts a skipped test as
//! passed and hides what it printed, so the binary ends its run with one
//! line that tallies the skipped tests by reason.

use rand::Rng;
use ratesd::app::App;
use ratesd::config::{Config, RedisMode, Role};
use ratesd::store::Archive;
use sqlx::migrate::MigrateDatabase;

pub mod failover;
mod poll;
mod process;
mod skip;
mod ws;

pub use self::poll::eventually;
pub use self::process::Process;
pub use self::skip::{Needs, reachable, skip};
pub use self::ws::{CutProxy, close_frame, next_frame, resuming_subscriber, until_action};

/// The shared Redis the tests use (each under its own prefix).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Embedded,
    Redis,
    /// The Redis engine on the test binary's Redis Cluster (`redis_cluster`).
    Cluster,
}

impl Engine {
    /// Redis, standalone or a cluster.
    pub fn is_redis(self) -> bool {
        matches!(self, Self::Redis | Self::Cluster)
    }

    /// `--redis-url` and `--redis-mode` for this engine, or `None` when it
    /// is the embedded one or its Redis is unreachable (said in one line).
    pub fn redis_args(self) -> Option<Vec<String>> {
        let (url, mode) = match self {
            Self::Embedded => return None,
            Self::Redis => {
                if !reachable(Needs::Redis) {
                    return None;
                }
                (REDIS_URL.to_owned(), "standalone")
            }
            Self::Cluster => (crate::redis_cluster::seeds()?, "cluster"),
        };
        Some(vec![
            "--redis-url".into(),
            url,
            "--redis-mode".into(),
            mode.into(),
        ])
    }
}

/// Runs each named test body, an `async fn(Engine)`, once per engine, as
/// `embedded::NAME`, `redis::NAME` and `redis_cluster::NAME` beside it: one
/// body, so the engines cannot drift apart.
macro_rules! on_both_engines {
    ($($name:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Engine::Embedded).await
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Engine::Redis).await
                }
            )+
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Engine::Cluster).await
                }
            )+
        }
    };
}
pub(crate) use on_both_engines;

/// A recorded upstream payload from `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Where a recorded payload is (for a `file:` source).
pub fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The archived `(second, value)` pairs of a seed asset with
/// `from <= second <= to`, oldest first.
pub async fn archived(archive: &Archive, asset: u32, from: i64, to: i64) -> Vec<(i64, f64)> {
    let catalog = ratesd::domain::Catalog::with_extra("").unwrap();
    let asset = catalog.by_id(asset).expect("a seed asset");
    let reads = archive.internal().reads().unwrap();
    let points = reads.range(asset, from, to, 100_000).await.unwrap();
    points.into_iter().map(|p| (p.time, p.value)).collect()
}

/// A keys file of its own, holding `keys` (key, tier, name).
pub struct KeysFile(std::path::PathBuf);

impl KeysFile {
    pub fn new(keys: &[(&str, &str, &str)]) -> Self {
        let path = std::env::temp_dir().join(format!("ratesd-keys-{}", unique_id()));
        let file = Self(path);
        file.write(keys);
        file
    }

    pub fn write(&self, keys: &[(&str, &str, &str)]) {
        let text: String = keys
            .iter()
            .map(|(key, tier, name)| ratesd::access::keys::file_line(key, tier, name) + "\n")
            .collect();
        // Written aside and renamed: a reader never sees half a file.
        let aside = self.0.with_extension("new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &self.0).unwrap();
    }

    pub fn path(&self) -> String {
        self.0.display().to_string()
    }

    pub fn file(&self) -> &std::path::Path {
        &self.0
    }

    /// A file holding one new key of `tier` (named `test`), and the key.
    pub fn with_new_key(tier: &str) -> (Self, String) {
        let key = ratesd::access::keys::new_key().unwrap();
        (Self::new(&[(&key, tier, "test")]), key)
    }
}

impl Drop for KeysFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";

pub struct TestApp {
    pub base: String,
    /// The admin listener's base URL, when the test set `--admin-addr`.
    pub admin: Option<String>,
    pub database_url: Option<String>,
    /// The engine the service runs on (the same handle, for the embedded one).
    pub engine: ratesd::store::Engine,
    pub archive: Option<Archive>,
    pub config: Config,
    pub http: reqwest::Client,
    app: Option<App>,
}

/// What a test wants different from the defaults.
pub struct Options {
    pub engine: Engine,
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
            engine: Engine::Embedded,
            sources: "simulated".into(),
            history_seconds: 1800,
            backfill_seconds: 0,
            archive: true,
            database_url: None,
            extra: Vec::new(),
        }
    }
}

impl Options {
    /// On `engine`, no archive, with these flags.
    pub fn flags<S: AsRef<str>>(engine: Engine, flags: &[S]) -> Self {
        Self {
            engine,
            archive: false,
            extra: flags.iter().map(|s| s.as_ref().to_owned()).collect(),
            ..Self::default()
        }
    }

    /// The defaults on `engine`.
    pub fn on(engine: Engine) -> Self {
        Self {
            engine,
            ..Self::default()
        }
    }
}

/// `(time, value)` pairs of EURUSD (asset 1) as archive rows.
pub fn eurusd_rows(points: &[(i64, f64)]) -> Vec<ratesd::domain::ArchivedPoint> {
    points
        .iter()
        .map(|&(time, value)| ratesd::domain::ArchivedPoint {
            asset_id: 1,
            time,
            value,
        })
        .collect()
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// An engine of `kind` with nothing in it, outside any service (for tests
/// of the engine's own rules); `None` when Redis is needed and unreachable.
pub fn bare_engine(kind: Engine) -> Option<ratesd::store::Engine> {
    use ratesd::store::{Embedded, Engine as Store, RedisStore};
    Some(match kind {
        Engine::Embedded => {
            let catalog = ratesd::domain::Catalog::with_extra("").unwrap();
            Store::Embedded(std::sync::Arc::new(Embedded::new(catalog.into())))
        }
        Engine::Redis | Engine::Cluster => {
            let (url, mode) = if kind == Engine::Redis {
                if !reachable(Needs::Redis) {
                    return None;
                }
                (REDIS_URL.to_owned(), RedisMode::Standalone)
            } else {
                (crate::redis_cluster::seeds()?, RedisMode::Cluster)
            };
            let prefix = format!("test:{}:", unique_id());
            Store::Redis(std::sync::Arc::new(
                RedisStore::new(&url, &prefix, mode).unwrap(),
            ))
        }
    })
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn unique_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Starts the service, or `None` (said in one line) when a service it
/// needs is unreachable.
pub async fn spawn_app(opts: Options) -> Option<TestApp> {
    spawn_with(opts, &unique_id(), Role::All).await
}

/// Starts the service with a given isolation id, so that a test can restart
/// it on the same prefix and database (Redis keeps its data across; the
/// embedded engine does not).
pub async fn spawn_with(opts: Options, id: &str, role: Role) -> Option<TestApp> {
    let own_redis = opts.extra.iter().any(|a| a == "--redis-url");
    let redis_args = if opts.engine.is_redis() && !own_redis {
        Some(opts.engine.redis_args()?)
    } else {
        None
    };
    if opts.archive && opts.database_url.is_none() && !reachable(Needs::Postgres) {
        return None;
    }
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
    args.extend(redis_args.into_iter().flatten());
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
    let admin = app.admin_addr().map(|a| format!("http://{a}"));
    let engine = app.engine().clone();
    let archive = database_url.as_deref().map(|u| Archive::new(u).unwrap());
    Some(TestApp {
        base,
        admin,
        database_url,
        engine,
        archive,
        config,
        http: reqwest::Client::new(),
        app: Some(app),
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    /// Every point of `symbol` with `from <= time <= to`, following the
    /// history route's cursors.
    pub async fn history_points(&self, symbol: &str, from: i64, to: i64) -> Vec<(i64, f64)> {
        let first = format!("/api/v1/rates/{symbol}/history?from={from}&to={to}&limit=1000");
        let mut url = first.clone();
        let mut out = Vec::new();
        loop {
            let (status, page) = self.get_json(&url).await;
            assert_eq!(status, 200, "{page}");
            for p in page["points"].as_array().expect("points") {
                let time = p["time"].as_i64().expect("time");
                out.push((time, p["value"].as_f64().expect("value")));
            }
            match page["next_cursor"].as_str() {
                Some(cursor) => url = format!("{first}&cursor={cursor}"),
                None => return out,
            }
        }
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
        if let ratesd::store::Engine::Redis(redis) = &self.engine {
            let _ = redis.delete_all().await;
        }
        if let Some(archive) = &self.archive {
            archive.close().await;
        }
        if let Some(url) = &self.database_url {
            let _ = sqlx::Postgres::force_drop_database(url).await;
        }
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
