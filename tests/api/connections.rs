//! Connections that send nothing, or a header a byte at a time, cannot
//! take the server down: they are closed at their deadline, one address
//! holds only so many, the file limit keeps headroom, and a SIGTERM does
//! not wait for them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Options, Process, spawn_app};

/// A client on another loopback address than the crowd (127.0.0.1).
fn other_client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Waits until the server closes `conn` (EOF or reset), up to `within`;
/// returns whatever it wrote first.
async fn closed_by_server(conn: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| got)
}

/// A header sent a byte at a time is no progress: the connection is closed
/// at its deadline however steadily the bytes come, while a connection that
/// asks again and again is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_trickled_a_byte_at_a_time_is_cut_at_the_deadline() {
    let Some(app) = spawn_app(Options {
        archive: false,
        extra: vec!["--http-idle-timeout-seconds".into(), "2".into()],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let mut busy = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health/live HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answers = 0;
    let cut = loop {
        // One more byte of a header line that never ends; a write fails
        // once the server has closed the connection.
        if slow.write_all(b"x").await.is_err() {
            break started.elapsed();
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(250), slow.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => panic!("an answer to a header that never ended"),
            Err(_) => {}
        }
        // The other connection makes progress: a request and its answer.
        busy.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = busy.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "kept connection answered"
        );
        answers += 1;
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the trickling connection is still open after 8 s"
        );
    };
    assert!(
        cut >= Duration::from_millis(1500),
        "closed before its deadline: {cut:?}"
    );
    assert!(
        answers >= 5,
        "the busy connection was answered {answers} times"
    );
    // The busy connection outlived the trickling one's deadline.
    busy.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = busy.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_capped_per_address() {
    let Some(app) = spawn_app(Options {
        archive: false,
        extra: vec![
            "--http-idle-timeout-seconds".into(),
            "2".into(),
            "--http-max-connections-per-ip".into(),
            "20".into(),
        ],
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    // 20 idle connections and 10 that send half a header: the address's cap.
    let mut held = Vec::new();
    for i in 0..30 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        if i % 3 == 0 {
            c.write_all(b"GET /api/v1/rates HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        held.push(c);
    }
    // The 21st onward are answered 429 and closed at once.
    let mut over = Vec::new();
    for _ in 0..5 {
        over.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut refused = 0;
    for mut c in over {
        let answer = closed_by_server(&mut c, Duration::from_secs(2)).await;
        let text = String::from_utf8_lossy(answer.as_deref().unwrap_or_default()).into_owned();
        assert!(text.starts_with("HTTP/1.1 429"), "over the cap: {text:?}");
        assert!(text.contains("application/problem+json"), "{text}");
        refused += 1;
    }
    assert_eq!(refused, 5);
    // Another address is served meanwhile.
    let other = other_client();
    let r = other.get(app.url("/api/v1/assets")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Every held connection is closed by the server at its 2 s deadline.
    let started = Instant::now();
    for (i, mut c) in held.drain(..).enumerate() {
        let within = Duration::from_secs(6).saturating_sub(started.elapsed());
        assert!(
            closed_by_server(&mut c, within).await.is_some(),
            "connection {i} closed within the deadline"
        );
    }
    // And a kept-alive connection idle after its answer, too.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_by_server(&mut c, Duration::from_secs(6))
        .await
        .expect("closed after the idle deadline");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    app.cleanup().await;
}

/// `ulimit -n 256` on the server, 1,000 idle or slow-header connections
/// from one address: another client is served throughout, and SIGTERM
/// exits within 2 s while they are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_under_a_small_file_limit() {
    ratesd::api::server::raise_file_limit();
    let mut server = Process::spawn_with_file_limit(
        256,
        &[
            ("RATES_DATABASE_URL", "off"),
            ("RATES_LOG", "warn"),
            ("RATES_HTTP_MAX_CONNECTIONS_PER_IP", "100"),
        ],
        Stdio::null(),
    );
    server.ready(Duration::from_secs(15)).await;
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let other = other_client();
    let url = format!("{}/api/v1/rates/EURUSD", server.base);
    let crowd = tokio::spawn(async move {
        let mut held = Vec::new();
        for i in 0..1000 {
            let Ok(mut c) = TcpStream::connect(addr).await else {
                continue;
            };
            if i % 2 == 0 {
                let _ = c.write_all(b"GET / HTTP/1.1\r\nHo").await;
            }
            held.push(c);
        }
        held
    });
    // Served throughout the crowd's arrival and while it is held.
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(4);
    let mut served = 0;
    while Instant::now() < until {
        let asked = Instant::now();
        let r = other.get(&url).send().await.expect("served");
        assert_eq!(r.status(), 200);
        slowest = slowest.max(asked.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = crowd.await.unwrap();
    assert!(held.len() >= 900, "the crowd connected: {}", held.len());
    assert!(served >= 20, "served {served} times");
    // Generous for a debug build on a loaded 2-core machine; the release
    // figure is in the closing note of the issue.
    assert!(
        slowest < Duration::from_secs(1),
        "slowest answer {slowest:?}"
    );
    let stopping = Instant::now();
    server.terminate();
    let status = server.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "stopped in {:?}",
        stopping.elapsed()
    );
    drop(held);
}
