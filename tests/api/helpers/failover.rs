//! What the failover tests (Sentinel, Redis Cluster) check alike: seconds
//! strictly increasing (a gap allowed, a second twice not), the window's
//! seconds around a failover, readiness watched through it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::TestApp;

/// Asserts that `seconds` strictly increase (`what` they are); how many of
/// their span are missing.
pub fn holes(seconds: &[i64], what: &str) -> usize {
    for pair in seconds.windows(2) {
        assert!(
            pair[1] > pair[0],
            "{what}: a second twice or back: {seconds:?}"
        );
    }
    match (seconds.first(), seconds.last()) {
        (Some(first), Some(last)) => (last - first + 1) as usize - seconds.len(),
        _ => 0,
    }
}

/// EURUSD's seconds in the window from `from` on, each checked to be there
/// once; and how many of their span were never written.
pub async fn written_since(app: &TestApp, from: i64) -> (Vec<i64>, usize) {
    let (_, history) = app
        .get_json(&format!(
            "/api/v1/rates/EURUSD/history?from={from}&limit=1000"
        ))
        .await;
    let written: Vec<i64> = history["points"]
        .as_array()
        .expect("a history page")
        .iter()
        .map(|p| p["time"].as_i64().expect("a second"))
        .collect();
    assert!(written.len() > 5, "{history}");
    let unwritten = holes(&written, "the window");
    (written, unwritten)
}

/// Readiness answers seen: (status, reason).
pub type Watched = Arc<Mutex<Vec<(u16, String)>>>;

/// Every `/health/ready` answer, polled every 100 ms until the task is
/// aborted.
pub fn watch_readiness(app: &TestApp) -> (Watched, tokio::task::JoinHandle<()>) {
    let watched = Arc::new(Mutex::new(Vec::new()));
    let (http, url, out) = (app.http.clone(), app.url("/health/ready"), watched.clone());
    let task = tokio::spawn(async move {
        loop {
            if let Ok(r) = http.get(&url).send().await {
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                let reason = body["reason"].as_str().unwrap_or("").to_owned();
                out.lock().unwrap().push((status, reason));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (watched, task)
}

/// Waits until the rates route serves EURUSD fresh from a second after
/// `killed_at`: that second.
pub async fn fresh_after(app: &TestApp, killed_at: i64) -> i64 {
    super::eventually("fresh rates again", Duration::from_secs(30), || async {
        let (status, q) = app.get_json("/api/v1/rates/EURUSD").await;
        let time = q["time"].as_i64()?;
        (status == 200 && time > killed_at && q["stale"] == false).then_some(time)
    })
    .await
}

/// Waits until a subscriber's `seconds` go past `newest + 2` (live again
/// after the failover), then what it received.
pub async fn live_past(seconds: &Mutex<Vec<i64>>, newest: i64) -> Vec<i64> {
    super::eventually(
        "the subscriber live again",
        Duration::from_secs(20),
        || async { (seconds.lock().unwrap().last().copied()? > newest + 2).then_some(()) },
    )
    .await;
    seconds.lock().unwrap().clone()
}

/// The writer's lease key under a test's prefix (`test:ID:`).
pub fn lease_key(id: &str) -> String {
    format!("test:{id}:{{meta}}:leader")
}

/// Asserts that the lease `after` a failover has a generation no older
/// than `before` (tokens are `GENERATION:NODE`).
pub fn assert_lease_moved_on(before: &str, after: &str) {
    let generation = |token: &str| token.split(':').next().unwrap().parse::<u64>().unwrap();
    assert!(
        generation(after) >= generation(before),
        "{before} then {after}"
    );
}
