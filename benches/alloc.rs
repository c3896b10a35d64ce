//! Heap allocations per cached rate request and per live point delivered,
//! counted by a counting global allocator (this bench binary's, not the
//! service's).
//!
//! `cargo bench --bench alloc [-- REQUESTS SUBSCRIBERS SECONDS]` (defaults
//! 20,000, 500, 5) starts the service in this process (embedded engine,
//! simulated source, no archive, the request limit on but too high to
//! refuse: 100,000 a second, bursts of 1,000) and a bare axum route answering the same bytes, then:
//!
//! - **per request**: REQUESTS keep-alive `GET`s one after the other over
//!   one connection to each (`/api/v1/rates/EURUSD`, with and without an
//!   `Origin`, and `If-None-Match` for a 304; the bare `/hello`), less what
//!   the process allocates on its own in a quiet window of the same length
//!   (the worker's ticks);
//! - **per delivery**: SUBSCRIBERS v1 and v2 WebSocket subscribers of
//!   EURUSD for SECONDS, less a window of the same length with none, over
//!   the point frames they received.
//!
//! The clients are raw sockets reading into fixed buffers: they allocate
//! nothing while counted, so every allocation is the server's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ratesd::app::App;
use ratesd::config::{Config, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not freed yet.
static LIVE: AtomicI64 = AtomicI64::new(0);

/// `ALLOC_TRACE=1`: the allocations (and frees) of one request, and of one
/// subscriber's connection, are kept with their backtraces (to find what
/// allocates, and what a connection keeps), printed after the counts.
static TRACING: AtomicBool = AtomicBool::new(false);
static EVENTS: std::sync::Mutex<Vec<Event>> = std::sync::Mutex::new(Vec::new());

enum Event {
    Alloc {
        ptr: usize,
        size: usize,
        trace: String,
    },
    Free {
        ptr: usize,
    },
}

thread_local! {
    /// Set while this thread records a trace (which allocates itself), and
    /// on the clients' thread, whose allocations are not the server's.
    static UNCOUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counted() -> bool {
    !UNCOUNTED.with(std::cell::Cell::get)
}

fn note_alloc(ptr: *mut u8, size: usize) {
    if !counted() {
        return;
    }
    ALLOCS.fetch_add(1, Relaxed);
    BYTES.fetch_add(size as u64, Relaxed);
    LIVE.fetch_add(size as i64, Relaxed);
    if TRACING.load(Relaxed) {
        record(|| Event::Alloc {
            ptr: ptr as usize,
            size,
            trace: std::backtrace::Backtrace::force_capture().to_string(),
        });
    }
}

fn note_free(ptr: *mut u8, size: usize) {
    if !counted() {
        return;
    }
    LIVE.fetch_sub(size as i64, Relaxed);
    if TRACING.load(Relaxed) {
        record(|| Event::Free { ptr: ptr as usize });
    }
}

fn record(event: impl FnOnce() -> Event) {
    UNCOUNTED.with(|t| t.set(true));
    let event = event();
    if let Ok(mut events) = EVENTS.lock() {
        events.push(event);
    }
    UNCOUNTED.with(|t| t.set(false));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are only added to.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc(layout) };
        note_alloc(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        note_alloc(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(ptr, layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    /// A reallocation counts as an allocation of the new size.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(ptr, layout.size());
        // SAFETY: the caller's contract, passed on.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        note_alloc(new, new_size);
        new
    }
}

/// The traced events, in order: every allocation (`live`: only those not
/// freed by the end), its size and its frames.
fn traced(live: bool) -> Vec<(usize, String)> {
    let events = std::mem::take(&mut *EVENTS.lock().expect("events"));
    let mut kept: Vec<Option<(usize, usize, String)>> = Vec::new();
    let mut at = std::collections::HashMap::new();
    for event in events {
        match event {
            Event::Alloc { ptr, size, trace } => {
                at.insert(ptr, kept.len());
                kept.push(Some((ptr, size, trace)));
            }
            Event::Free { ptr } => {
                if live && let Some(i) = at.remove(&ptr) {
                    kept[i] = None;
                }
            }
        }
    }
    kept.into_iter()
        .flatten()
        .map(|(_, size, trace)| (size, own_frames(&trace)))
        .collect()
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Count {
    allocs: u64,
    bytes: u64,
}

fn count() -> Count {
    Count {
        allocs: ALLOCS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
    }
}

impl std::ops::Sub for Count {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            allocs: self.allocs.wrapping_sub(o.allocs),
            bytes: self.bytes.wrapping_sub(o.bytes),
        }
    }
}

/// What a busy window allocated beyond a quiet one, per unit of work.
fn per(busy: Count, quiet: Count, units: u64) -> (f64, f64) {
    let units = units.max(1) as f64;
    (
        (busy.allocs as f64 - quiet.allocs as f64) / units,
        (busy.bytes as f64 - quiet.bytes as f64) / units,
    )
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(20_000);
    let subscribers = args.get(1).copied().unwrap_or(500);
    let seconds = args.get(2).copied().unwrap_or(5);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = Config::from_args([
        "ratesd",
        "--http-addr",
        "127.0.0.1:0",
        "--database-url",
        "off",
        "--sources",
        "simulated",
        "--rate-limit-per-second",
        "100000",
        "--rate-limit-burst",
        "1000",
        "--http-max-connections-per-ip",
        "0",
        "--ws-max-connections-per-ip",
        "0",
    ])
    .expect("a configuration");
    let app = runtime
        .block_on(App::start(&config, Role::All))
        .expect("the service starts");
    let ratesd = app.addr().expect("an HTTP address");

    let mut client = Http::connect(ratesd);
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = client.get("/api/v1/rates/EURUSD", "");
        if status == 200 {
            break body.to_vec();
        }
        assert!(Instant::now() < deadline, "no rate within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let etag = client.header_value("etag").expect("an ETag");
    let bare = runtime.block_on(bare_route(body.clone()));

    println!(
        "allocations per request ({requests} keep-alive GETs in a row, a quiet window subtracted)"
    );
    println!("{:<46} {:>8} {:>10}", "request", "allocs", "bytes");
    let if_none_match = format!("If-None-Match: {etag}\r\n");
    let cases: [(&str, SocketAddr, &str, &str, u16); 4] = [
        ("bare axum /hello (same body)", bare, "/hello", "", 200),
        (
            "/api/v1/rates/EURUSD",
            ratesd,
            "/api/v1/rates/EURUSD",
            "",
            200,
        ),
        (
            "/api/v1/rates/EURUSD with Origin",
            ratesd,
            "/api/v1/rates/EURUSD",
            "Origin: https://app.example\r\n",
            200,
        ),
        (
            "/api/v1/rates/EURUSD If-None-Match (304)",
            ratesd,
            "/api/v1/rates/EURUSD",
            &if_none_match,
            304,
        ),
    ];
    for (name, addr, path, headers, expect) in cases {
        let mut c = Http::connect(addr);
        let run = |c: &mut Http, n: u64| {
            for _ in 0..n {
                let (status, _) = c.get(path, headers);
                // A new second may change the ETag mid-run: a 200 then.
                assert!(status == expect || status == 200, "{name}: status {status}");
            }
        };
        run(&mut c, 1_000);
        let before = count();
        let started = Instant::now();
        run(&mut c, requests);
        let busy = count() - before;
        let quiet = quiet_window(started.elapsed());
        let (allocs, bytes) = per(busy, quiet, requests);
        println!("{name:<46} {allocs:>8.2} {bytes:>10.0}");
        if std::env::var_os("ALLOC_TRACE").is_some() {
            // The first request of a second rebuilds the cache: not that one.
            run(&mut c, 1);
            TRACING.store(true, Relaxed);
            run(&mut c, 1);
            TRACING.store(false, Relaxed);
            for (size, frames) in traced(false) {
                println!("--- {size} bytes\n{frames}");
            }
        }
    }

    println!();
    println!(
        "allocations per point delivered ({subscribers} subscribers of EURUSD, {seconds} s, a window without them subtracted)"
    );
    println!(
        "{:<46} {:>8} {:>10} {:>10} {:>14}",
        "protocol", "allocs", "bytes", "frames", "heap/subscriber"
    );
    for (name, path, subscribe) in [
        (
            "v1 /api/v1/ws",
            "/api/v1/ws",
            r#"{"action":"subscribe","message":{"assetId":1}}"#,
        ),
        (
            "v2 /api/v2/ws eurusd@point",
            "/api/v2/ws",
            r#"{"id":1,"method":"subscribe","params":{"streams":["eurusd@point"]}}"#,
        ),
    ] {
        let window = subscribers_window(Crowd {
            addr: ratesd,
            path,
            subscribe,
            n: subscribers,
            seconds,
        });
        // The server closes its side of the sockets before the quiet window.
        std::thread::sleep(Duration::from_secs(2));
        let quiet = quiet_window(Duration::from_secs(seconds));
        let (allocs, bytes) = per(window.busy, quiet, window.frames);
        println!(
            "{name:<46} {allocs:>8.2} {bytes:>10.0} {:>10} {:>14.0}",
            window.frames, window.heap
        );
    }
    runtime.block_on(app.stop());
}

/// A backtrace's frames, without the allocator's and the runtime's.
fn own_frames(trace: &str) -> String {
    trace
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .filter(|l| {
            ![
                "alloc::",
                "std::",
                "core::",
                "tokio::runtime",
                "__rust",
                "alloc::note",
                "<alloc::",
            ]
            .iter()
            .any(|p| l.contains(p))
        })
        .take(12)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the process allocates with no client busy, over `length`.
fn quiet_window(length: Duration) -> Count {
    let before = count();
    std::thread::sleep(length);
    count() - before
}

/// A bare axum route answering `body` as JSON, like `examples/hello.rs`.
async fn bare_route(body: Vec<u8>) -> SocketAddr {
    use axum::http::header;
    let body = bytes::Bytes::from(body);
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A keep-alive HTTP/1.1 client that allocates nothing per request.
struct Http {
    tcp: TcpStream,
    buf: Box<[u8; 16 * 1024]>,
    /// The last answer's header block and body, in `buf`.
    head: usize,
    len: usize,
    out: Vec<u8>,
}

impl Http {
    fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).expect("connects");
        tcp.set_nodelay(true).expect("nodelay");
        Self {
            tcp,
            buf: Box::new([0; 16 * 1024]),
            head: 0,
            len: 0,
            out: Vec::with_capacity(1024),
        }
    }

    /// The status and body of `GET path` with extra `headers` (each ending
    /// in CRLF).
    fn get(&mut self, path: &str, headers: &str) -> (u16, &[u8]) {
        self.out.clear();
        for part in [
            "GET ",
            path,
            " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            headers,
            "\r\n",
        ] {
            self.out.extend_from_slice(part.as_bytes());
        }
        self.tcp.write_all(&self.out).expect("writes");
        let mut filled = 0;
        let head = loop {
            let n = self.tcp.read(&mut self.buf[filled..]).expect("reads");
            assert!(n > 0, "the server closed the connection");
            filled += n;
            if let Some(i) = find(&self.buf[..filled], b"\r\n\r\n") {
                break i + 4;
            }
        };
        let length = self.header_in(head, "content-length").map_or(0, |v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        });
        while filled < head + length {
            let n = self.tcp.read(&mut self.buf[filled..]).expect("reads");
            assert!(n > 0, "the server closed the connection");
            filled += n;
        }
        self.head = head;
        self.len = length;
        let status = std::str::from_utf8(&self.buf[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, &self.buf[head..head + length])
    }

    fn header_in(&self, head: usize, name: &str) -> Option<&[u8]> {
        self.buf[..head].split(|&b| b == b'\n').find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| line[colon + 1..].trim_ascii())
        })
    }

    fn header_value(&self, name: &str) -> Option<String> {
        self.header_in(self.head, name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Frames received by the subscribers after their first (the history or
/// the subscribe's answer).
static FRAMES: AtomicU64 = AtomicU64::new(0);

/// What a window of subscribers showed.
struct Window {
    /// What the server allocated over the measured seconds.
    busy: Count,
    /// Point frames the subscribers received meanwhile.
    frames: u64,
    /// Heap the server holds a subscriber (live bytes with them less
    /// before, over their number).
    heap: f64,
}

/// `n` subscribers of `path`, each sending `subscribe`, for `seconds`.
#[derive(Clone, Copy)]
struct Crowd {
    addr: SocketAddr,
    path: &'static str,
    subscribe: &'static str,
    n: u64,
    seconds: u64,
}

/// A crowd of subscribers on a thread of its own whose allocations are
/// not counted: what the server allocated over the seconds once all had
/// their first frames, the frames they received, and the heap it holds for
/// them. With `ALLOC_TRACE`, what the server still holds of one more
/// subscriber's connection is printed.
fn subscribers_window(crowd: Crowd) -> Window {
    std::thread::spawn(move || {
        UNCOUNTED.with(|t| t.set(true));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(subscribers(crowd))
    })
    .join()
    .expect("the subscribers' thread")
}

async fn subscribers(crowd: Crowd) -> Window {
    let Crowd {
        addr,
        path,
        subscribe,
        n,
        seconds,
    } = crowd;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let live_before = LIVE.load(Relaxed);
    let ready = Arc::new(AtomicU64::new(0));
    for _ in 0..n {
        tasks.spawn(subscriber(
            addr,
            path,
            subscribe,
            ready.clone(),
            stop.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Relaxed) < n {
        assert!(Instant::now() < deadline, "subscribers not ready in 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the subscribes' own allocations: into the next second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let heap = (LIVE.load(Relaxed) - live_before) as f64 / n as f64;
    let frames_before = FRAMES.load(Relaxed);
    let before = count();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let busy = count() - before;
    let frames = FRAMES.load(Relaxed) - frames_before;
    if std::env::var_os("ALLOC_TRACE").is_some() {
        let one = Arc::new(AtomicU64::new(0));
        TRACING.store(true, Relaxed);
        tasks.spawn(subscriber(addr, path, subscribe, one.clone(), stop.clone()));
        while one.load(Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A few points written to it too.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        TRACING.store(false, Relaxed);
        let held = traced(true);
        let total: usize = held.iter().map(|(size, _)| size).sum();
        println!(
            "--- one subscriber: {} allocations held, {total} bytes",
            held.len()
        );
        for (size, frames) in held {
            println!("--- {size} bytes\n{frames}");
        }
    }
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Window { busy, frames, heap }
}

/// One raw WebSocket subscriber: counted in `ready` once it has its first
/// frame, then counting the frames it reads into [`FRAMES`].
async fn subscriber(
    addr: SocketAddr,
    path: &str,
    subscribe: &str,
    ready: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    // A masked text frame with a zero mask: the payload as it is.
    let mut frame = vec![0x81, 0x80 | subscribe.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(subscribe.as_bytes());
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    tcp.write_all(request.as_bytes()).await.expect("writes");
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    let head = loop {
        let k = tcp.read(&mut buf[filled..]).await.expect("reads");
        assert!(k > 0, "closed during the handshake");
        filled += k;
        if let Some(i) = find(&buf[..filled], b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"), "no upgrade");
    tcp.write_all(&frame).await.expect("writes");
    let mut frames = FrameCounter::default();
    let mut seen = frames.feed(&buf[head..filled]);
    let mut counted_ready = false;
    loop {
        if seen > 0 && !counted_ready {
            ready.fetch_add(1, Relaxed);
            counted_ready = true;
        }
        let k = tokio::select! {
            () = stop.cancelled() => return,
            k = tcp.read(&mut buf) => k.expect("reads"),
        };
        if k == 0 {
            return;
        }
        let new = frames.feed(&buf[..k]);
        if counted_ready {
            FRAMES.fetch_add(new, Relaxed);
        }
        seen += new;
    }
}

/// Counts the WebSocket frames of a server's byte stream (unmasked).
#[derive(Default)]
struct FrameCounter {
    header: [u8; 10],
    have: usize,
    skip: u64,
}

impl FrameCounter {
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut frames = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let k = (self.skip as usize).min(bytes.len());
                self.skip -= k as u64;
                bytes = &bytes[k..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have < 2 {
                continue;
            }
            let need = match self.header[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            if self.have < need {
                continue;
            }
            self.skip = match need {
                4 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                10 => u64::from_be_bytes(self.header[2..10].try_into().unwrap_or_default()),
                _ => u64::from(self.header[1] & 0x7f),
            };
            self.have = 0;
            frames += 1;
        }
        frames
    }
}
