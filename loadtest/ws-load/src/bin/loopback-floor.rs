//! The floor of a tick's fan-out on this machine: what writing one small
//! frame to each of N loopback TCP sockets costs with nothing else in the
//! way (no WebSocket, no server), while another process (one thread, as
//! `ws-load` runs) reads them all.
//!
//!   loopback-floor [--clients N] [--seconds S] [--writers W] [--bytes B]
//!
//! Once a second the writers (W tasks on a two-thread runtime, as the
//! server's fan-out shards, each with a contiguous slice of the sockets)
//! write B bytes (default 100: a v1 point frame) to every socket. Reported:
//! the burst (from the tick to the last write returning: on loopback the
//! frame has then reached the reader's socket, so this is the arrival
//! spread), its percentiles over the seconds, and the writing process's CPU
//! time a write. The reader is a child process (each process keeps under
//! the file limit: N sockets each).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("read") {
        let addr = args[2].clone();
        let n: usize = args[3].parse().expect("a count");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(read(addr, n));
        return;
    }
    let clients = arg("--clients", 10_000);
    let seconds = arg("--seconds", 30);
    let writers = arg("--writers", 2);
    let bytes = arg("--bytes", 100);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(write(clients, seconds, writers, bytes));
}

/// The reader: connects `n` sockets and reads them until they close.
async fn read(addr: String, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut tcp = TcpStream::connect(&addr).await.expect("connects");
        tasks.spawn(async move {
            let mut buf = [0u8; 4096];
            while matches!(tcp.read(&mut buf).await, Ok(1..)) {}
        });
    }
    println!("connected");
    while tasks.join_next().await.is_some() {}
}

async fn write(clients: usize, seconds: usize, writers: usize, bytes: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address").to_string();
    let mut child = Command::new(std::env::current_exe().expect("this program"))
        .args(["read", &addr, &clients.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the reader starts");
    let mut sockets = Vec::with_capacity(clients);
    while sockets.len() < clients {
        let (tcp, _) = listener.accept().await.expect("accepts");
        tcp.set_nodelay(true).expect("nodelay");
        sockets.push(tcp);
    }
    let stdout = child.stdout.take().expect("the reader's output");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the reader says it is connected");
    let sockets: Arc<[TcpStream]> = sockets.into();
    let frame: Arc<[u8]> = vec![b'x'; bytes].into();
    let slice = clients.div_ceil(writers);
    let mut bursts = Vec::with_capacity(seconds);
    let cpu_before = cpu_seconds();
    let mut failed = 0usize;
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let tick = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            let (sockets, frame) = (sockets.clone(), frame.clone());
            tasks.spawn(tokio::task::unconstrained(async move {
                let mut failed = 0usize;
                for tcp in sockets.iter().skip(w * slice).take(slice) {
                    if tcp.try_write(&frame).ok() != Some(frame.len()) {
                        failed += 1;
                    }
                }
                failed
            }));
        }
        while let Some(done) = tasks.join_next().await {
            failed += done.unwrap_or(0);
        }
        bursts.push(tick.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu = cpu_seconds() - cpu_before;
    drop(sockets);
    let _ = child.wait();
    let mut sorted = bursts.clone();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "FLOOR clients={clients} writers={writers} bytes={bytes} seconds={seconds} \
         burst_ms p50={:.1} p99={:.1} max={:.1} writer_cpu_us_per_write={:.2} failed_writes={failed}",
        at(0.5),
        at(0.99),
        at(1.0),
        cpu * 1e6 / (clients * seconds) as f64,
    );
}

/// This process's CPU time (user and system), in seconds.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage only writes the struct given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}
