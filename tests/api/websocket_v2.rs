//! The v2 WebSocket protocol of API.md (many streams a connection, ids,
//! resume) against the real service, on every engine.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::helpers::{Engine, Options, TestApp, assert_consecutive, eventually, spawn_app, times};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// A v2 client that keeps the frames it read past while waiting for one.
pub(crate) struct Client {
    pub(crate) ws: Ws,
    pending: VecDeque<Value>,
}

impl Client {
    pub(crate) async fn connect(app: &TestApp) -> Self {
        Self::connect_to(app, "/api/v2/ws").await
    }

    /// A client of `path` (with a query naming streams, say).
    pub(crate) async fn connect_to(app: &TestApp, path: &str) -> Self {
        let url = format!("{}{path}", app.base.replace("http://", "ws://"));
        let ws = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect")
            .0;
        Self {
            ws,
            pending: VecDeque::new(),
        }
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub(crate) async fn read(&mut self) -> Value {
        crate::helpers::next_frame(&mut self.ws).await
    }

    /// The next frame that `matches`, keeping the others for later.
    pub(crate) async fn next_where(
        &mut self,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.pending.iter().position(&matches) {
            return self.pending.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {WAIT:?}"
            );
            let f = self.read().await;
            if matches(&f) {
                return f;
            }
            self.pending.push_back(f);
        }
    }

    /// Sends a request and returns its answer.
    pub(crate) async fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
        let text = json!({"id": id, "method": method, "params": params}).to_string();
        self.send_text(&text).await;
        self.answer(id).await
    }

    pub(crate) async fn answer(&mut self, id: Value) -> Value {
        self.next_where("answer", |f| {
            f.get("id") == Some(&id) && f.get("stream").is_none()
        })
        .await
    }

    pub(crate) async fn subscribe(&mut self, id: u64, params: Value) -> Value {
        let answer = self.call(json!(id), "subscribe", params).await;
        assert!(answer.get("result").is_some(), "refused: {answer}");
        answer
    }

    pub(crate) async fn snapshot(&mut self, stream: &str) -> Value {
        let f = self
            .next_where("snapshot", |f| {
                f["stream"] == stream && f.get("snapshot").is_some()
            })
            .await;
        f["snapshot"].clone()
    }

    pub(crate) async fn data(&mut self, stream: &str) -> Value {
        let f = self
            .next_where("data", |f| f["stream"] == stream && f.get("data").is_some())
            .await;
        f["data"].clone()
    }
}

/// A service whose window (of `window` seconds) is full from the start
/// (a backfilled simulated feed).
pub(crate) async fn service(engine: Engine, window: u32, extra: &[&str]) -> Option<TestApp> {
    let app = spawn_app(Options {
        engine,
        history_seconds: window,
        backfill_seconds: window,
        archive: false,
        extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    })
    .await?;
    // The backfill lands with the first tick.
    eventually("a backfilled window", Duration::from_secs(20), || async {
        let w = app.engine.window(1, 0, i64::MAX, 4000).await.ok()?;
        (w.0.len() + 100 >= window as usize).then_some(())
    })
    .await;
    // And the first tick has written every asset (on a cluster, each key
    // group sets its epoch marker with its first tick): the epoch a
    // subscriber is told from now on stays until data is lost.
    eventually(
        "a first tick of every asset",
        Duration::from_secs(20),
        || async {
            let latest = app.engine.latest_all().await.ok()?;
            (latest.len() == 5).then_some(())
        },
    )
    .await;
    Some(app)
}

