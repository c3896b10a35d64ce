//! ws-load: opens N WebSocket subscribers against ratesd, subscribes them
//! all to one asset, and reports for each published point the delivery
//! latency across all clients, plus the server's memory.
//!
//! Two latencies per delivery, both from the start of the point's second
//! (the tick that made it), so both include the worker's tick, Redis, the
//! fan-out and the socket:
//! - **arrival**: when the frame reached the client's socket, the kernel's
//!   receive timestamp (`SO_TIMESTAMPNS`): what a client on another
//!   machine would see, whatever this generator is doing;
//! - **read**: when this generator's task read it, which also counts the
//!   generator's own scheduling on a machine it shares with the server.
//!
//! `spread` is the time from a point's first arrival to its last: the
//! fan-out alone.
//!
//! `--v2` speaks the v2 protocol (`/api/v2/ws`, many streams a
//! connection) instead: see [`v2`]. `--stream NAME` (with `--sse`, over
//! Server-Sent Events) measures one stream named in the URL: see [`feed`].
//!
//! Run (raise the descriptor limit for both processes first; the tool
//! raises its own soft limit to the hard one, and refuses a run that needs
//! more descriptors than that):
//!   ulimit -n 65536
//!   cargo run --release -p ws-load -- --clients 10000 --seconds 30 --server-pid $(pgrep -n ratesd)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

mod feed;
mod proto;
mod stamped;
mod track;
mod v2;
use stamped::StampedTcp;

#[derive(Parser, Debug)]
#[command(about = "WebSocket subscriber load test for ratesd")]
struct Args {
    /// WebSocket endpoint.
    #[arg(
        long,
        env = "WS_LOAD_URL",
        default_value = "ws://127.0.0.1:8080/api/v1/ws"
    )]
    url: String,
    /// Subscribers to open.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Asset id every subscriber subscribes to.
    #[arg(long, default_value_t = 1)]
    asset: u64,
    /// Connections opened per second while ramping up.
    #[arg(long, default_value_t = 1000)]
    ramp: usize,
    /// How long to measure once everyone is subscribed, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The server's pid, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Threads of the load generator. It shares the machine with the
    /// server: one thread (a single-threaded runtime, no work stealing)
    /// keeps up with 10,000 subscribers and takes about a third less CPU
    /// than two, which the server then has.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Speak the v2 protocol on `/api/v2/ws` (a `--url` path of
    /// `/api/v1/ws`, the default's, becomes `/api/v2/ws`); `--asset` is
    /// not used, the streams come from the server's catalog.
    #[arg(long)]
    v2: bool,
    /// v2: point streams a client subscribes to, `<symbol>@point` of the
    /// first N assets of the server's catalog (method `assets`).
    #[arg(long, default_value_t = 1, requires = "v2")]
    streams: usize,
    /// v2: kline streams a client subscribes to as well,
    /// `<symbol>@kline_1m` of the first M assets.
    #[arg(long, default_value_t = 0, requires = "v2")]
    klines: usize,
    /// v2: seconds of history in each stream's first snapshot (`history`).
    #[arg(long, default_value_t = 0, requires = "v2")]
    history: u64,
    /// v2: after the measurement, every client closes at once, waits
    /// `--storm-gap` seconds, and all reconnect at once with `since` (the
    /// last second each saw) and the epoch they got.
    #[arg(long, requires = "v2")]
    reconnect_storm: bool,
    /// Seconds between the storm's close and its reconnect.
    #[arg(long, default_value_t = 4, requires = "reconnect_storm")]
    storm_gap: u64,
    /// Seconds the storm's clients have to catch up (connect retries included).
    #[arg(long, default_value_t = 60, requires = "reconnect_storm")]
    storm_timeout: u64,
    /// Every client takes this one v2 stream named in the URL
    /// (`/api/v2/ws?streams=NAME`), e.g. `EURUSD@point` or `!all@ticker`,
    /// and each second's frame is measured: see [`feed`].
    #[arg(long, conflicts_with = "v2")]
    stream: Option<String>,
    /// With `--stream`: take it as Server-Sent Events (`/api/v2/events`)
    /// instead of a WebSocket.
    #[arg(long, requires = "stream")]
    sse: bool,
}

/// Descriptors the tool needs besides its connections (stdio, the
/// runtime's epoll and wakers, the catalog's connection, /proc reads).
const SPARE_FILES: u64 = 32;

