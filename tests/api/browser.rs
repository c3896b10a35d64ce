//! The test page in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), against the real service. Saves screenshots to
//! `target/browser-test.png` (v1), `target/browser-test-v2.png` (v2) and
//! `target/browser-test-sse.png` (Server-Sent Events).
//!
//! Needs Debian's `chromium` and `chromium-driver`; `.ci/run` installs them.
//! Without them the test fails under `CI=true` and is skipped elsewhere.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Options, eventually, spawn_app};
use base64::Engine;
use serde_json::{Value, json};

struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(bin: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        eventually("chromedriver ready", Duration::from_secs(20), || async {
            let r = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await;
        driver
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("webdriver request");
        let v: Value = resp.json().await.expect("webdriver json");
        assert!(v["value"]["error"].is_null(), "webdriver {path}: {v}");
        v["value"].clone()
    }
}

/// A headless Chromium session.
struct Browser {
    driver: Driver,
    session: String,
    profile: PathBuf,
}

impl Browser {
    /// chromedriver and chromium, or `None` (said in one line) when they are
    /// not installed outside CI.
    fn binaries() -> Option<(String, String)> {
        let (Some(driver), Some(chromium)) = (
            find("chromedriver", &["/usr/bin/chromedriver"]),
            find("chromium", &["/usr/bin/chromium"]),
        ) else {
            crate::helpers::skip(
                "chromium/chromedriver not installed (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        Some((driver, chromium))
    }

    async fn start((driver_bin, chromium): &(String, String)) -> Self {
        let driver = Driver::start(driver_bin).await;
        let profile =
            std::env::temp_dir().join(format!("ratesd-chromium-{}", crate::helpers::unique_id()));
        let session = driver
            .call(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 "--disable-background-networking", "--disable-component-update",
                                 "--disable-sync", "--disable-quic", "--no-first-run",
                                 "--window-size=1280,800",
                                 format!("--user-data-dir={}", profile.display())]
                    }
                }}})),
            )
            .await;
        let session = session["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        Self {
            driver,
            session,
            profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.driver.call(method, &path, body).await
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The page's `data-*` state on `<body>`.
    async fn dataset(&self) -> Value {
        self.script("return Object.assign({}, document.body.dataset);")
            .await
    }

    /// Saves a screenshot of the page to `target/{file}`.
    async fn screenshot(&self, file: &str) {
        let shot = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap())
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(file);
        std::fs::write(&out, png).unwrap();
    }

    async fn close(self) {
        self.call(reqwest::Method::DELETE, "", None).await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A `data-*` value read as a number (0 when absent).
fn num(v: &Value, key: &str) -> f64 {
    v[key].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0)
}

fn find(name: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
        .or_else(|| {
            let out = Command::new("which").arg(name).output().ok()?;
            let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (!path.is_empty()).then_some(path)
        })
}

