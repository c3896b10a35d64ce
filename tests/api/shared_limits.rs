//! Request limits that hold across API nodes on one Redis: one key
//! hammered on two nodes stays within the contract's bound (`rate x T +
//! burst` plus a tenth of a second's rate per node), where per-node limits
//! would give it twice that; Redis away, each node counts alone and
//! nothing answers 5xx.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ratesd::config::Role;
use reqwest::StatusCode;

use crate::helpers::{Engine, KeysFile, Options, TestApp, spawn_with, unique_id};

const RATE: u32 = 20;
const BURST: u32 = 20;

fn keyed(engine: Engine, keys: &str, more: &[&str]) -> Options {
    let tiers = format!("pro:{RATE}/{BURST}/16/64");
    let mut flags = vec!["--auth", "required", "--keys-file", keys];
    if !more.contains(&"--tiers") {
        flags.extend(["--tiers", &tiers]);
    }
    flags.extend(more);
    Options::flags(engine, &flags)
}

/// Sends requests with `key` to every node from four clients each for
/// `seconds`: (answers 200, answers 429, the seconds it took).
async fn hammer(nodes: &[&TestApp], key: &str, seconds: f64) -> (u32, u32, f64) {
    let ok = Arc::new(AtomicU32::new(0));
    let limited = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for node in nodes {
        for _ in 0..4 {
            let (http, url) = (node.http.clone(), node.url("/api/v1/assets"));
            let (ok, limited, key) = (ok.clone(), limited.clone(), key.to_owned());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let resp = http
                        .get(&url)
                        .header("x-api-key", &key)
                        .send()
                        .await
                        .unwrap();
                    match resp.status() {
                        StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                        StatusCode::TOO_MANY_REQUESTS => limited.fetch_add(1, Ordering::Relaxed),
                        other => panic!("{other}: {}", resp.text().await.unwrap_or_default()),
                    };
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

async fn one_key_on_two_nodes_keeps_one_limit(engine: Engine) {
    let (file, key) = KeysFile::with_new_key("pro");
    let keys = file.path();
    let id = unique_id();
    let Some(a) = spawn_with(keyed(engine, &keys, &[]), &id, Role::All).await else {
        return;
    };
    let Some(b) = spawn_with(keyed(engine, &keys, &[]), &id, Role::Serve).await else {
        return;
    };
    let (ok, limited, took) = hammer(&[&a, &b], &key, 3.0).await;
    // The contract's bound over the time it took, and a tenth of a
    // second's rate per node for what each may have leased and not spent.
    let bound = f64::from(RATE) * took + f64::from(BURST) + 2.0 * f64::from(RATE) / 10.0;
    assert!(
        f64::from(ok) <= bound,
        "{ok} answers in {took:.2} s on two nodes, over the bound {bound:.0} (per-node limits give ~{:.0})",
        2.0 * (f64::from(RATE) * took + f64::from(BURST))
    );
    // And the limit still lets the rate through (not one lease per node
    // and nothing else).
    assert!(
        f64::from(ok) >= 0.7 * (f64::from(RATE) * took + f64::from(BURST)),
        "only {ok} answers in {took:.2} s"
    );
    assert!(limited > 0, "nothing was refused: {ok} answered");
    b.cleanup().await;
    a.cleanup().await;
}

/// A WebSocket upgrade of `node` with `key`: the socket, or the refusal's
/// status.
async fn connect(
    node: &TestApp,
    key: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = node.url("/api/v2/ws").replacen("http", "ws", 1);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

async fn the_connection_cap_counts_every_node(engine: Engine) {
    let (file, key) = KeysFile::with_new_key("pro");
    let keys = file.path();
    let id = unique_id();
    // pro: two connections.
    let tiers = ["--tiers", "pro:1000/1000/2/8"];
    let Some(a) = spawn_with(keyed(engine, &keys, &tiers), &id, Role::All).await else {
        return;
    };
    let Some(b) = spawn_with(keyed(engine, &keys, &tiers), &id, Role::Serve).await else {
        return;
    };
    let on_a = connect(&a, &key).await.expect("one on a");
    let _on_b = connect(&b, &key).await.expect("one on b");
    assert_eq!(connect(&a, &key).await.err(), Some(429), "a third, on a");
    assert_eq!(connect(&b, &key).await.err(), Some(429), "a third, on b");
    drop(on_a);
    crate::helpers::eventually(
        "the closed one counted out",
        Duration::from_secs(10),
        || async { connect(&b, &key).await.ok() },
    )
    .await;
    b.cleanup().await;
    a.cleanup().await;
}

// Only Redis shares anything across nodes: these run on the Redis
// engines alone (the embedded one is one node), named apart from the
// behaviour suite that runs on every engine.
mod across_redis {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_key_on_two_nodes_keeps_one_limit() {
        super::one_key_on_two_nodes_keeps_one_limit(crate::helpers::Engine::Redis).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_connection_cap_counts_every_node() {
        super::the_connection_cap_counts_every_node(crate::helpers::Engine::Redis).await
    }
}

mod across_redis_cluster {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_key_on_two_nodes_keeps_one_limit() {
        super::one_key_on_two_nodes_keeps_one_limit(crate::helpers::Engine::Cluster).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_connection_cap_counts_every_node() {
        super::the_connection_cap_counts_every_node(crate::helpers::Engine::Cluster).await
    }
}

/// Redis unreachable from the start: the limits are each node's own (the
/// burst passes, then 429s), no answer is a 5xx, and the fall back is
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_away_each_node_limits_alone_and_nothing_fails() {
    let (file, key) = KeysFile::with_new_key("pro");
    let keys = file.path();
    let Some(app) = spawn_with(
        keyed(
            Engine::Embedded,
            &keys,
            &[
                "--redis-url",
                "redis://127.0.0.1:1",
                "--rate-limit-per-second",
                "5",
            ],
        ),
        &unique_id(),
        Role::Serve,
    )
    .await
    else {
        return;
    };
    let (ok, limited, took) = hammer(&[&app], &key, 2.0).await;
    let bound = f64::from(RATE) * took + f64::from(BURST);
    assert!(
        f64::from(ok) <= bound + 1.0,
        "{ok} answers in {took:.2} s: no limit at all"
    );
    assert!(
        ok >= BURST,
        "only {ok} answered: the node refused instead of limiting alone"
    );
    assert!(limited > 0);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let fallbacks = metrics
        .lines()
        .find(|l| l.starts_with("ratesd_rate_limit_shared_fallbacks_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        fallbacks >= 1.0,
        "the fall back is not counted: {fallbacks}"
    );
    app.cleanup().await;
}

/// The store's connection counts: a cap holds, a closed connection is
/// counted out, and a renewal racing its close does not count it back in.
async fn connection_counts_in_the_store(engine: Engine) {
    let Some(ratesd::store::Engine::Redis(store)) = crate::helpers::bare_engine(engine) else {
        return;
    };
    let ttl = Duration::from_secs(30);
    let open = |member: &'static str| {
        let store = store.clone();
        async move {
            store
                .open_connection("pro", "key:acme", member, 2, ttl)
                .await
                .unwrap()
        }
    };
    assert!(open("n1:1").await);
    assert!(open("n2:1").await);
    assert!(!open("n1:2").await, "a third over the cap of two");
    store
        .close_connection("pro", "key:acme", "n1:1")
        .await
        .unwrap();
    // The node's renewal, from a list taken before the close.
    store
        .renew_connections("pro", "key:acme", &["n1:1".into(), "n2:1".into()], ttl)
        .await
        .unwrap();
    assert!(
        open("n1:3").await,
        "the closed one stays out after a renewal"
    );
    assert!(!open("n1:4").await);
}

mod store_counts {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_redis() {
        super::connection_counts_in_the_store(crate::helpers::Engine::Redis).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_redis_cluster() {
        super::connection_counts_in_the_store(crate::helpers::Engine::Cluster).await
    }
}