/// Raises the soft limit of open files to the hard one: the soft limit
/// then in force, and the hard one.
fn raise_open_files() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid resource and a pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above; on failure the old limit stays.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit = raised;
        }
    }
    Some((limit.rlim_cur, limit.rlim_max))
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// CPU time a process has used (user and system), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / hz.max(1) as f64)
}

/// VmRSS and VmHWM (peak) of a process, in MiB.
fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|kib| kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// When to measure, in Unix nanoseconds (0: not set yet), shared by all
/// subscribers: plain atomics, read on every point without a lock.
#[derive(Default)]
struct Window {
    start_ns: AtomicU64,
    stop_ns: AtomicU64,
}

impl Window {
    /// A window that has not started and has no end yet (`measure` sets both).
    fn unbounded() -> Arc<Self> {
        let window = Self::default();
        window.stop_ns.store(u64::MAX, Ordering::Relaxed);
        Arc::new(window)
    }

    /// Records the delivery of second `time` (arrived and read at these
    /// Unix nanoseconds) when the second is in the window; false once it is
    /// past the window's end (the reader stops). The window is a run of
    /// whole seconds, decided by the frame's time, not by when it was read:
    /// every client measures the same seconds however late it reads them.
    fn record(&self, seen: &mut Vec<Delivery>, time: i64, arrived_ns: u64, read_ns: u128) -> bool {
        let started = self.start_ns.load(Ordering::Acquire);
        if started == 0 {
            return true;
        }
        let second_ns = i128::from(time) * 1_000_000_000;
        if second_ns >= i128::from(self.stop_ns.load(Ordering::Relaxed)) {
            return false;
        }
        // Only seconds that began after everyone was subscribed.
        if second_ns >= i128::from(started) {
            seen.push(Delivery {
                time,
                arrived_ns: u128::from(arrived_ns),
                read_ns,
            });
        }
        true
    }
}