/// The service with a full window (a backfilled simulated feed, no
/// archive) and a browser, or `None` when either cannot run here.
async fn page_and_browser() -> Option<(crate::helpers::TestApp, Browser)> {
    let binaries = Browser::binaries()?;
    let app = spawn_app(Options {
        backfill_seconds: 1800,
        archive: false,
        ..Options::default()
    })
    .await?;
    let browser = Browser::start(&binaries).await;
    Some((app, browser))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_charts_history_and_moves_live_in_chromium() {
    let Some((app, browser)) = page_and_browser().await else {
        return;
    };
    browser.goto(&format!("{}/?asset=USDJPY", app.base)).await;
    // The chart holds the history, and the live value moves.
    let state = eventually(
        "a chart of 60+ points and a moving value",
        Duration::from_secs(30),
        || async {
            let d = browser.dataset().await;
            (num(&d, "points") >= 60.0 && num(&d, "changes") >= 1.0).then_some(d)
        },
    )
    .await;
    assert!(
        num(&state, "points") >= 1700.0,
        "the 30-minute history is charted: {state}"
    );
    let value = num(&state, "lastValue");
    assert!(
        (value - 150.0).abs() < 10.0,
        "USDJPY was picked from ?asset=: {value}"
    );
    // An error frame is shown on the page.
    browser
        .script("document.getElementById('send').click(); return 1;")
        .await;
    eventually(
        "the error frame on the page",
        Duration::from_secs(10),
        || async { (num(&browser.dataset().await, "errors") >= 1.0).then_some(()) },
    )
    .await;
    browser.screenshot("browser-test.png").await;
    browser.close().await;
    app.cleanup().await;
}

/// Every v2 panel's `data-*` state (a `stream` each), by stream name.
const V2_PANELS: &str = "const by = {};
    for (const e of document.querySelectorAll('[data-stream]')) by[e.dataset.stream] = Object.assign({}, e.dataset);
    return by;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_v2_charts_several_streams_and_candles_and_resumes_in_chromium() {
    let Some((app, browser)) = page_and_browser().await else {
        return;
    };
    browser
        .goto(&format!(
            "{}/?mode=v2&assets=EURUSD,USDJPY&kline=USDJPY",
            app.base
        ))
        .await;
    let (eur, jpy, kline) = ("EURUSD@point", "USDJPY@point", "USDJPY@kline_1m");
    // Two point charts hold their history, a live value moves, and the
    // candle chart holds the candles of the history.
    let panels = eventually(
        "two charts of 60+ points, a moving value, and candles",
        Duration::from_secs(30),
        || async {
            let p = browser.script(V2_PANELS).await;
            let charted = [eur, jpy].iter().all(|s| num(&p[s], "points") >= 60.0);
            let moved = num(&p[eur], "changes") + num(&p[jpy], "changes") >= 1.0;
            (charted && moved && num(&p[kline], "candles") >= 1.0).then_some(p)
        },
    )
    .await;
    for s in [eur, jpy] {
        assert!(
            num(&panels[s], "points") >= 1700.0,
            "{s}: the 30-minute history is charted: {panels}"
        );
    }
    // Each chart holds its own asset's values.
    assert!(
        (num(&panels[eur], "lastValue") - 1.08).abs() < 0.2,
        "{panels}"
    );
    assert!(
        (num(&panels[jpy], "lastValue") - 150.0).abs() < 10.0,
        "{panels}"
    );
    assert!(
        (num(&panels[kline], "lastClose") - 150.0).abs() < 10.0,
        "{panels}"
    );
    // 30 minutes of 1-minute candles.
    assert!(num(&panels[kline], "candles") >= 30.0, "{panels}");
    // A reconnect resumes each point stream after the last second it saw:
    // no second is drawn twice, none is lost, nothing is loaded again.
    let live = |p: &Value, s: &str| num(&p[s], "live");
    // The page runs on ratesd-client: its socket closed under it, the
    // client reconnects and resumes.
    browser.script("window.page.dropSocket(); return 1;").await;
    let resumed = eventually(
        "both point streams resumed and live again",
        Duration::from_secs(20),
        || async {
            let p = browser.script(V2_PANELS).await;
            [eur, jpy]
                .iter()
                .all(|s| num(&p[s], "resumed") >= 1.0 && live(&p, s) > live(&panels, s))
                .then_some(p)
        },
    )
    .await;
    for s in [eur, jpy] {
        let p = &resumed[s];
        assert_eq!(num(p, "dups"), 0.0, "{s}: a second drawn twice: {p}");
        assert_eq!(num(p, "gaps"), 0.0, "{s}: a second lost: {p}");
        assert_eq!(num(p, "refetched"), 0.0, "{s}: not recovered: {p}");
        assert_eq!(num(p, "snapshots"), 1.0, "{s}: loaded again: {p}");
        assert!(
            num(p, "points") >= num(&panels[s], "points"),
            "{s}: the chart kept its history: {p}"
        );
    }
    assert_eq!(num(&resumed[kline], "dups"), 0.0, "{resumed}");
    assert!(num(&resumed[kline], "candles") >= 30.0, "{resumed}");
    assert_eq!(
        num(&browser.dataset().await, "errors"),
        0.0,
        "no error frame"
    );
    browser.screenshot("browser-test-v2.png").await;
    browser.close().await;
    app.cleanup().await;
}

/// The page's v2 mode runs on ratesd-client: the network drops (a proxy
/// between the browser and the service cuts the connection); the client
/// reconnects by itself and resumes every stream with `since` + `epoch`:
/// no second twice, none lost, nothing loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_v2_resumes_after_a_network_drop_in_chromium() {
    resumes_after_a_network_drop("v2", "browser-test-v2-drop.png").await;
}

/// The page's SSE mode: the same charts from `/api/v2/events` through a
/// real `EventSource`; the network drops and the browser reconnects by
/// itself with `Last-Event-ID`: every stream resumes with no second twice,
/// none lost, nothing loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_sse_charts_streams_and_resumes_after_a_drop_in_chromium() {
    resumes_after_a_network_drop("sse", "browser-test-sse.png").await;
}

