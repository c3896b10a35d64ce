//! One real three-master Redis Cluster for the whole test binary, started on
//! first use on loopback (`redis-server --cluster-enabled yes`, joined with
//! `redis-cli --cluster create`); tests share it as they share the local
//! Redis, each under its own key prefix. Its nodes are children of a thread
//! that lives as long as the test binary and die with it (parent-death
//! signal), so no run leaves a node behind (their state files stay in
//! `$TMPDIR/ratesd-cluster-PID` until the next run, which removes those of
//! runs that have ended).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A port free for a node and for its cluster bus (port + 10000).
pub fn free_node_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A cluster node on `port`, its state in `dir`, keeping no data on disk.
pub fn node_command(port: u16, dir: &std::path::Path) -> Command {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .args(["--dir", dir.to_str().expect("a UTF-8 temp dir")])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null());
    command
}

/// Removes the state directories of earlier runs whose process is gone.
fn remove_dead_runs_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ratesd-cluster-"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `redis-cli -p PORT ARGS...`'s output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The shared cluster's master ports; `None` (said in one line) where
/// redis-server or redis-cli is missing, except under `CI=true`.
pub fn ports() -> Option<&'static [u16]> {
    static CLUSTER: OnceLock<Option<Vec<u16>>> = OnceLock::new();
    static TOOLS: OnceLock<bool> = OnceLock::new();
    if !*TOOLS.get_or_init(|| have("redis-server") && have("redis-cli")) {
        crate::helpers::skip("no redis-server/redis-cli for a Redis Cluster");
        return None;
    }
    CLUSTER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                remove_dead_runs_dirs();
                let dir =
                    std::env::temp_dir().join(format!("ratesd-cluster-{}", std::process::id()));
                std::fs::create_dir_all(&dir).expect("a directory for the cluster");
                let ports: Vec<u16> = (0..3).map(|_| free_node_port()).collect();
                let mut children = Vec::new();
                for &port in &ports {
                    let mut command = node_command(port, &dir);
                    // SAFETY: prctl is async-signal-safe; it only asks the
                    // kernel to kill the child when this thread ends.
                    unsafe {
                        command.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    children.push(command.spawn().expect("redis-server starts"));
                }
                for &port in &ports {
                    wait("a cluster node", || {
                        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    });
                }
                let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
                let created = Command::new("redis-cli")
                    .args(["--cluster", "create"])
                    .args(&nodes)
                    .args(["--cluster-replicas", "0", "--cluster-yes"])
                    .stdout(Stdio::null())
                    .status()
                    .expect("redis-cli runs");
                assert!(created.success(), "redis-cli --cluster create");
                for &port in &ports {
                    wait("cluster_state:ok", || {
                        cli(port, &["cluster", "info"]).contains("cluster_state:ok")
                    });
                }
                tx.send(ports).expect("the test thread waits");
                // The nodes live as long as this thread: the whole run.
                let _children = children;
                loop {
                    std::thread::park();
                }
            });
            Some(rx.recv().expect("the cluster starts"))
        })
        .as_deref()
}

/// The seed list `RATES_REDIS_URL` takes in cluster mode.
pub fn seeds() -> Option<String> {
    Some(
        ports()?
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Keys under `prefix` on each master.
pub fn keys_per_master(prefix: &str) -> Vec<usize> {
    ports()
        .unwrap_or_default()
        .iter()
        .map(|&p| {
            cli(p, &["--scan", "--pattern", &format!("{prefix}*")])
                .lines()
                .filter(|l| !l.is_empty())
                .count()
        })
        .collect()
}