/// Paces a ramp of `ramp` new connections a second, in tenths of a second:
/// called before starting connection `i`.
async fn ramp_pause(i: usize, ramp: usize) {
    let per_tick = (ramp / 10).max(1);
    if i > 0 && i.is_multiple_of(per_tick) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One delivery: the point's time (s), when it arrived and when it was read (Unix ns).
struct Delivery {
    time: i64,
    arrived_ns: u128,
    read_ns: u128,
}

/// The latencies of a run, second by second: each second's row is
/// printed as it is added; the totals make the SUMMARY (v1 and v2 alike).
#[derive(Default)]
struct Latencies {
    arrivals: Vec<f64>,
    reads: Vec<f64>,
    spreads: Vec<f64>,
    /// Deliveries without a kernel receive timestamp.
    unstamped: usize,
}

impl Latencies {
    /// Adds the deliveries of the point of second `time` and prints its row
    /// (the count right-aligned in `width` columns).
    fn second(&mut self, time: i64, deliveries: &[Delivery], width: usize) {
        let base = i128::from(time) * 1_000_000_000;
        let ms = |at: u128| (at as i128 - base) as f64 / 1e6;
        let mut arrived: Vec<f64> = deliveries
            .iter()
            .filter(|d| d.arrived_ns != 0)
            .map(|d| ms(d.arrived_ns))
            .collect();
        let mut read: Vec<f64> = deliveries.iter().map(|d| ms(d.read_ns)).collect();
        arrived.sort_by(f64::total_cmp);
        read.sort_by(f64::total_cmp);
        self.unstamped += read.len() - arrived.len();
        let spread = arrived.last().unwrap_or(&0.0) - arrived.first().unwrap_or(&0.0);
        println!(
            "{time}   {:>width$}   {:>14.1}   {:>6.1}   {:>6.1}   {:>9.1}   {:>11.1}",
            deliveries.len(),
            percentile(&arrived, 0.5),
            percentile(&arrived, 0.99),
            percentile(&arrived, 1.0),
            spread,
            percentile(&read, 0.99),
        );
        self.spreads.push(spread);
        self.arrivals.extend(arrived);
        self.reads.extend(read);
    }

    /// Sorts the totals for their percentiles.
    fn finish(&mut self) {
        for v in [&mut self.arrivals, &mut self.reads, &mut self.spreads] {
            v.sort_by(f64::total_cmp);
        }
    }
}

/// `p50=.. p90=.. p99=.. max=..` of sorted values.
fn summary(v: &[f64]) -> String {
    format!(
        "p50={:.1} p90={:.1} p99={:.1} max={:.1}",
        percentile(v, 0.5),
        percentile(v, 0.9),
        percentile(v, 0.99),
        percentile(v, 1.0)
    )
}

/// Opens a WebSocket over a [`StampedTcp`] (plain `ws://` only).
async fn connect(
    url: &str,
) -> Result<tokio_tungstenite::WebSocketStream<StampedTcp>, Box<dyn std::error::Error + Send + Sync>>
{
    let request = url.into_client_request()?;
    let host = request.uri().host().ok_or("no host in url")?.to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    // The server sends small frames (points, 4 KiB history fragments): a
    // 4 KiB read buffer instead of the default 128 KiB keeps the tool's own
    // memory and cache footprint (it shares the machine) small.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(request, StampedTcp::new(tcp)?, Some(config))
            .await?;
    Ok(ws)
}

/// Where a client says it is subscribed (with the size of what it got
/// first: [`await_ready`]) or why not.
type Ready = tokio::sync::mpsc::Sender<Result<usize, String>>;

/// [`connect`], or `None` once the failure is said on `ready`.
async fn connect_or_say(
    url: &str,
    ready: &Ready,
) -> Option<tokio_tungstenite::WebSocketStream<StampedTcp>> {
    match connect(url).await {
        Ok(ws) => Some(ws),
        Err(e) => {
            let _ = ready.send(Err(format!("connect: {e}"))).await;
            None
        }
    }
}

/// One subscriber: connect, subscribe, wait for the history, then record
/// every delivery between the window's start and stop.
async fn subscriber(url: String, asset: u64, ready: Ready, window: Arc<Window>) -> Vec<Delivery> {
    let mut seen = Vec::new();
    let Some(mut ws) = connect_or_say(&url, &ready).await else {
        return seen;
    };
    let sub = format!(r#"{{"action":"subscribe","message":{{"assetId":{asset}}}}}"#);
    if let Err(e) = ws.send(Message::text(sub)).await {
        let _ = ready.send(Err(format!("send: {e}"))).await;
        return seen;
    }
    let mut announced = false;
    while let Some(msg) = ws.next().await {
        let now = unix_nanos();
        let Ok(Message::Text(text)) = msg else {
            if msg.is_err() {
                break;
            }
            continue;
        };
        // Points are read without a full JSON parse, so that the load
        // generator (on the same 2 cores) takes as little CPU as it can.
        if text.starts_with(r#"{"action":"point""#) {
            let time = point_time(text.as_str());
            if !window.record(&mut seen, time, ws.get_ref().arrived_ns(), now) {
                break;
            }
            continue;
        }
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if frame["action"] == "asset_history" && !announced {
            announced = true;
            let n = frame["message"]["points"].as_array().map_or(0, Vec::len);
            let _ = ready.send(Ok(n)).await;
        }
    }
    let _ = ws.close(None).await;
    seen
}

/// The `"time":N` of a point frame.
fn point_time(text: &str) -> i64 {
    text.split_once(r#""time":"#)
        .map(|(_, rest)| {
            rest.bytes()
                .take_while(u8::is_ascii_digit)
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
        })
        .unwrap_or(0)
}

fn main() {
    let args = Args::parse();
    // One descriptor a connection: the run must fit under the limit (the
    // storm closes every connection before it reconnects, so it needs no more).
    if let Some((soft, hard)) = raise_open_files() {
        let needed = args.clients as u64 + SPARE_FILES;
        if needed > soft {
            eprintln!(
                "ws-load: {} clients need about {needed} open files, over the limit of {soft} \
                 (hard limit {hard}); open fewer clients or raise the hard limit",
                args.clients
            );
            std::process::exit(2);
        }
    }
    let runtime = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = runtime.expect("tokio runtime");
    if let Some(stream) = args.stream.clone() {
        runtime.block_on(feed::run(args, stream));
    } else if args.v2 {
        runtime.block_on(v2::run(args));
    } else {
        runtime.block_on(run(args));
    }
}

/// Says how the ramp went (`what`: the largest history or snapshot) and
/// the server's memory after it, then opens the measuring window and waits
/// it out; the server's memory at its end.
async fn measure<E: std::fmt::Display>(
    args: &Args,
    window: &Window,
    (ok, failed): (usize, &[E]),
    ramp_started: Instant,
    what: &str,
) -> Option<(f64, f64)> {
    println!(
        "subscribed: {ok} ok, {} failed in {:.1} s ({what}){}",
        failed.len(),
        ramp_started.elapsed().as_secs_f64(),
        failed
            .first()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    );
    if let Some((rss, peak)) = args.server_pid.and_then(rss_mib) {
        println!("server RSS after subscribe: {rss:.1} MiB (peak {peak:.1} MiB)");
    }
    let started = u64::try_from(unix_nanos()).unwrap_or(u64::MAX);
    window
        .stop_ns
        .store(started + args.seconds * 1_000_000_000, Ordering::Relaxed);
    window.start_ns.store(started, Ordering::Release);
    let cpu_before = args.server_pid.and_then(cpu_seconds);
    let clock = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds) + Duration::from_millis(1500)).await;
    if let (Some(before), Some(after)) = (cpu_before, args.server_pid.and_then(cpu_seconds)) {
        println!(
            "server CPU over the window: {:.3} s a second",
            (after - before) / clock.elapsed().as_secs_f64()
        );
    }
    args.server_pid.and_then(rss_mib)
}

async fn run(args: Args) {
    println!(
        "ws-load: {} subscribers to asset {} at {} ({} per second), measuring {} s",
        args.clients, args.asset, args.url, args.ramp, args.seconds
    );
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.clients.max(1));
    let window = Window::unbounded();
    let ramp_started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        ramp_pause(i, args.ramp).await;
        tasks.push(tokio::spawn(subscriber(
            args.url.clone(),
            args.asset,
            ready_tx.clone(),
            window.clone(),
        )));
    }
    drop(ready_tx);
    let (ok, failed, history) = await_ready(&mut ready_rx, args.clients).await;
    let what = format!("history {history} points");
    let rss = measure(&args, &window, (ok, &failed), ramp_started, &what).await;
    report(tasks, ok, rss, "point time", "points").await;
}

