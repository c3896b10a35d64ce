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

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;
use ratesd::app::App;
use ratesd::config::{Config, RedisMode, Role};
use ratesd::store::Archive;
use sqlx::migrate::MigrateDatabase;

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

/// A service a test needs beside the one under test.
#[derive(Debug, Clone, Copy)]
pub enum Needs {
    Redis,
    Postgres,
}

/// The running tests skipped so far, by reason.
static SKIPPED: Mutex<BTreeMap<String, BTreeSet<String>>> = Mutex::new(BTreeMap::new());

/// Marks the running test as skipped for `reason`: says so in one line
/// where it happens and counts it for the run's summary ([`skips_checked`]);
/// under `CI=true` it fails the test instead. The caller then returns.
#[track_caller]
pub fn skip(reason: &str) {
    skips_checked();
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{reason}, and CI=true needs it"
    );
    eprintln!("skipped: {reason}");
    let test = std::thread::current()
        .name()
        .unwrap_or("a test's task")
        .to_owned();
    SKIPPED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(reason.to_owned())
        .or_default()
        .insert(test);
}

/// Notes that a test looked for what it needs, so that the run ends with
/// its summary of skipped tests (none at all for `--list`).
pub fn skips_checked() {
    static SUMMARY: std::sync::Once = std::sync::Once::new();
    SUMMARY.call_once(|| {
        // SAFETY: registers a plain function, run once as the process exits
        // (libtest returns from main, or calls exit on a failure).
        unsafe {
            libc::atexit(print_skips);
        }
    });
}

/// The run's last line: how many tests passed without running, and why.
extern "C" fn print_skips() {
    use std::io::Write;
    let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    let tests: BTreeSet<&String> = skipped.values().flatten().collect();
    let line = if tests.is_empty() {
        "skipped at run time: none (every service the tests need was there)".to_owned()
    } else {
        let reasons: Vec<String> = skipped
            .iter()
            .map(|(reason, tests)| format!("{reason} ({})", tests.len()))
            .collect();
        format!(
            "skipped at run time: {} of the tests above passed without running: {}; \
             CI=true makes them fail instead",
            tests.len(),
            reasons.join("; ")
        )
    };
    let _ = writeln!(std::io::stderr(), "\n{line}\n");
}

/// Whether `service` answers on its loopback port. When it does not, says
/// that the test is skipped ([`skip`]) and returns false; under `CI=true`
/// it fails the test instead.
pub fn reachable(service: Needs) -> bool {
    static REDIS: OnceLock<bool> = OnceLock::new();
    static POSTGRES: OnceLock<bool> = OnceLock::new();
    let (cell, name, addr) = match service {
        Needs::Redis => (&REDIS, "Redis", "127.0.0.1:6379"),
        Needs::Postgres => (&POSTGRES, "PostgreSQL", "127.0.0.1:5432"),
    };
    let up = *cell.get_or_init(|| {
        addr.parse()
            .ok()
            .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).ok())
            .is_some()
    });
    if up {
        skips_checked();
    } else {
        skip(&format!("{name} is not reachable at {addr}"));
    }
    up
}

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

pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";

pub struct TestApp {
    pub base: String,
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
    let engine = app.engine().clone();
    let archive = database_url.as_deref().map(|u| Archive::new(u).unwrap());
    Some(TestApp {
        base,
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

/// The real `ratesd` binary on a free loopback port, for what only a whole
/// process shows: signals, exit codes, what it writes to stdout.
pub struct Process {
    pub base: String,
    pub port: u16,
    child: std::process::Child,
}

impl Process {
    /// Starts the binary with `envs` over its defaults (and `RATES_HTTP_ADDR`
    /// on a free port); its stdout goes to `stdout`, its stderr nowhere.
    pub fn spawn(envs: &[(&str, &str)], stdout: std::process::Stdio) -> Self {
        Self::start(
            std::process::Command::new(env!("CARGO_BIN_EXE_ratesd")),
            envs,
            stdout,
        )
    }

    /// As [`Process::spawn`], with command-line arguments (a subcommand).
    pub fn spawn_args(args: &[&str], envs: &[(&str, &str)], stdout: std::process::Stdio) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ratesd"));
        command.args(args);
        Self::start(command, envs, stdout)
    }

    /// As [`Process::spawn`], under `ulimit -n files` (soft and hard).
    pub fn spawn_with_file_limit(
        files: u32,
        envs: &[(&str, &str)],
        stdout: std::process::Stdio,
    ) -> Self {
        let mut shell = std::process::Command::new("sh");
        shell.args([
            "-c",
            &format!("ulimit -n {files} && exec \"$0\""),
            env!("CARGO_BIN_EXE_ratesd"),
        ]);
        Self::start(shell, envs, stdout)
    }

    fn start(
        mut command: std::process::Command,
        envs: &[(&str, &str)],
        stdout: std::process::Stdio,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = command
            .env("RATES_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .envs(envs.iter().copied())
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ratesd starts");
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            child,
        }
    }

    /// Waits until `/health/ready` says 200.
    pub async fn ready(&self, timeout: Duration) {
        let http = reqwest::Client::new();
        let url = format!("{}/health/ready", self.base);
        eventually("ready", timeout, || async {
            let r = http.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    /// What its `/health/ready` says of its worker (`leader`, `standby`),
    /// `None` when it runs none or does not answer.
    pub async fn worker_role(&self) -> Option<String> {
        let url = format!("{}/health/ready", self.base);
        let body: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
        body["worker"].as_str().map(str::to_owned)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name}");
    }

    /// Waits for the process to exit.
    pub async fn exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = std::sync::Mutex::new(&mut self.child);
        eventually("exit", timeout, || async {
            child.lock().unwrap().try_wait().ok().flatten()
        })
        .await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A test that failed half-way leaves no server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
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

/// A TCP proxy on a loopback port in front of `target`, whose live
/// connections a test can cut at once (a network drop, as a client sees it).
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    /// Closes every connection open now; new ones go through.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
