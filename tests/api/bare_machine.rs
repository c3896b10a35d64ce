//! `ratesd` as a new user first runs it: no setting at all, on a host where
//! nothing listens (no Redis, no PostgreSQL). The test re-runs this test
//! binary inside a network namespace of its own (`unshare -n`, loopback
//! up), where the second test below starts the real binary and uses it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{assert_consecutive, eventually, next_frame, times, until_action};

const INSIDE: &str = "bare_machine::inside_an_empty_network";

#[test]
fn a_bare_machine_serves_everything_at_once() {
    let can_unshare = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can_unshare {
        crate::helpers::skip("`unshare -n` is not possible here (it needs root)");
        return;
    }
    let me = std::env::current_exe().expect("the test binary");
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(me)
        .args([INSIDE, "--exact", "--ignored", "--nocapture"])
        .stdin(Stdio::null())
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the inner test ran: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside an empty network namespace, started by a_bare_machine_serves_everything_at_once"]
async fn inside_an_empty_network() {
    for port in [6379, 5432] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "nothing may listen on {port} here"
        );
    }
    let log = std::env::temp_dir().join(format!("ratesd-bare-{}.log", std::process::id()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_ratesd"));
    // No setting at all: none of the caller's RATES_* variables, no .env.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RATES_") {
            command.env_remove(key);
        }
    }
    let started = Instant::now();
    let child = command
        .current_dir(std::env::temp_dir())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("ratesd starts");
    // Killed however the test ends: a failed assertion leaves no server behind.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Killed(child);
    let base = "http://127.0.0.1:8080";
    let http = reqwest::Client::new();
    eventually("ready", Duration::from_secs(10), || async {
        let r = http.get(format!("{base}/health/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let ready_in = started.elapsed();

    let rate: serde_json::Value = http
        .get(format!("{base}/api/v1/rates/EURUSD"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rate["stale"], false, "{rate}");

    // A WebSocket history of the whole window, then the next second live.
    let (mut ws, _) = tokio_tungstenite::connect_async("ws://127.0.0.1:8080/api/v1/ws")
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"action":"subscribe","message":{"assetId":1}}"#,
    ))
    .await
    .unwrap();
    let history = until_action(&mut ws, "asset_history").await;
    let seconds = times(&history["message"]["points"]);
    assert!(
        seconds.len() >= 1700,
        "{} seconds of history",
        seconds.len()
    );
    assert_consecutive(&seconds);
    let point = next_frame(&mut ws).await;
    assert_eq!(point["action"], "point", "{point}");
    assert_eq!(point["message"]["time"], seconds.last().unwrap() + 1);

    // History pages walk the same window without a gap.
    let mut walked = Vec::new();
    let mut url = format!("{base}/api/v1/rates/EURUSD/history?limit=500");
    loop {
        let page: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        walked.extend(times(&page["points"]));
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        url = format!("{base}/api/v1/rates/EURUSD/history?limit=500&cursor={cursor}");
    }
    assert!(walked.len() >= 1700, "{} seconds in pages", walked.len());
    assert_consecutive(&walked);

    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(
        text.matches("embedded engine: one process, nothing survives a restart")
            .count(),
        1,
        "{text}"
    );
    assert!(
        !text.contains("ERROR") && !text.contains("WARN ratesd::worker"),
        "{text}"
    );
    assert!(
        ready_in < Duration::from_secs(3),
        "ready in {ready_in:?}, not within 3 s"
    );
}

/// `ratesd serve` and `ratesd worker` alone need a shared engine: without
/// `RATES_REDIS_URL` they exit at once and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_worker_alone_refuse_without_redis() {
    for role in ["serve", "worker"] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ratesd"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RATES_") {
                command.env_remove(key);
            }
        }
        let child = command
            .arg(role)
            .env("RATES_HTTP_ADDR", "127.0.0.1:0")
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ratesd starts");
        let child = std::sync::Mutex::new(Some(child));
        let out = eventually("the refusal", Duration::from_secs(10), || async {
            let mut guard = child.lock().unwrap();
            guard.as_mut()?.try_wait().ok().flatten()?;
            guard.take()?.wait_with_output().ok()
        })
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{role}: {stderr}");
        assert!(
            stderr.contains(&format!("`ratesd {role}` alone needs a shared engine"))
                && stderr.contains("RATES_REDIS_URL"),
            "{role}: {stderr}"
        );
    }
}