/// Waits until each of `clients` said it is subscribed (with the size of
/// what it got first) or failed, or a minute passes without word: how many
/// are, the errors, and the largest first answer.
async fn await_ready(
    ready: &mut tokio::sync::mpsc::Receiver<Result<usize, String>>,
    clients: usize,
) -> (usize, Vec<String>, usize) {
    let (mut ok, mut failed, mut largest) = (0usize, Vec::new(), 0usize);
    while ok + failed.len() < clients {
        match tokio::time::timeout(Duration::from_secs(60), ready.recv()).await {
            Ok(Some(Ok(n))) => {
                ok += 1;
                largest = largest.max(n);
            }
            Ok(Some(Err(e))) => failed.push(e),
            Ok(None) | Err(_) => break,
        }
    }
    (ok, failed, largest)
}

/// Gathers the readers' deliveries (each reader ends at its first frame
/// after the window; a dead server ends it too), prints a row per second
/// (`first`: the first column's title) and the SUMMARY (`what`: what a
/// second's delivery is called in it).
async fn report(
    tasks: Vec<tokio::task::JoinHandle<Vec<Delivery>>>,
    ok: usize,
    rss: Option<(f64, f64)>,
    first: &str,
    what: &str,
) {
    let mut by_second: std::collections::BTreeMap<i64, Vec<Delivery>> = Default::default();
    for t in tasks {
        if let Ok(Ok(seen)) = tokio::time::timeout(Duration::from_secs(10), t).await {
            for d in seen {
                by_second.entry(d.time).or_default().push(d);
            }
        }
    }
    let mut lat = Latencies::default();
    let mut missing = 0usize;
    println!(
        "\n{first:>10}   clients   arrival p50 ms   p99 ms   max ms   spread ms   read p99 ms"
    );
    for (time, deliveries) in &by_second {
        lat.second(*time, deliveries, 7);
        missing += ok.saturating_sub(deliveries.len());
    }
    lat.finish();
    println!(
        "\nSUMMARY clients={ok} {what}={} deliveries={} missing={missing} unstamped={} \
         arrival_ms {} read_ms {} spread_ms p50={:.1} max={:.1}{}",
        by_second.len(),
        lat.reads.len(),
        lat.unstamped,
        summary(&lat.arrivals),
        summary(&lat.reads),
        percentile(&lat.spreads, 0.5),
        percentile(&lat.spreads, 1.0),
        rss.map(|(r, p)| format!(" server_rss_mib={r:.1} server_peak_mib={p:.1}"))
            .unwrap_or_default()
    );
}
