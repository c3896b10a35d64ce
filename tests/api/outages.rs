//! Failures caused for real: a private redis-server killed and restarted
//! empty, a private PostgreSQL stopped and started again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Options, eventually, free_port, spawn_app, unique_id};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn wait_port(port: u16, open: bool) {
    eventually("the port", Duration::from_secs(20), || async {
        (port_open(port) == open).then_some(())
    })
    .await;
}

/// A redis-server of the test's own, on a free port, keeping nothing on disk.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.restart().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again): empty, as after a restart without persistence.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        wait_port(self.port, true).await;
    }

    /// SIGKILL: no goodbye to the clients.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        wait_port(self.port, false).await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A PostgreSQL cluster of the test's own (initdb into a temporary
/// directory, owned by `postgres` when the tests run as root).
struct PrivatePg {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl PrivatePg {
    fn as_postgres(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    async fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = std::env::temp_dir().join(format!("ratesd-pg-{}", unique_id()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let pg = Self {
            dir,
            bin,
            port: free_port(),
        };
        let out = pg
            .as_postgres("initdb")
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        wait_port(pg.port, true).await;
        pg
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let out = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn down(&self) {
        let out = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if port_open(self.port) {
            let _ = self
                .as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

async fn window(app: &crate::helpers::TestApp, asset: u32) -> BTreeMap<i64, f64> {
    let (points, _) = app
        .engine
        .window(asset, 0, i64::MAX, 100_000)
        .await
        .unwrap();
    points.into_iter().map(|p| (p.time, p.value)).collect()
}

/// The service on a private Redis, with an archive holding at least
/// `archived` seconds of EURUSD.
async fn on_private_redis(
    archived: usize,
    within: Duration,
) -> Option<(
    PrivateRedis,
    crate::helpers::TestApp,
    ratesd::store::Archive,
)> {
    let redis = PrivateRedis::start().await;
    let app = spawn_app(Options {
        engine: crate::helpers::Engine::Redis,
        extra: vec!["--redis-url".into(), redis.url()],
        ..Options::default()
    })
    .await?;
    let archive = app.archive.clone().unwrap();
    eventually("archived seconds", within, || async {
        (archive.seconds(1, 0, i64::MAX).await.ok()?.len() >= archived).then_some(())
    })
    .await;
    Some((redis, app, archive))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_is_survived_and_rebuilt() {
    let Some((mut redis, app, archive)) = on_private_redis(5, Duration::from_secs(15)).await else {
        return;
    };
    let ws_url = format!("{}/api/v1/ws", app.base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    ws.send(Message::text(
        r#"{"action":"subscribe","message":{"assetId":1}}"#,
    ))
    .await
    .unwrap();
    let history = ws.next().await.unwrap().unwrap();
    assert!(history.to_text().unwrap().contains("asset_history"));

    let sources_before = eventually("the sources named", Duration::from_secs(10), || async {
        let (_, ready) = app.get_json("/health/ready").await;
        let names: Vec<String> = ready["sources"].as_object()?.keys().cloned().collect();
        (!names.is_empty()).then_some(names)
    })
    .await;

    redis.kill().await;
    let killed_at = ratesd::clock::unix_now();
    // The subscriber is told, with a close it can retry on.
    let close = crate::helpers::close_frame(&mut ws, Duration::from_secs(15)).await;
    assert_eq!(u16::from(close.code), 1012, "{close:?}");
    // Alive, not ready, and REST says 503 with a problem body.
    assert_eq!(app.get("/health/live").await.status(), 200);
    let ready = eventually("not ready", Duration::from_secs(10), || async {
        let (status, body) = app.get_json("/health/ready").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(
        ready["reason"].as_str().unwrap().contains("redis"),
        "{ready}"
    );
    let problem = eventually("503 on rates", Duration::from_secs(10), || async {
        let resp = app.get("/api/v1/rates/EURUSD").await;
        (resp.status() == 503).then_some(resp)
    })
    .await;
    assert_eq!(
        problem.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(problem.headers()["retry-after"], "1");
    // What the alerts read says so too (RatesdRedisUnreachable, RatesdStaleAsset).
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let assets = app.config.catalog().unwrap().assets().len();
    assert!(
        metrics.contains("\nratesd_live_feed_connected 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("\nratesd_stale_assets {assets}\n")),
        "{metrics}"
    );

    redis.restart().await;
    let fresh = eventually("fresh rates again", Duration::from_secs(20), || async {
        let (status, q) = app.get_json("/api/v1/rates/EURUSD").await;
        (status == 200 && q["time"].as_i64()? > killed_at).then_some(q)
    })
    .await;
    assert_eq!(fresh["stale"], false);
    // Readiness says what it said of the sources before the loss.
    eventually(
        "the sources named again",
        Duration::from_secs(10),
        || async {
            let (status, ready) = app.get_json("/health/ready").await;
            let names: Vec<String> = ready["sources"].as_object()?.keys().cloned().collect();
            (status == 200 && names == sources_before).then_some(())
        },
    )
    .await;
    // The window is rebuilt from the archive: it reaches back before the outage.
    let first_archived = archive.seconds(1, 0, i64::MAX).await.unwrap()[0];
    let rebuilt = eventually("the window rebuilt", Duration::from_secs(10), || async {
        let w = window(&app, 1).await;
        (w.keys().next().copied() == Some(first_archived)).then_some(w)
    })
    .await;
    let archived = crate::helpers::archived(&archive, 1, 0, killed_at - 1).await;
    for (t, v) in archived {
        assert_eq!(rebuilt.get(&t), Some(&v), "second {t} restored as archived");
    }
    // A new subscriber gets that history, then live points.
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    ws.send(Message::text(
        r#"{"action":"subscribe","message":{"assetId":1}}"#,
    ))
    .await
    .unwrap();
    let history = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            break serde_json::from_str::<serde_json::Value>(t.as_str()).unwrap();
        }
    };
    let times = crate::helpers::times(&history["message"]["points"]);
    assert!(
        times[0] < killed_at,
        "history from before the outage: {times:?}"
    );
    // The archiver recreated its group on the empty Redis and goes on.
    eventually("new points archived", Duration::from_secs(20), || async {
        let last = *archive.seconds(1, 0, i64::MAX).await.ok()?.last()?;
        (last > killed_at + 1).then_some(())
    })
    .await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_delays_the_archive_and_loses_nothing() {
    let pg = PrivatePg::start().await;
    let db = format!("ratesd_t_{}", unique_id());
    let Some(mut app) = spawn_app(Options {
        database_url: Some(pg.url(&db)),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let archive = app.archive.clone().unwrap();
    eventually(
        "three archived seconds",
        Duration::from_secs(20),
        || async { (archive.seconds(1, 0, i64::MAX).await.ok()?.len() >= 3).then_some(()) },
    )
    .await;

    pg.down();
    let stopped_at = ratesd::clock::unix_now();
    // The live path does not notice; the buffer grows.
    let backlog = eventually("a growing backlog", Duration::from_secs(15), || async {
        let (status, q) = app.get_json("/api/v1/rates/EURUSD").await;
        assert_eq!(status, 200, "REST is unaffected");
        assert_eq!(q["stale"], false);
        let backlog = app.engine.archive_backlog().await.ok()?;
        (backlog >= 4 && q["time"].as_i64()? >= stopped_at + 4).then_some(backlog)
    })
    .await;
    assert!(backlog >= 4);
    let (_, ready) = app.get_json("/health/ready").await;
    assert_eq!(ready["archive"], "unreachable", "{ready}");

    pg.up();
    eventually("the buffer to drain", Duration::from_secs(40), || async {
        (app.engine.archive_backlog().await.ok()? == 0).then_some(())
    })
    .await;
    app.stop_service().await;
    // Every point written, the outage's included, is archived exactly once.
    for asset in 1..=5 {
        let written = window(&app, asset).await;
        let archived = crate::helpers::archived(&archive, asset, 0, i64::MAX).await;
        let archived_map: BTreeMap<i64, f64> = archived.iter().copied().collect();
        assert_eq!(archived.len(), archived_map.len());
        assert_eq!(archived_map, written, "asset {asset}");
        assert!(
            written.keys().any(|&t| t > stopped_at + 3),
            "the outage's seconds are in"
        );
    }
    app.cleanup().await;
}

/// A gauge or counter's value in a Prometheus text scrape (summed over
/// its label sets).
fn scraped(text: &str, family: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l.contains(labels))
        .filter(|l| l[family.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// With PostgreSQL away, readiness answers from what the process holds, at
/// once, and says why; the backlog gauge and the error count move every
/// tick, and the backlog returns to 0 after. The real binary, so that its
/// metrics are its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_archive_metrics_follow_a_postgres_outage() {
    let pg = PrivatePg::start().await;
    let id = unique_id();
    let url = pg.url(&format!("ratesd_t_{id}"));
    let server = crate::helpers::Process::spawn(
        &[("RATES_DATABASE_URL", &url), ("RATES_LOG", "warn")],
        Stdio::null(),
    );
    server.ready(Duration::from_secs(20)).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.base)).send();
    eventually("the archive reached", Duration::from_secs(20), || async {
        let ready: serde_json::Value = get("/health/ready").await.ok()?.json().await.ok()?;
        (ready["archive"] == "ok").then_some(())
    })
    .await;

    pg.down();
    eventually(
        "the archive unreachable",
        Duration::from_secs(20),
        || async {
            let ready: serde_json::Value = get("/health/ready").await.ok()?.json().await.ok()?;
            (ready["archive"] == "unreachable").then_some(())
        },
    )
    .await;
    // 1,000 probes during the outage: all 200, none waiting on the database.
    let mut took = Vec::new();
    for _ in 0..1000 {
        let asked = Instant::now();
        let r = get("/health/ready").await.unwrap();
        took.push(asked.elapsed());
        assert_eq!(
            r.status(),
            200,
            "the live path does not depend on the archive"
        );
    }
    took.sort();
    let p99 = took[989];
    // Well under the old 1 s ping; the release figure is in the issue's note.
    assert!(p99 < Duration::from_millis(100), "readiness p99 {p99:?}");
    // The backlog grows tick by tick, and the errors are counted.
    let scrape = || async { get("/metrics").await.unwrap().text().await.unwrap() };
    let first = scrape().await;
    let mut backlogs = vec![scraped(&first, "ratesd_archive_backlog_ticks", "")];
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await; // three ticks apart, by design
        backlogs.push(scraped(&scrape().await, "ratesd_archive_backlog_ticks", ""));
    }
    assert!(
        backlogs.windows(2).all(|w| w[1] > w[0]),
        "the backlog grows: {backlogs:?}"
    );
    let errors = |text: &str| scraped(text, "ratesd_postgres_errors_total", "");
    let last = scrape().await;
    assert!(
        errors(&last) > errors(&first),
        "errors counted during the outage"
    );

    pg.up();
    eventually("the backlog drained", Duration::from_secs(40), || async {
        (scraped(&scrape().await, "ratesd_archive_backlog_ticks", "") == 0.0).then_some(())
    })
    .await;
    drop(server);
}

/// Right after Redis comes back empty, before the worker rebuilt the
/// window from the archive, a subscriber still gets the whole history: it
/// is read window-then-archive, as REST reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_right_after_redis_returns_gets_the_whole_history() {
    let Some((mut redis, app, archive)) = on_private_redis(10, Duration::from_secs(20)).await
    else {
        return;
    };
    redis.kill().await;
    let killed_at = ratesd::clock::unix_now();
    eventually("not ready", Duration::from_secs(10), || async {
        (app.get("/health/ready").await.status() == 503).then_some(())
    })
    .await;
    let archived = archive.seconds(1, 0, i64::MAX).await.unwrap();
    let first_archived = archived[0];

    redis.restart().await;
    // Subscribers arriving through the next seconds, from the first moment.
    let ws_url = format!("{}/api/v1/ws", app.base.replace("http://", "ws://"));
    let mut histories = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&ws_url).await else {
            continue;
        };
        ws.send(Message::text(
            r#"{"action":"subscribe","message":{"assetId":1}}"#,
        ))
        .await
        .unwrap();
        let frame = crate::helpers::next_frame(&mut ws).await;
        if frame["action"] == "asset_history" {
            histories.push(crate::helpers::times(&frame["message"]["points"]));
        } else {
            // Redis not answering yet is said plainly; an empty history is not.
            assert_eq!(frame["message"]["error_type"], "Internal", "{frame}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(histories.len() >= 10, "{} histories", histories.len());
    for times in &histories {
        assert_eq!(
            times.first(),
            Some(&first_archived),
            "the history reaches back to the first archived second"
        );
        let before: Vec<i64> = times
            .iter()
            .copied()
            .filter(|t| *t < killed_at - 1)
            .collect();
        crate::helpers::assert_consecutive(&before);
        assert!(
            archived
                .iter()
                .filter(|t| **t < killed_at - 1)
                .all(|t| before.contains(t)),
            "every second archived before the outage is in the history"
        );
    }
    app.cleanup().await;
}