async fn two_point_streams_share_a_connection_and_unsubscribe_stops_one(engine: Engine) {
    let Some(app) = service(engine, 1800, &[]).await else {
        return;
    };
    let mut c = Client::connect(&app).await;
    let answer = c
        .subscribe(1, json!({"streams": ["EURUSD@point", "usdjpy@point"]}))
        .await;
    assert_eq!(
        answer["result"]["streams"],
        json!(["EURUSD@point", "USDJPY@point"])
    );
    let epoch = answer["result"]["epoch"].as_str().unwrap_or_default();
    assert!(
        !epoch.is_empty() && epoch != "0",
        "the window was written: an epoch, got {epoch:?}"
    );
    for stream in ["EURUSD@point", "USDJPY@point"] {
        let s = c.snapshot(stream).await;
        assert_eq!(s["points"], json!([]), "history 0: an empty snapshot");
        assert_eq!(s["recovered"], true);
    }
    for (stream, id) in [("EURUSD@point", 1), ("USDJPY@point", 2)] {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let d = c.data(stream).await;
            assert_eq!(d["assetId"], id);
            seen.push(d["time"].as_i64().unwrap());
        }
        assert_consecutive(&seen);
    }
    // Subscribing again to a stream the connection has: no second snapshot.
    let again = c.subscribe(2, json!({"streams": ["EURUSD@point"]})).await;
    assert_eq!(
        again["result"]["streams"],
        json!(["EURUSD@point", "USDJPY@point"])
    );
    let left = c
        .call(
            json!("u-1"),
            "unsubscribe",
            json!({"streams": ["EURUSD@point"]}),
        )
        .await;
    assert_eq!(
        left,
        json!({"id": "u-1", "result": {"streams": ["USDJPY@point"]}})
    );
    let list = c.call(json!(3), "list", json!({})).await;
    assert_eq!(
        list,
        json!({"id": 3, "result": {"streams": ["USDJPY@point"]}})
    );
    assert!(
        !c.pending.iter().any(|f| f.get("snapshot").is_some()),
        "no second snapshot for a stream the connection had: {:?}",
        c.pending
    );
    // After the answer, EURUSD stops; USDJPY goes on.
    c.pending.retain(|f| f["stream"] != "EURUSD@point");
    for _ in 0..3 {
        let f = c.read().await;
        assert_eq!(
            f["stream"], "USDJPY@point",
            "only USDJPY after the unsubscribe: {f}"
        );
        assert!(f.get("snapshot").is_none(), "no second snapshot: {f}");
    }
    app.cleanup().await;
}

async fn a_history_snapshot_is_followed_gaplessly(engine: Engine) {
    let Some(app) = service(engine, 1800, &[]).await else {
        return;
    };
    let mut c = Client::connect(&app).await;
    c.subscribe(
        1,
        json!({"streams": ["GBPUSD@point", "EURUSD@point"], "history": 600}),
    )
    .await;
    for (stream, id) in [("GBPUSD@point", 3), ("EURUSD@point", 1)] {
        let s = c.snapshot(stream).await;
        assert_eq!(s["recovered"], true);
        let t = times(&s["points"]);
        assert!(
            (599..=601).contains(&t.len()),
            "{stream}: {} points",
            t.len()
        );
        assert_consecutive(&t);
        assert!(s["points"][0]["assetId"] == id);
        let mut all = t.clone();
        for _ in 0..3 {
            all.push(c.data(stream).await["time"].as_i64().unwrap());
        }
        assert_consecutive(&all);
    }
    app.cleanup().await;
}

