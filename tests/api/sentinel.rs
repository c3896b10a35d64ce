//! Redis through Sentinel (`redis+sentinel://`), with a real failover: a
//! master, a replica and three sentinels of the test's own on loopback;
//! the master is killed with SIGKILL, the sentinels promote the replica,
//! and the service follows them by itself.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ratesd::config::Role;

use crate::helpers::{Options, eventually, free_port, spawn_with, unique_id};
use crate::redis_cluster::cli;

async fn wait_port(port: u16) {
    eventually("the port open", Duration::from_secs(20), || async {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()
            .then_some(())
    })
    .await;
}

/// A master, its replica and three sentinels watching it as `rates`.
struct Deployment {
    dir: PathBuf,
    master: (u16, Option<Child>),
    replica: (u16, Child),
    sentinels: Vec<(u16, Child)>,
}

impl Deployment {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("ratesd-sentinel-{}", unique_id()));
        std::fs::create_dir_all(&dir).unwrap();
        // `--dir`: a replica's full sync writes an RDB file even without
        // `save`; it goes to the test's directory, not the checkout. No
        // delay before the master's first sync (5 s by default), which the
        // test waits for below.
        let redis = |port: u16, extra: &[String]| {
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(&dir)
                .args(extra)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server starts")
        };
        let master_port = free_port();
        let master = redis(master_port, &[]);
        wait_port(master_port).await;
        let replica_port = free_port();
        let replica = redis(
            replica_port,
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                master_port.to_string(),
            ],
        );
        wait_port(replica_port).await;
        // The replica holds the master's data before anything is written:
        // a master killed before the first sync leaves it empty, and the
        // test would lose what was written before the kill.
        eventually("the replica in sync", Duration::from_secs(30), || async {
            cli(replica_port, &["INFO", "replication"])
                .contains("master_link_status:up")
                .then_some(())
        })
        .await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor rates 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds rates 1000\n\
                     sentinel failover-timeout rates 4000\n\
                     sentinel parallel-syncs rates 1\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            // `redis-sentinel` is `redis-server --sentinel`.
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel starts");
            sentinels.push((port, child));
        }
        for (port, _) in &sentinels {
            wait_port(*port).await;
        }
        let deployment = Self {
            dir,
            master: (master_port, Some(master)),
            replica: (replica_port, replica),
            sentinels,
        };
        // Every sentinel knows the replica before the test goes on (a
        // failover needs one to promote).
        eventually(
            "the sentinels see the replica",
            Duration::from_secs(30),
            || async { deployment.sentinels_agree_on_replica().then_some(()) },
        )
        .await;
        deployment
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/rates", hosts.join(","))
    }

    fn sentinel(&self, args: &[&str]) -> String {
        cli(self.sentinels[0].0, &[&["--raw"], args].concat())
    }

    fn sentinels_agree_on_replica(&self) -> bool {
        let replicas = self.sentinel(&["SENTINEL", "replicas", "rates"]);
        replicas.contains(&self.replica.0.to_string())
    }

    /// The master's port as the sentinels name it now.
    fn master_port(&self) -> Option<u16> {
        let out = self.sentinel(&["SENTINEL", "get-master-addr-by-name", "rates"]);
        out.lines().nth(1)?.trim().parse().ok()
    }

    fn kill_master(&mut self) {
        if let Some(mut c) = self.master.1.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let children = self
            .master
            .1
            .iter_mut()
            .chain(std::iter::once(&mut self.replica.1))
            .chain(self.sentinels.iter_mut().map(|(_, c)| c));
        for c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_behind_sentinel_is_followed_to_its_replica() {
    // Redis installed (its redis-server makes the deployment).
    if !crate::helpers::reachable(crate::helpers::Needs::Redis) {
        return;
    }
    let mut deployment = Deployment::start().await;
    let options = || Options {
        engine: crate::helpers::Engine::Redis,
        archive: false,
        extra: vec!["--redis-url".into(), deployment.url()],
        ..Options::default()
    };
    // Two workers on one prefix: the process that serves (and works), and
    // a worker alone standing by.
    let id = unique_id();
    let Some(app) = spawn_with(options(), &id, Role::All).await else {
        return;
    };
    let Some(standby) = spawn_with(options(), &id, Role::Worker).await else {
        return;
    };
    // Who holds the writer's lease, on whichever node is master now.
    let holder = |deployment: &Deployment| -> Option<String> {
        let key = crate::helpers::failover::lease_key(&id);
        let text = cli(deployment.master_port()?, &["--raw", "GET", &key])
            .trim()
            .to_owned();
        (!text.is_empty()).then_some(text)
    };
    let before = eventually("a leader", Duration::from_secs(10), || async {
        holder(&deployment)
    })
    .await;
    let (status, rate) = app.get_json("/api/v1/rates/EURUSD").await;
    assert_eq!(status, 200, "{rate}");
    let ws_url = format!("{}/api/v2/ws", app.base.replace("http://", "ws://"));
    let (seconds, sub) = crate::helpers::resuming_subscriber(ws_url);
    eventually("the subscriber live", Duration::from_secs(10), || async {
        (seconds.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    // Readiness, every 100 ms, through the failover.
    let (watched, watch) = crate::helpers::failover::watch_readiness(&app);

    let old_master = deployment.master.0;
    deployment.kill_master();
    let killed = Instant::now();
    let killed_at = ratesd::clock::unix_now();
    let newest = crate::helpers::failover::fresh_after(&app, killed_at).await;
    let takeover = killed.elapsed();
    assert_eq!(
        deployment.master_port(),
        Some(deployment.replica.0),
        "the sentinels promoted the replica (the old master was {old_master})"
    );
    let seconds = crate::helpers::failover::live_past(&seconds, newest).await;
    sub.abort();
    watch.abort();
    let lost = crate::helpers::failover::holes(&seconds, "the subscriber");
    // Readiness said what happened, and is ready again.
    let watched = watched.lock().unwrap().clone();
    assert!(
        watched
            .iter()
            .any(|(s, reason)| *s == 503 && reason.contains("redis")),
        "readiness never said redis was away: {watched:?}"
    );
    assert_eq!(app.get("/health/ready").await.status(), 200);
    // One writer through it all: the lease held by one node on the new
    // master (the same, when it reached the replica, or the standby's with
    // a newer generation), and the window holds each second once.
    let after = eventually(
        "a leader after the failover",
        Duration::from_secs(10),
        || async { holder(&deployment) },
    )
    .await;
    crate::helpers::failover::assert_lease_moved_on(&before, &after);
    let (written, unwritten) = crate::helpers::failover::written_since(&app, killed_at - 10).await;
    let last_before = written.iter().rev().find(|&&t| t <= killed_at).copied();
    let first_after = written.iter().find(|&&t| t > killed_at).copied();
    eprintln!(
        "sentinel failover: killed in second {killed_at}; written {last_before:?} then {first_after:?}; {unwritten} seconds never written; fresh rates on REST {:.1} s after the kill; the subscriber lost {lost} of {} seconds; lease {before} then {after}",
        takeover.as_secs_f64(),
        seconds.len() + lost
    );
    standby.cleanup().await;
    app.cleanup().await;
}
