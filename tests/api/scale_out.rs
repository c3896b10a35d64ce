//! Many processes on one Redis, as deployed: two `ratesd worker`s, each
//! replaying a different recorded feed, and two `ratesd serve` nodes. One
//! worker is elected to write; the other stands by, and takes over when the
//! leader dies, stops or is paused past its lease.

use std::time::{Duration, Instant};

use crate::helpers::{Needs, Process, REDIS_URL, eventually, fixture_path, reachable, unique_id};

/// EURUSD's mid price in each recorded feed: which worker wrote a point.
const FEED_A: (&str, f64) = ("fxcm-datadisplayer-2021-strings.txt", 1.129575);
const FEED_B: (&str, f64) = ("fxcm-datadisplayer-2022-numeric.txt", 0.9924);

struct Deployment {
    prefix: String,
    http: reqwest::Client,
}

impl Deployment {
    fn new() -> Option<Self> {
        reachable(Needs::Redis).then(|| Self {
            prefix: format!("test:{}:", unique_id()),
            http: reqwest::Client::new(),
        })
    }

    fn envs<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut envs = vec![
            ("RATES_REDIS_URL", REDIS_URL),
            ("RATES_REDIS_PREFIX", self.prefix.as_str()),
            ("RATES_DATABASE_URL", "off"),
            ("RATES_STALE_AFTER_SECONDS", "30"),
        ];
        envs.extend_from_slice(extra);
        envs
    }

    /// `ratesd worker` replaying `feed`.
    fn worker(&self, feed: (&str, f64)) -> Process {
        let source = format!("file:{}", fixture_path(feed.0));
        Process::spawn_args(
            &["worker"],
            &self.envs(&[("RATES_SOURCES", &source)]),
            std::process::Stdio::null(),
        )
    }

    fn serve(&self) -> Process {
        Process::spawn_args(&["serve"], &self.envs(&[]), std::process::Stdio::null())
    }

    /// EURUSD's latest value as `node` serves it.
    async fn latest(&self, node: &Process) -> Option<f64> {
        let url = format!("{}/api/v1/rates/EURUSD", node.base);
        let body: serde_json::Value = self.http.get(&url).send().await.ok()?.json().await.ok()?;
        body["value"].as_f64()
    }

    /// Waits until `node` serves the value of `feed`.
    async fn until_serving(&self, node: &Process, feed: (&str, f64)) -> Instant {
        eventually(
            &format!("EURUSD from {}", feed.0),
            Duration::from_secs(20),
            || async { (self.latest(node).await == Some(feed.1)).then(Instant::now) },
        )
        .await
    }

    /// EURUSD's whole window as `node` serves it: `(second, value)`.
    async fn series(&self, node: &Process) -> Vec<(i64, f64)> {
        let url = format!(
            "{}/api/v1/rates/EURUSD/history?from=0&limit=1000",
            node.base
        );
        let page: serde_json::Value = self
            .http
            .get(&url)
            .send()
            .await
            .expect("history answers")
            .json()
            .await
            .expect("history is JSON");
        page["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| (p["time"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
            .collect()
    }
}

/// Checks a series written by A then B: every second once and in order;
/// A's points, then B's, never mixed; at most `max_missing` seconds missing
/// at the handover and none elsewhere. Returns the seconds missing.
fn assert_handover(series: &[(i64, f64)], max_missing: i64) -> i64 {
    let times: Vec<i64> = series.iter().map(|p| p.0).collect();
    assert!(
        times.windows(2).all(|w| w[1] > w[0]),
        "every second once, in order: {times:?}"
    );
    let writers: Vec<char> = series
        .iter()
        .map(|&(_, v)| match v {
            v if v == FEED_A.1 => 'A',
            v if v == FEED_B.1 => 'B',
            other => panic!("a value of neither feed: {other}"),
        })
        .collect();
    let first_b = writers
        .iter()
        .position(|&w| w == 'B')
        .unwrap_or_else(|| panic!("B never wrote: {writers:?}"));
    assert!(first_b > 0, "A wrote first: {writers:?}");
    assert!(
        writers[first_b..].iter().all(|&w| w == 'B'),
        "one writer at a time, A then B: {}",
        writers.iter().collect::<String>()
    );
    let mut missing = 0;
    for (i, w) in times.windows(2).enumerate() {
        let gap = w[1] - w[0] - 1;
        if i + 1 == first_b {
            missing = gap;
        } else {
            assert_eq!(gap, 0, "seconds missing away from the handover: {times:?}");
        }
    }
    assert!(
        missing <= max_missing,
        "{missing} seconds missing at the handover (at most {max_missing})"
    );
    missing
}