async fn a_reconnect_with_since_gets_exactly_the_missed_seconds(engine: Engine) {
    let Some(app) = service(engine, 300, &[]).await else {
        return;
    };
    let mut c = Client::connect(&app).await;
    let answer = c
        .subscribe(1, json!({"streams": ["EURUSD@point"], "history": 5}))
        .await;
    let epoch = answer["result"]["epoch"].as_str().unwrap().to_owned();
    c.snapshot("EURUSD@point").await;
    let mut last = 0;
    for _ in 0..2 {
        last = c.data("EURUSD@point").await["time"].as_i64().unwrap();
    }
    drop(c);
    // Away for four seconds: the scenario, not a wait for a state.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut c = Client::connect(&app).await;
    let answer = c
        .subscribe(
            2,
            json!({"streams": ["EURUSD@point"], "since": last, "epoch": epoch}),
        )
        .await;
    assert_eq!(answer["result"]["epoch"], epoch.as_str());
    let s = c.snapshot("EURUSD@point").await;
    assert_eq!(s["recovered"], true);
    let missed = times(&s["points"]);
    assert!(missed.len() >= 3, "four seconds away: {missed:?}");
    assert_eq!(missed[0], last + 1, "from the second after the last seen");
    assert_consecutive(&missed);
    let mut all = missed.clone();
    for _ in 0..2 {
        all.push(c.data("EURUSD@point").await["time"].as_i64().unwrap());
    }
    assert_consecutive(&all);

    // A wrong epoch: the same points, but the client is told of a hole.
    let mut c = Client::connect(&app).await;
    c.subscribe(
        3,
        json!({"streams": ["EURUSD@point"], "since": last, "epoch": "bogus"}),
    )
    .await;
    let s = c.snapshot("EURUSD@point").await;
    assert_eq!(s["recovered"], false, "another epoch");
    assert_eq!(times(&s["points"])[0], last + 1);

    // A since older than the live window (300 s): what the window has.
    let mut c = Client::connect(&app).await;
    c.subscribe(
        4,
        json!({"streams": ["EURUSD@point"], "since": last - 1000, "epoch": epoch}),
    )
    .await;
    let s = c.snapshot("EURUSD@point").await;
    assert_eq!(s["recovered"], false, "older than the window");
    let t = times(&s["points"]);
    assert!(t.len() >= 250 && t.len() <= 301, "{} points", t.len());
    assert_consecutive(&t);
    let first_live = c.data("EURUSD@point").await["time"].as_i64().unwrap();
    assert_eq!(first_live, t.last().unwrap() + 1);
    app.cleanup().await;
}

/// Candle fields as the test compares them.
fn ohlc(c: &Value) -> (i64, f64, f64, f64, f64, u64) {
    (
        c["openTime"].as_i64().unwrap(),
        c["open"].as_f64().unwrap(),
        c["high"].as_f64().unwrap(),
        c["low"].as_f64().unwrap(),
        c["close"].as_f64().unwrap(),
        c["count"].as_u64().unwrap(),
    )
}

async fn a_kline_stream_matches_its_points_and_closes_once(engine: Engine) {
    let Some(app) = service(engine, 1800, &[]).await else {
        return;
    };
    let mut c = Client::connect(&app).await;
    c.subscribe(
        1,
        json!({"streams": ["EURUSD@point", "EURUSD@kline_1m"], "history": 120}),
    )
    .await;
    let mut points: BTreeMap<i64, f64> = BTreeMap::new();
    for p in c.snapshot("EURUSD@point").await["points"]
        .as_array()
        .unwrap()
    {
        points.insert(p["time"].as_i64().unwrap(), p["value"].as_f64().unwrap());
    }
    let candles = c.snapshot("EURUSD@kline_1m").await["candles"].clone();
    // A second connection joins the builder the first one seeded.
    let mut other = Client::connect(&app).await;
    other
        .subscribe(1, json!({"streams": ["EURUSD@kline_1m"]}))
        .await;
    other.snapshot("EURUSD@kline_1m").await;
    let candles = candles.as_array().unwrap();
    assert!(candles.len() >= 2, "two minutes of candles: {candles:?}");
    let forming = candles.last().unwrap();
    assert_eq!(
        forming["closed"], false,
        "the last snapshot candle is forming"
    );
    assert!(
        candles[..candles.len() - 1]
            .iter()
            .all(|c| c["closed"] == true)
    );

    // Every frame of both streams until a bucket has closed and the next
    // one has had a point.
    let mut klines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(75);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no bucket closed in 75 s"
        );
        let f = match c.pending.pop_front() {
            Some(f) => f,
            None => c.read().await,
        };
        if f["stream"] == "EURUSD@point" {
            let d = &f["data"];
            points.insert(d["time"].as_i64().unwrap(), d["value"].as_f64().unwrap());
        } else if f["stream"] == "EURUSD@kline_1m" {
            klines.push(f["data"].clone());
            let closed_then_next = klines
                .iter()
                .position(|k| k["closed"] == true)
                .is_some_and(|i| i + 1 < klines.len());
            if closed_then_next {
                break;
            }
        }
    }
    let closed: Vec<&Value> = klines.iter().filter(|k| k["closed"] == true).collect();
    assert_eq!(closed.len(), 1, "sent closed exactly once: {klines:?}");
    let closed = closed[0];
    let open = closed["openTime"].as_i64().unwrap();
    assert_eq!(closed["closeTime"].as_i64().unwrap(), open + 59);
    let i = klines.iter().position(|k| k["closed"] == true).unwrap();
    assert_eq!(
        klines[i + 1]["openTime"].as_i64().unwrap(),
        open + 60,
        "then the next bucket"
    );
    assert_eq!(klines[i + 1]["closed"], false);
    assert_eq!(klines[i + 1]["count"], 1);
    // The candle is its bucket's points, as the point stream gave them.
    let bucket: Vec<(i64, f64)> = points
        .range(open..open + 60)
        .map(|(t, v)| (*t, *v))
        .collect();
    assert!(
        bucket.len() >= 55,
        "the point stream covers the bucket: {}",
        bucket.len()
    );
    let close_enough = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let (_, o, h, l, cl, n) = ohlc(closed);
    assert!(close_enough(o, bucket[0].1), "open {o} vs {:?}", bucket[0]);
    assert!(close_enough(cl, bucket.last().unwrap().1), "close");
    let high = bucket.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let low = bucket.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    assert!(
        close_enough(h, high) && close_enough(l, low),
        "high {h}/{high}, low {l}/{low}"
    );
    assert_eq!(n, bucket.len() as u64, "count");
    let other_closed = other
        .next_where("the other client's closed candle", |f| {
            f["data"]["closed"] == true
        })
        .await;
    assert_eq!(
        &other_closed["data"], closed,
        "both connections get the same candle"
    );
    // Each forming update before the close counts one more point.
    for pair in klines[..i].windows(2) {
        if pair[0]["openTime"] == pair[1]["openTime"] {
            assert_eq!(
                pair[1]["count"].as_u64().unwrap(),
                pair[0]["count"].as_u64().unwrap() + 1
            );
        }
    }
    app.cleanup().await;
}

