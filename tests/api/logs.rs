//! What the binary writes to stdout when it is not a terminal: plain text
//! lines without colour codes, or with `RATES_LOG_FORMAT=json` one JSON
//! object a line.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Process, unique_id};

/// Runs the binary with its stdout in a file until it is ready, stops it,
/// and returns what it logged.
async fn log_of(format: &str) -> String {
    let id = unique_id();
    let path = std::env::temp_dir().join(format!("ratesd-log-{id}.txt"));
    let file = std::fs::File::create(&path).unwrap();
    let mut server = Process::spawn(
        &[
            ("RATES_DATABASE_URL", "off"),
            ("RATES_LOG", "info"),
            ("RATES_LOG_FORMAT", format),
        ],
        Stdio::from(file),
    );
    server.ready(Duration::from_secs(15)).await;
    server.terminate();
    assert_eq!(server.exit(Duration::from_secs(20)).await.code(), Some(0));
    let log = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_log_in_a_file_has_no_escape_codes() {
    let log = log_of("text").await;
    assert!(log.lines().count() >= 2, "a start and a stop line: {log}");
    assert!(log.contains("INFO"), "levels are written: {log}");
    assert!(!log.contains('\u{1b}'), "no escape codes: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_log_has_one_object_a_line() {
    let log = log_of("json").await;
    assert!(log.lines().count() >= 2, "a start and a stop line: {log}");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
}
