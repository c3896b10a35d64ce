//! The test page in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), against the real service. Saves a screenshot to
//! `target/browser-test.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; `.ci/run` installs them.
//! Without them the test fails under CI (`CI` set) and is skipped elsewhere.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_page_charts_history_and_moves_live_in_chromium() {
    let (Some(driver_bin), Some(chromium)) = (
        find("chromedriver", &["/usr/bin/chromedriver"]),
        find("chromium", &["/usr/bin/chromium"]),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are required under CI"
        );
        eprintln!(
            "SKIPPED: chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let Some(app) = spawn_app(Options {
        backfill_seconds: 1800,
        archive: false,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let driver = Driver::start(&driver_bin).await;
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
    let id = session["sessionId"]
        .as_str()
        .expect("session id")
        .to_owned();
    let s = |p: &str| format!("/session/{id}{p}");
    driver
        .call(
            reqwest::Method::POST,
            &s("/url"),
            Some(json!({"url": format!("{}/?asset=USDJPY", app.base)})),
        )
        .await;
    let dataset = || async {
        driver
            .call(
                reqwest::Method::POST,
                &s("/execute/sync"),
                Some(json!({"script": "return Object.assign({}, document.body.dataset);", "args": []})),
            )
            .await
    };
    let num = |v: &Value, k: &str| {
        v[k].as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // The chart holds the history, and the live value moves.
    let state = eventually(
        "a chart of 60+ points and a moving value",
        Duration::from_secs(30),
        || async {
            let d = dataset().await;
            (num(&d, "points") >= 60 && num(&d, "changes") >= 1).then_some(d)
        },
    )
    .await;
    assert!(
        num(&state, "points") >= 1700,
        "the 30-minute history is charted: {state}"
    );
    let value: f64 = state["lastValue"].as_str().unwrap().parse().unwrap();
    assert!(
        (value - 150.0).abs() < 10.0,
        "USDJPY was picked from ?asset=: {value}"
    );
    // An error frame is shown on the page.
    driver
        .call(
            reqwest::Method::POST,
            &s("/execute/sync"),
            Some(
                json!({"script": "document.getElementById('send').click(); return 1;", "args": []}),
            ),
        )
        .await;
    eventually(
        "the error frame on the page",
        Duration::from_secs(10),
        || async { (num(&dataset().await, "errors") >= 1).then_some(()) },
    )
    .await;
    let shot = driver
        .call(reqwest::Method::GET, &s("/screenshot"), None)
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().unwrap())
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-test.png");
    std::fs::write(&out, png).unwrap();
    driver.call(reqwest::Method::DELETE, &s(""), None).await;
    let _ = std::fs::remove_dir_all(profile);
    app.cleanup().await;
}
