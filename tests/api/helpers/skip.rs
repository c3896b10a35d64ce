//! Tests that find a service they need missing: skipped with one line
//! where it happens and a tally at the end of the run; failed under
//! `CI=true`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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