async fn every_bad_request_gets_its_code_and_the_connection_survives(engine: Engine) {
    let Some(app) = service(engine, 1800, &["--ws-max-streams", "3"]).await else {
        return;
    };
    let mut c = Client::connect(&app).await;
    let error = |f: &Value| {
        (
            f["id"].clone(),
            f["error"]["code"].as_str().unwrap_or_default().to_owned(),
            f["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    c.send_text("not json").await;
    let (id, code, _) = error(&c.answer(Value::Null).await);
    assert_eq!((id, code.as_str()), (Value::Null, "ValidationError"));
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let (id, code, message) = error(&c.answer(Value::Null).await);
    assert_eq!((id, code.as_str()), (Value::Null, "ValidationError"));
    assert!(message.contains("binary"), "{message}");
    let cases = [
        (
            json!({"id": 1, "method": "nope"}),
            "ValidationError",
            "unknown method 'nope'",
        ),
        (
            json!({"id": 2, "method": "subscribe", "params": {}}),
            "ValidationError",
            "params.streams",
        ),
        (
            json!({"id": 3, "method": "subscribe", "params": {"streams": ["EURUSD@point"], "history": "x"}}),
            "ValidationError",
            "params.history",
        ),
        (
            json!({"id": 4, "method": "subscribe", "params": {"streams": ["EURUSD"]}}),
            "ValidationError",
            "<symbol>@point",
        ),
        (
            json!({"id": 5, "method": "subscribe", "params": {"streams": ["EURUSD@kline_2m"]}}),
            "ValidationError",
            "unknown interval '2m'",
        ),
        // A malformed symbol is a ValidationError, as REST answers it 400;
        // only a well-formed one that names no asset is NotFound.
        (
            json!({"id": 61, "method": "subscribe", "params": {"streams": ["@point"]}}),
            "ValidationError",
            "malformed symbol",
        ),
        (
            json!({"id": 62, "method": "subscribe", "params": {"streams": ["EUR USD@point"]}}),
            "ValidationError",
            "malformed symbol",
        ),
        (
            json!({"id": 63, "method": "subscribe", "params": {"streams": ["EURUSD@point@point"]}}),
            "ValidationError",
            "malformed symbol",
        ),
        (
            json!({"id": 64, "method": "subscribe", "params": {"streams": [format!("{}@point", "A".repeat(40))]}}),
            "ValidationError",
            "malformed symbol",
        ),
        (
            json!({"id": 7, "method": "subscribe", "params": {"streams": ["EURUSD@point", "XXXYYY@point"]}}),
            "NotFound",
            "unknown symbol 'XXXYYY' in stream 'XXXYYY@point'",
        ),
        (
            json!({"id": "many", "method": "subscribe", "params": {"streams":
                ["EURUSD@point", "USDJPY@point", "GBPUSD@point", "AUDUSD@point"]}}),
            "ValidationError",
            "at most 3",
        ),
    ];
    for (request, code, says) in cases {
        c.send_text(&request.to_string()).await;
        let (id, got, message) = error(&c.answer(request["id"].clone()).await);
        assert_eq!((&id, got.as_str()), (&request["id"], code), "{request}");
        assert!(message.contains(says), "{request}: {message}");
    }
    // All or nothing: the subscribe with an unknown symbol subscribed none.
    let list = c.call(json!(8), "list", json!(null)).await;
    assert_eq!(list["result"]["streams"], json!([]));
    let assets = c.call(json!(9), "assets", json!({})).await;
    assert_eq!(
        assets["result"]["assets"][0],
        json!({"id": 1, "name": "EURUSD"})
    );
    // Still serving: three streams fit, a fourth does not.
    c.subscribe(
        10,
        json!({"streams": ["EURUSD@point", "USDJPY@point", "EURUSD@kline_5m"]}),
    )
    .await;
    c.snapshot("EURUSD@kline_5m").await;
    let refused = c
        .call(json!(11), "subscribe", json!({"streams": ["GBPUSD@point"]}))
        .await;
    assert_eq!(error(&refused).1, "ValidationError");
    c.data("USDJPY@point").await;
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    two_point_streams_share_a_connection_and_unsubscribe_stops_one,
    a_history_snapshot_is_followed_gaplessly,
    a_reconnect_with_since_gets_exactly_the_missed_seconds,
    a_kline_stream_matches_its_points_and_closes_once,
    every_bad_request_gets_its_code_and_the_connection_survives,
);

/// Redis loses its data (a restart without persistence): the epoch
/// changes, and a client resuming with the old one is told of the hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoch_changes_when_redis_loses_its_data() {
    use deadpool_redis::redis;
    let Some(app) = service(Engine::Redis, 300, &[]).await else {
        return;
    };
    let mut c = Client::connect(&app).await;
    let answer = c.subscribe(1, json!({"streams": ["EURUSD@point"]})).await;
    let old = answer["result"]["epoch"].as_str().unwrap().to_owned();
    c.snapshot("EURUSD@point").await;
    let last = c.data("EURUSD@point").await["time"].as_i64().unwrap();
    // Every key of this service's prefix goes, as in a restart of an empty Redis.
    let client = redis::Client::open(crate::helpers::REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = app.config.redis_prefix.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    let new = eventually("a new epoch", Duration::from_secs(15), || async {
        let mut c = Client::connect(&app).await;
        let answer = c.subscribe(2, json!({"streams": ["USDJPY@point"]})).await;
        let epoch = answer["result"]["epoch"].as_str()?.to_owned();
        (epoch != old && epoch != "0").then_some(epoch)
    })
    .await;
    let mut c = Client::connect(&app).await;
    let answer = c
        .subscribe(
            3,
            json!({"streams": ["EURUSD@point"], "since": last, "epoch": old}),
        )
        .await;
    assert_eq!(answer["result"]["epoch"], new.as_str());
    assert_eq!(
        c.snapshot("EURUSD@point").await["recovered"],
        false,
        "the old epoch's data is gone"
    );
    app.cleanup().await;
}
