//! The v2 streams as server-sent events (`/api/v2/events`), on every
//! engine: a snapshot then data, ids, a resume with `Last-Event-ID` that
//! is gapless and duplicate-free, keep-alive comments, the parameters
//! checked before any event, the connection cap shared with WebSockets.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{Engine, TestApp, assert_consecutive};
use crate::websocket_v2::service;

/// One event of an event stream (or a comment line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub comment: Option<String>,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("a data line")).expect("JSON data")
    }
}

/// Reads an event stream's events as they come.
pub struct Events {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            body: Box::pin(resp.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (a blank line ends it), within 10 s.
    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut e = Event::default();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        e.comment = Some(c.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(": ") {
                        match field {
                            "event" => e.event = Some(value.to_owned()),
                            "id" => e.id = Some(value.to_owned()),
                            "data" => e.data = Some(value.to_owned()),
                            _ => {}
                        }
                    }
                }
                return e;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("an event within 10 s")
                .expect("the stream goes on")
                .expect("readable");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// Events until one that `matches`.
    pub async fn until(&mut self, matches: impl Fn(&Event) -> bool) -> Event {
        for _ in 0..10_000 {
            let e = self.next().await;
            if matches(&e) {
                return e;
            }
        }
        panic!("no such event")
    }
}

async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url(&format!("/api/v2/events?{query}")));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.send().await.unwrap()
}

