//! A Redis Cluster master failover for real: a six-node cluster of the
//! test's own (three masters, a replica each, `cluster-node-timeout` 1 s)
//! on loopback; the master serving EURUSD's key group is killed with
//! SIGKILL, its replica takes over, and the service follows.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ratesd::config::Role;

use crate::helpers::{Options, eventually, spawn_with, unique_id};
use crate::redis_cluster::{cli, free_node_port};

struct SixNodes {
    dir: std::path::PathBuf,
    nodes: Vec<(u16, Option<Child>)>,
}

impl SixNodes {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("ratesd-failover-{}", unique_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = free_node_port();
            let child = crate::redis_cluster::node_command(port, &dir)
                .args(["--cluster-node-timeout", "1000"])
                .args(["--repl-diskless-sync-delay", "0"])
                .spawn()
                .expect("redis-server starts");
            nodes.push((port, Some(child)));
        }
        for (port, _) in &nodes {
            let port = *port;
            eventually("a node up", Duration::from_secs(20), || async move {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_ok()
                    .then_some(())
            })
            .await;
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create");
        let cluster = Self { dir, nodes };
        cluster.wait_ok().await;
        // Each master has its replica, in sync (a replica that never synced
        // may not take over), before the test goes on.
        eventually(
            "three replicas in sync",
            Duration::from_secs(30),
            || async {
                let synced = cluster
                    .alive()
                    .filter(|&p| {
                        let info = cli(p, &["info", "replication"]);
                        info.contains("role:slave") && info.contains("master_link_status:up")
                    })
                    .count();
                (synced == 3).then_some(())
            },
        )
        .await;
        cluster
    }

    fn alive(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
    }

    fn nodes_view(&self) -> String {
        let port = self.alive().next().unwrap();
        cli(port, &["cluster", "nodes"])
    }

    async fn wait_ok(&self) {
        eventually("cluster_state:ok", Duration::from_secs(30), || async {
            self.alive()
                .all(|p| cli(p, &["cluster", "info"]).contains("cluster_state:ok"))
                .then_some(())
        })
        .await;
    }

    fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|(p, _)| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the master serving `key`'s slot (not one marked failed).
    fn master_of(&self, key: &str) -> Option<u16> {
        let port = self.alive().next().unwrap();
        let slot: u32 = cli(port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        for line in self.nodes_view().lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let addr = fields[1].split('@').next().unwrap();
            let node_port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
            for range in &fields[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
                    && (a..=b).contains(&slot)
                {
                    return Some(node_port);
                }
            }
        }
        None
    }

    fn kill(&mut self, port: u16) {
        let (_, child) = self.nodes.iter_mut().find(|(p, _)| *p == port).unwrap();
        let mut child = child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for SixNodes {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(c) = child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_is_replaced_by_its_replica_and_followed() {
    if crate::redis_cluster::ports().is_none() {
        return;
    }
    let mut cluster = SixNodes::start().await;
    let id = unique_id();
    let options = || Options {
        engine: crate::helpers::Engine::Redis,
        archive: false,
        extra: vec![
            "--redis-mode".into(),
            "cluster".into(),
            "--redis-url".into(),
            cluster.seeds(),
        ],
        ..Options::default()
    };
    let Some(app) = spawn_with(options(), &id, Role::All).await else {
        return;
    };
    let Some(standby) = spawn_with(options(), &id, Role::Worker).await else {
        return;
    };
    let ws_url = format!("{}/api/v2/ws", app.base.replace("http://", "ws://"));
    let (seconds, sub) = crate::helpers::resuming_subscriber(ws_url);
    eventually("the subscriber live", Duration::from_secs(10), || async {
        (seconds.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    let lease_key = crate::helpers::failover::lease_key(&id);
    let holder = |cluster: &SixNodes| -> Option<String> {
        let port = cluster.alive().next()?;
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &port.to_string(), "--raw", "GET", &lease_key])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!text.is_empty()).then_some(text)
    };
    let before = eventually("a leader", Duration::from_secs(10), || async {
        holder(&cluster)
    })
    .await;
    let (watched, watch) = crate::helpers::failover::watch_readiness(&app);

    // EURUSD's key group, {1}: kill the master that serves it.
    let victim = cluster.master_of("{1}").expect("a master serves {1}");
    cluster.kill(victim);
    let killed = Instant::now();
    let killed_at = ratesd::clock::unix_now();
    eventually(
        "a replica takes over the slot",
        Duration::from_secs(30),
        || async { cluster.master_of("{1}").filter(|&p| p != victim) },
    )
    .await;
    cluster.wait_ok().await;
    let newest = crate::helpers::failover::fresh_after(&app, killed_at).await;
    let takeover = killed.elapsed();
    let seconds = crate::helpers::failover::live_past(&seconds, newest).await;
    sub.abort();
    watch.abort();
    let lost = crate::helpers::failover::holes(&seconds, "the subscriber");
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let watched = watched.lock().unwrap().clone();
    let after = eventually("a leader after", Duration::from_secs(10), || async {
        holder(&cluster)
    })
    .await;
    crate::helpers::failover::assert_lease_moved_on(&before, &after);
    let (written, unwritten) = crate::helpers::failover::written_since(&app, killed_at - 10).await;
    let first_after = written.iter().find(|&&t| t > killed_at).copied();
    let not_ready = watched.iter().filter(|(s, _)| *s != 200).count();
    eprintln!(
        "cluster failover: killed in second {killed_at}; first written after: {first_after:?}; {unwritten} seconds never written; fresh on REST {:.1} s after the kill; the subscriber lost {lost} of {}; readiness not 200 in {not_ready} of {} probes; lease {before} then {after}",
        takeover.as_secs_f64(),
        seconds.len() + lost,
        watched.len()
    );
    standby.cleanup().await;
    app.cleanup().await;
}