/// The page in `mode` (`v2` or `sse`) through a proxy that the test cuts:
/// two point charts and a candle chart, then a drop, then each point
/// stream resumed (no second twice, none lost, no second snapshot).
async fn resumes_after_a_network_drop(mode: &str, screenshot: &str) {
    let Some((app, browser)) = page_and_browser().await else {
        return;
    };
    let target = app.base.trim_start_matches("http://").parse().unwrap();
    let proxy = crate::helpers::CutProxy::start(target).await;
    browser
        .goto(&format!(
            "http://{}/?mode={mode}&assets=EURUSD,USDJPY&kline=USDJPY",
            proxy.addr
        ))
        .await;
    let (eur, jpy, kline) = ("EURUSD@point", "USDJPY@point", "USDJPY@kline_1m");
    let live = |p: &Value, s: &str| num(&p[s], "live");
    let panels = eventually(
        "two charts of 1,700+ points, live, and candles",
        Duration::from_secs(30),
        || async {
            let p = browser.script(V2_PANELS).await;
            let charted = [eur, jpy]
                .iter()
                .all(|s| num(&p[s], "points") >= 1700.0 && live(&p, s) >= 2.0);
            (charted && num(&p[kline], "candles") >= 30.0).then_some(p)
        },
    )
    .await;
    assert!(
        (num(&panels[eur], "lastValue") - 1.08).abs() < 0.2,
        "{panels}"
    );
    assert!(
        (num(&panels[jpy], "lastValue") - 150.0).abs() < 10.0,
        "{panels}"
    );
    assert_eq!(num(&browser.dataset().await, "opens"), 1.0);
    proxy.cut();
    let resumed = eventually(
        "both point streams resumed and live again",
        Duration::from_secs(20),
        || async {
            let p = browser.script(V2_PANELS).await;
            [eur, jpy]
                .iter()
                .all(|s| num(&p[s], "resumed") >= 1.0 && live(&p, s) > live(&panels, s) + 1.0)
                .then_some(p)
        },
    )
    .await;
    assert!(num(&browser.dataset().await, "opens") >= 2.0, "reconnected");
    for s in [eur, jpy] {
        let p = &resumed[s];
        assert_eq!(num(p, "dups"), 0.0, "{s}: a second drawn twice: {p}");
        assert_eq!(num(p, "gaps"), 0.0, "{s}: a second lost: {p}");
        assert_eq!(num(p, "refetched"), 0.0, "{s}: not recovered: {p}");
        assert_eq!(num(p, "snapshots"), 1.0, "{s}: loaded again: {p}");
        assert!(
            num(p, "points") >= num(&panels[s], "points"),
            "{s}: the chart kept its history: {p}"
        );
    }
    assert_eq!(num(&resumed[kline], "dups"), 0.0, "{resumed}");
    assert!(num(&resumed[kline], "candles") >= 30.0, "{resumed}");
    assert_eq!(num(&browser.dataset().await, "errors"), 0.0);
    browser.screenshot(screenshot).await;
    browser.close().await;
    app.cleanup().await;
}

/// On a deployment that needs a key, the page given one (`#key=`) charts
/// over its WebSocket and over its event stream (the key as `?token=`,
/// and as a bearer to REST).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_with_a_key_charts_on_a_keyed_deployment_in_chromium() {
    let Some(binaries) = Browser::binaries() else {
        return;
    };
    let (keys, key) = crate::helpers::KeysFile::with_new_key("pro");
    let Some(app) = spawn_app(Options {
        backfill_seconds: 1800,
        archive: false,
        extra: [
            "--auth",
            "required",
            "--keys-file",
            &keys.path(),
            "--tiers",
            "pro:1000/1000/16/64",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let browser = Browser::start(&binaries).await;
    browser
        .goto(&format!("{}/?asset=USDJPY#key={key}", app.base))
        .await;
    eventually(
        "v1: a chart with the key",
        Duration::from_secs(30),
        || async { (num(&browser.dataset().await, "points") >= 60.0).then_some(()) },
    )
    .await;
    browser
        .goto(&format!("{}/?mode=v2&assets=USDJPY#key={key}", app.base))
        .await;
    eventually(
        "v2: a chart with the key (ratesd-client's getToken)",
        Duration::from_secs(30),
        || async {
            let p = browser.script(V2_PANELS).await;
            (num(&p["USDJPY@point"], "points") >= 60.0).then_some(())
        },
    )
    .await;
    browser
        .goto(&format!("{}/?mode=sse&assets=USDJPY#key={key}", app.base))
        .await;
    eventually(
        "sse: a chart with the key",
        Duration::from_secs(30),
        || async {
            let p = browser.script(V2_PANELS).await;
            (num(&p["USDJPY@point"], "points") >= 60.0).then_some(())
        },
    )
    .await;
    browser.close().await;
    app.cleanup().await;
}