#[tokio::test]
async fn one_worker_writes_and_a_standby_takes_over_after_kill_9() {
    let Some(d) = Deployment::new() else { return };
    let mut a = d.worker(FEED_A);
    let s1 = d.serve();
    let s2 = d.serve();
    d.until_serving(&s1, FEED_A).await;
    let b = d.worker(FEED_B);
    // A worker alone serves its probes: its role shows there.
    eventually("A leads, B stands by", Duration::from_secs(10), || async {
        (a.worker_role().await.as_deref() == Some("leader")
            && b.worker_role().await.as_deref() == Some("standby"))
        .then_some(())
    })
    .await;
    assert_eq!(s1.worker_role().await, None, "an API node runs no worker");
    // B runs beside A for a while: it must write nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = d.series(&s1).await;
    assert!(before.len() >= 4, "{before:?}");
    assert!(
        before.iter().all(|&(_, v)| v == FEED_A.1),
        "only the leader writes while both run: {before:?}"
    );

    a.signal("KILL");
    let killed = Instant::now();
    a.exit(Duration::from_secs(5)).await;
    let took_over = d.until_serving(&s1, FEED_B).await;
    eprintln!("B serves {:?} after kill -9 of A", took_over - killed);
    assert_eq!(b.worker_role().await.as_deref(), Some("leader"));
    // A few seconds of B, then both API nodes must say the same.
    let last = d.series(&s1).await.last().unwrap().0;
    eventually("3 more seconds", Duration::from_secs(10), || async {
        (d.series(&s1).await.last()?.0 >= last + 3).then_some(())
    })
    .await;
    let (one, two) = (d.series(&s1).await, d.series(&s2).await);
    let common = one.last().unwrap().0.min(two.last().unwrap().0);
    let upto = |s: &[(i64, f64)]| -> Vec<(i64, f64)> {
        s.iter().copied().filter(|p| p.0 <= common).collect()
    };
    assert_eq!(
        upto(&one),
        upto(&two),
        "both API nodes deliver the same points"
    );
    assert_handover(&one, 2);
    drop(b);
}

#[tokio::test]
async fn a_paused_leader_writes_nothing_after_its_successor() {
    let Some(d) = Deployment::new() else { return };
    let a = d.worker(FEED_A);
    let s1 = d.serve();
    d.until_serving(&s1, FEED_A).await;
    let b = d.worker(FEED_B);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Paused past its lease: B takes over; then A wakes up mid-tick, with
    // quotes fetched and a write it thinks it may still make.
    a.signal("STOP");
    d.until_serving(&s1, FEED_B).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.signal("CONT");
    let last = d.series(&s1).await.last().unwrap().0;
    eventually("4 more seconds", Duration::from_secs(12), || async {
        (d.series(&s1).await.last()?.0 >= last + 4).then_some(())
    })
    .await;
    // Once B wrote, no A point: A stood down (its lease ran out on its
    // monotonic clock) and the fence refuses its generation anyway.
    assert_handover(&d.series(&s1).await, 3);
    drop((a, b));
}