/// The subscribe's answer, each snapshot, then data; the last event of a
/// second is followed by its id; a reconnect with `Last-Event-ID` resumes
/// after it with no gap and no duplicate, and a wrong epoch is told.
async fn an_event_stream_sends_snapshots_data_ids_and_resumes(engine: Engine) {
    let Some(app) = service(engine, 1800, &["--ws-ping-seconds", "1"]).await else {
        return;
    };
    let resp = open(&app, "streams=EURUSD@point,USDJPY@kline_1m&history=3", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut events = Events::new(resp);
    let answer = events
        .until(|e| e.event.as_deref() == Some("subscribed"))
        .await;
    let answer = answer.json();
    assert_eq!(answer["id"], "url");
    let epoch = answer["result"]["epoch"].as_str().unwrap().to_owned();
    let snapshot = events
        .until(|e| e.event.as_deref() == Some("snapshot"))
        .await;
    assert_eq!(snapshot.json()["stream"], "EURUSD@point");
    let first: Vec<i64> = snapshot.json()["snapshot"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["time"].as_i64().unwrap())
        .collect();
    assert_eq!(first.len(), 3);
    let klines = events
        .until(|e| e.event.as_deref() == Some("snapshot"))
        .await;
    assert_eq!(klines.json()["stream"], "USDJPY@kline_1m");
    // Data, with an id once each second is written, and keep-alives.
    let mut seconds = first.clone();
    let mut last_id = None;
    let mut keep_alive = false;
    while seconds.len() < first.len() + 4 || last_id.is_none() || !keep_alive {
        let e = events.next().await;
        if e.comment.as_deref() == Some("keep-alive") {
            keep_alive = true;
            continue;
        }
        if let Some(id) = e.id {
            let (second, id_epoch) = id.split_once('@').expect("second@epoch");
            assert_eq!(id_epoch, epoch);
            assert_eq!(
                second.parse::<i64>().unwrap(),
                *seconds.last().unwrap(),
                "{id}"
            );
            last_id = Some(id.clone());
            continue;
        }
        let data = e.json();
        assert_eq!(e.event.as_deref(), Some("data"), "{data}");
        if data["stream"] == "EURUSD@point" {
            seconds.push(data["data"]["time"].as_i64().unwrap());
        }
    }
    assert_consecutive(&seconds);
    drop(events);
    // EventSource's reconnect: everything after the id, then live.
    let id = last_id.unwrap();
    let resp = open(&app, "streams=EURUSD@point", Some(&id)).await;
    let mut events = Events::new(resp);
    let snapshot = events
        .until(|e| e.event.as_deref() == Some("snapshot"))
        .await;
    let snapshot = snapshot.json()["snapshot"].clone();
    assert_eq!(snapshot["recovered"], true, "{snapshot}");
    let mut resumed: Vec<i64> = snapshot["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["time"].as_i64().unwrap())
        .collect();
    while resumed.len() < 3 {
        let e = events.until(|e| e.event.as_deref() == Some("data")).await;
        resumed.push(e.json()["data"]["time"].as_i64().unwrap());
    }
    let after: i64 = id.split('@').next().unwrap().parse().unwrap();
    assert_eq!(resumed[0], after + 1, "{resumed:?}");
    assert_consecutive(&resumed);
    // Another epoch: the resume is not recovered.
    let resp = open(&app, "streams=EURUSD@point", Some(&format!("{after}@0"))).await;
    let mut events = Events::new(resp);
    let snapshot = events
        .until(|e| e.event.as_deref() == Some("snapshot"))
        .await;
    assert_eq!(snapshot.json()["snapshot"]["recovered"], false);
    app.cleanup().await;
}

/// Bad parameters are a 400 problem before any event; event streams count
/// against the WebSocket connection cap.
async fn an_event_stream_is_checked_first_and_capped_with_websockets(engine: Engine) {
    let Some(app) = service(engine, 300, &["--ws-max-connections-per-ip", "1"]).await else {
        return;
    };
    for (query, last, parameter) in [
        ("", None, "streams"),
        ("streams=EURUSD@nope", None, "streams"),
        ("streams=XXXYYY@point", None, "streams"),
        ("streams=EURUSD@point&history=x", None, "history"),
        ("streams=EURUSD@point", Some("yesterday"), "Last-Event-ID"),
        // A resume point ahead of the clock: refused, not an error event
        // after which EventSource reconnects with it every second.
        (
            "streams=EURUSD@point",
            Some("99999999999@1"),
            "Last-Event-ID",
        ),
        ("streams=EURUSD@point&since=99999999999", None, "since"),
    ] {
        let resp = open(&app, query, last).await;
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["parameter"], parameter, "{query}: {problem}");
    }
    let first = open(&app, "streams=EURUSD@point", None).await;
    assert_eq!(first.status(), 200);
    let mut events = Events::new(first);
    events
        .until(|e| e.event.as_deref() == Some("snapshot"))
        .await;
    let second = open(&app, "streams=EURUSD@point", None).await;
    assert_eq!(second.status(), 429, "the cap holds event streams");
    let ws_url = format!("{}/api/v2/ws", app.base.replace("http://", "ws://"));
    assert!(
        tokio_tungstenite::connect_async(&ws_url).await.is_err(),
        "and WebSockets share it"
    );
    app.cleanup().await;
}

/// With the default settings, a comment at least every 15 seconds keeps
/// proxies from closing the stream.
async fn an_event_stream_has_a_keep_alive_within_15_seconds(engine: Engine) {
    let Some(app) = service(engine, 300, &[]).await else {
        return;
    };
    let started = std::time::Instant::now();
    let mut events = Events::new(open(&app, "streams=EURUSD@ticker", None).await);
    events
        .until(|e| e.comment.as_deref() == Some("keep-alive"))
        .await;
    let after = started.elapsed();
    assert!(
        after <= Duration::from_secs(16),
        "the first keep-alive after {after:?}"
    );
    app.cleanup().await;
}

/// With a short HTTP idle deadline, keep-alive comments come within half
/// of it: the deadline counts only writes once the answer has begun, and
/// must not cut a quiet stream.
async fn keep_alives_come_within_half_the_http_idle_deadline(engine: Engine) {
    let Some(app) = service(engine, 300, &["--http-idle-timeout-seconds", "2"]).await else {
        return;
    };
    let started = std::time::Instant::now();
    let mut events = Events::new(open(&app, "streams=EURUSD@ticker", None).await);
    for _ in 0..3 {
        events
            .until(|e| e.comment.as_deref() == Some("keep-alive"))
            .await;
    }
    let after = started.elapsed();
    assert!(
        after <= Duration::from_secs(8),
        "three keep-alives took {after:?} with a 2 s idle deadline"
    );
    app.cleanup().await;
}

/// `curl -N` reads the stream as it comes.
async fn curl_reads_an_event_stream(engine: Engine) {
    let Some(app) = service(engine, 300, &[]).await else {
        return;
    };
    let out = tokio::process::Command::new("curl")
        .args(["-sN", "--max-time", "3"])
        .arg(app.url("/api/v2/events?streams=EURUSD@point"))
        .output()
        .await;
    let Ok(out) = out else {
        crate::helpers::skip("no curl");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("retry: 1000\n\nevent: subscribed\n"),
        "{text}"
    );
    assert!(text.contains("event: snapshot\n"), "{text}");
    assert!(text.matches("event: data\n").count() >= 2, "{text}");
    assert!(text.contains("\nid: "), "{text}");
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    an_event_stream_sends_snapshots_data_ids_and_resumes,
    an_event_stream_is_checked_first_and_capped_with_websockets,
    curl_reads_an_event_stream,
    an_event_stream_has_a_keep_alive_within_15_seconds,
    keep_alives_come_within_half_the_http_idle_deadline,
);
