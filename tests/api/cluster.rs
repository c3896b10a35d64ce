//! A real three-master Redis Cluster, started by the test on loopback, under
//! two all-in-one `ratesd` processes in cluster mode: REST, WebSocket
//! history then live, the archive, the election, and keys spread over the
//! masters.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    Needs, PG_BASE, Process, assert_consecutive, eventually, next_frame, reachable, times,
    unique_id, until_action,
};

/// Three masters, no replicas, keeping nothing on disk but their cluster
/// state files, in a directory of their own.
struct RedisCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: PathBuf,
}

/// A port free for a node and for its cluster bus (port + 10000).
fn free_node_port() -> u16 {
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

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisCluster {
    /// `None` (the test is skipped) where redis-server is missing, except
    /// under CI, where it must be there.
    async fn start() -> Option<Self> {
        if !have("redis-server") || !have("redis-cli") {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server and redis-cli are needed under CI"
            );
            eprintln!("skipped: no redis-server");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("ratesd-cluster-{}", unique_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Self {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let port = free_node_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--dir", cluster.dir.to_str().unwrap()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            cluster.ports.push(port);
            cluster.children.push(child);
        }
        for &port in &cluster.ports {
            eventually("a cluster node", Duration::from_secs(20), || async move {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_ok()
                    .then_some(())
            })
            .await;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create");
        for &port in &cluster.ports {
            eventually("cluster_state:ok", Duration::from_secs(30), || async move {
                cluster_cli(port, &["cluster", "info"])
                    .contains("cluster_state:ok")
                    .then_some(())
            })
            .await;
        }
        Some(cluster)
    }

    fn seeds(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Keys on each master.
    fn keys_per_master(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|&p| cluster_cli(p, &["dbsize"]).trim().parse().unwrap_or(0))
            .collect()
    }
}

fn cluster_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What `/health/ready` says of the process's worker.
async fn role(http: &reqwest::Client, p: &Process) -> Option<String> {
    let body: serde_json::Value = http
        .get(format!("{}/health/ready", p.base))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["worker"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn ratesd_on_a_three_master_cluster() {
    if !reachable(Needs::Postgres) {
        return;
    }
    let Some(cluster) = RedisCluster::start().await else {
        return;
    };
    let id = unique_id();
    let db_url = format!("{PG_BASE}/ratesd_t_{id}");
    let seeds = cluster.seeds();
    let envs = [
        ("RATES_REDIS_MODE", "cluster"),
        ("RATES_REDIS_URL", seeds.as_str()),
        ("RATES_REDIS_PREFIX", "rates:"),
        ("RATES_DATABASE_URL", db_url.as_str()),
        ("RATES_LOG", "warn"),
    ];
    let http = reqwest::Client::new();
    let mut first = Process::spawn(&envs, Stdio::null());
    first.ready(Duration::from_secs(30)).await;
    let second = Process::spawn(&envs, Stdio::null());
    second.ready(Duration::from_secs(30)).await;

    // The election: one leads, the other stands by.
    eventually(
        "one leader, one standby",
        Duration::from_secs(10),
        || async {
            (role(&http, &first).await.as_deref() == Some("leader")
                && role(&http, &second).await.as_deref() == Some("standby"))
            .then_some(())
        },
    )
    .await;

    // REST, from the node that does not write.
    let rates: serde_json::Value = http
        .get(format!("{}/api/v1/rates", second.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        rates
            .as_array()
            .map(Vec::len)
            .or_else(|| rates["rates"].as_array().map(Vec::len)),
        Some(5),
        "{rates}"
    );

    // WebSocket: the backfilled history (1700+ seconds), then live.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/api/v1/ws", second.port))
            .await
            .unwrap();
    ws.send(Message::text(
        r#"{"action":"subscribe","message":{"assetId":1}}"#,
    ))
    .await
    .unwrap();
    let history = until_action(&mut ws, "asset_history").await;
    let t = times(&history["message"]["points"]);
    assert!(t.len() >= 1700, "{} seconds of history", t.len());
    assert_consecutive(&t);
    let last = *t.last().unwrap();
    for expected in last + 1..=last + 3 {
        let p = next_frame(&mut ws).await;
        assert_eq!(p["action"], "point", "{p}");
        assert_eq!(p["message"]["time"].as_i64().unwrap(), expected);
    }

    // The keys of different assets spread over the masters.
    let per_master = cluster.keys_per_master();
    assert!(
        per_master.iter().filter(|&&n| n > 0).count() >= 2,
        "keys per master: {per_master:?}"
    );

    // The archive drains every group's buffer.
    let archive = ratesd::store::Archive::new(&db_url).unwrap();
    eventually("archived points", Duration::from_secs(20), || async {
        let got = crate::helpers::archived(&archive, 1, last - 10, last).await;
        (got.len() == 11).then_some(())
    })
    .await;

    // The leader dies: the standby leads, and the series goes on.
    first.signal("KILL");
    first.exit(Duration::from_secs(5)).await;
    eventually("the standby leads", Duration::from_secs(5), || async {
        (role(&http, &second).await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    let newest = || async {
        let r: serde_json::Value = http
            .get(format!("{}/api/v1/rates/EURUSD", second.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        r["time"].as_i64()
    };
    let at_takeover = newest().await.unwrap();
    eventually(
        "points after the takeover",
        Duration::from_secs(10),
        || async { (newest().await? >= at_takeover + 2).then_some(()) },
    )
    .await;
    drop(ws);
    drop(second);
    drop(archive);
    let _ = <sqlx::Postgres as sqlx::migrate::MigrateDatabase>::force_drop_database(&db_url).await;
}