#[tokio::test]
async fn a_stopping_leader_hands_over_at_once_and_roles_show() {
    let Some(d) = Deployment::new() else { return };
    // All-in-one processes: each runs a worker and says its role.
    let one_envs = [("RATES_SOURCES", format!("file:{}", fixture_path(FEED_A.0)))];
    let two_envs = [("RATES_SOURCES", format!("file:{}", fixture_path(FEED_B.0)))];
    let env_of = |extra: &[(&'static str, String)]| -> Vec<(String, String)> {
        d.envs(&[])
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
            .collect()
    };
    let spawn = |envs: &[(String, String)]| {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Process::spawn(&envs, std::process::Stdio::null())
    };
    let mut one = spawn(&env_of(&one_envs));
    d.until_serving(&one, FEED_A).await;
    let two = spawn(&env_of(&two_envs));
    let leader_metric = |p: &Process| {
        let url = format!("{}/metrics", p.base);
        let http = d.http.clone();
        async move {
            let text = http.get(&url).send().await.ok()?.text().await.ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("ratesd_worker_leader "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        }
    };
    eventually("roles", Duration::from_secs(20), || async {
        (one.worker_role().await.as_deref() == Some("leader")
            && two.worker_role().await.as_deref() == Some("standby"))
        .then_some(())
    })
    .await;
    assert_eq!(leader_metric(&one).await, Some(1.0));
    assert_eq!(leader_metric(&two).await, Some(0.0));

    one.terminate();
    one.exit(Duration::from_secs(10)).await;
    eventually("the standby leads", Duration::from_secs(5), || async {
        (two.worker_role().await.as_deref() == Some("leader")).then_some(())
    })
    .await;
    assert_eq!(leader_metric(&two).await, Some(1.0));
    d.until_serving(&two, FEED_B).await;
    let last = d.series(&two).await.last().unwrap().0;
    eventually("2 more seconds", Duration::from_secs(10), || async {
        (d.series(&two).await.last()?.0 >= last + 2).then_some(())
    })
    .await;
    // The lease was given up at the stop: the standby wrote the next
    // second or the one after, not a lease's length later.
    assert_handover(&d.series(&two).await, 1);
}

/// A standalone deployment from before key groups (keys without a hash
/// tag) upgrades with no manual step: the first leader renames its keys,
/// so its window, latest quotes and unarchived buffer carry over.
#[tokio::test]
async fn an_old_deployments_keys_carry_over() {
    use crate::helpers::{Engine, Options, spawn_with};
    use deadpool_redis::redis::{self, AsyncCommands};
    if !reachable(Needs::Redis) || !reachable(Needs::Postgres) {
        return;
    }
    let id = unique_id();
    let p = format!("test:{id}:");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let point = |t: i64| format!(r#"{{"assetName":"EURUSD","time":{t},"assetId":1,"value":1.5}}"#);
    for t in now - 60..now - 1 {
        let _: () = conn
            .zadd(format!("{p}points:1"), point(t), t)
            .await
            .unwrap();
    }
    let quote = format!(
        r#"{{"assetId":1,"bid":1.5,"ask":1.5,"value":1.5,"time":{t},"quotedAt":{t},"source":"file"}}"#,
        t = now - 2
    );
    let _: () = conn.hset(format!("{p}latest"), 1, quote).await.unwrap();
    let _: () = conn.set(format!("{p}epoch"), "1").await.unwrap();
    // The old archive buffer, with its consumer group and an entry the old
    // archiver never got to.
    let _: () = redis::cmd("XGROUP")
        .arg(
            &[
                "CREATE",
                &format!("{p}archive"),
                "archiver",
                "0",
                "MKSTREAM",
            ][..],
        )
        .query_async(&mut conn)
        .await
        .unwrap();
    let unarchived = now - 500;
    let _: String = conn
        .xadd(
            format!("{p}archive"),
            "*",
            &[("points", format!("[{}]", point(unarchived)))],
        )
        .await
        .unwrap();

    let Some(app) = spawn_with(
        Options {
            engine: Engine::Redis,
            ..Options::default()
        },
        &id,
        ratesd::config::Role::All,
    )
    .await
    else {
        return;
    };
    // The old window is served as history, before the new points.
    eventually(
        "the old window and new points",
        Duration::from_secs(15),
        || async {
            let (_, page) = app
                .get_json(&format!(
                    "/api/v1/rates/EURUSD/history?from={}&limit=1000",
                    now - 60
                ))
                .await;
            let points = page["points"].as_array()?.clone();
            let old = points.iter().filter(|p| p["value"] == 1.5).count();
            (old == 59 && points.len() > 59).then_some(())
        },
    )
    .await;
    // The entry left in the old buffer reaches PostgreSQL.
    let archive = app.archive.clone().unwrap();
    let catalog = ratesd::domain::Catalog::with_extra("").unwrap();
    let eurusd = catalog.by_id(1).unwrap();
    eventually(
        "the old buffer archived",
        Duration::from_secs(15),
        || async {
            // Until the archiver has migrated the database, the table is missing.
            let got = archive
                .internal()
                .reads()
                .unwrap()
                .range(eurusd, unarchived, unarchived, 10)
                .await
                .ok()?;
            (got.len() == 1 && got[0].value == 1.5).then_some(())
        },
    )
    .await;
    let old_left: bool = conn.exists(format!("{p}latest")).await.unwrap();
    assert!(!old_left, "the old keys are renamed, not copied");
    app.cleanup().await;
}

/// The lease itself, on a standalone Redis and on the cluster: one holder
/// at a time, renewed and given up only by it, and a campaign after a
/// fence leads above it.
#[tokio::test]
async fn the_lease_has_one_holder_and_grows_past_fences() {
    use crate::helpers::{Engine, bare_engine};
    for kind in [Engine::Redis, Engine::Cluster] {
        let Some(store) = bare_engine(kind) else {
            continue;
        };
        let ttl = Duration::from_secs(5);
        let a = store
            .campaign("a", ttl, 0)
            .await
            .unwrap()
            .expect("a free lease");
        let server_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            a + 60_000 > server_ms,
            "a generation is at least the server's clock in ms"
        );
        assert_eq!(
            store.campaign("b", ttl, 0).await.unwrap(),
            None,
            "{kind:?}: held"
        );
        assert!(store.renew("a", a, ttl).await.unwrap());
        assert!(
            !store.renew("b", a, ttl).await.unwrap(),
            "only its holder renews it"
        );
        store.resign("b", a).await.unwrap();
        assert_eq!(
            store.campaign("b", ttl, 0).await.unwrap(),
            None,
            "nor gives it up"
        );
        store.resign("a", a).await.unwrap();
        let fence = a + 10_000_000;
        let b = store
            .campaign("b", ttl, fence)
            .await
            .unwrap()
            .expect("given up");
        assert!(b > fence, "{kind:?}: {b} above the fence {fence}");
        assert!(!store.renew("a", a, ttl).await.unwrap());
        store.resign("b", b).await.unwrap();
        let c = store.campaign("c", ttl, 0).await.unwrap().unwrap();
        assert!(c > b, "{kind:?}: generations only grow ({c} after {b})");
        if let ratesd::store::Engine::Redis(redis) = &store {
            redis.delete_all().await.unwrap();
        }
    }
}
