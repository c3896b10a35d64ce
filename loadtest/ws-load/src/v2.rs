//! `--v2`: N clients on `/api/v2/ws`, each subscribed to the point streams
//! of the first `--streams` assets of the server's catalog and the
//! `kline_1m` streams of the first `--klines`, in one request.
//!
//! Every point stream's live frame is a delivery, measured as in v1 (arrival
//! and read latency from the start of the point's second); each stream's
//! seconds must follow one another (gaps and duplicates are counted over
//! the whole run). Kline frames are counted and checked (well-formed, each
//! bucket closed once), not timed.
//!
//! `--reconnect-storm`: after the measurement every client closes at once,
//! waits `--storm-gap` seconds, and all reconnect at once, subscribing with
//! `since` (the last second each saw) and the epoch they got. Reported:
//! the time until every client has caught up (its snapshots, then a live
//! point of the current second on each point stream), the `recovered`
//! flags, and whether snapshot + live continue exactly from the last
//! second seen before the disconnect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::proto::{self, Frame};
use crate::track::{KlineCheck, Resume, Seconds, Step, is_current, since_groups};
use crate::{
    Args, Delivery, Latencies, Window, connect, measure, percentile, ramp_pause, rss_mib, summary,
    unix_nanos,
};

type Ws = tokio_tungstenite::WebSocketStream<crate::stamped::StampedTcp>;

/// The kline interval the tool subscribes to, in seconds (`kline_1m`).
const KLINE_SECONDS: i64 = 60;
/// Examples of each kind of problem kept for the report.
const EXAMPLES: usize = 3;

/// The default v1 endpoint, and the v2 path `--v2` puts in its place.
const V1_PATH: &str = "/api/v1/ws";
const V2_PATH: &str = "/api/v2/ws";

/// `url` with a v1 path (`/api/v1/ws`, the default's) switched to the v2 one.
pub fn v2_url(url: &str) -> String {
    match url.strip_suffix(V1_PATH) {
        Some(base) if !base.ends_with('/') && base.contains("://") => format!("{base}{V2_PATH}"),
        _ => url.to_owned(),
    }
}

struct Spec {
    name: String,
    symbol: String,
    asset_id: u64,
}

/// What every client subscribes to, and how.
struct Plan {
    url: String,
    points: Vec<Spec>,
    klines: Vec<Spec>,
    history: u64,
    storm_timeout: Duration,
}

enum Slot {
    Point(usize),
    Kline(usize),
}

impl Plan {
    fn find(&self, stream: &str) -> Option<Slot> {
        let at = |specs: &[Spec]| {
            specs
                .iter()
                .position(|s| s.name.eq_ignore_ascii_case(stream))
        };
        at(&self.points)
            .map(Slot::Point)
            .or_else(|| at(&self.klines).map(Slot::Kline))
    }
}

/// What the run is doing; every client watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Measure,
    /// Close the connection now.
    Close,
    /// Reconnect now; the storm started at this Unix ns.
    Reconnect(u128),
    Stop,
}

/// What a client tells the run as it goes.
enum Event {
    /// Subscribed (the snapshot points it got), or why not.
    Ready(Result<usize, String>),
    /// Its deliveries of the measured seconds.
    Window(Vec<Delivery>),
    /// Its connection is closed for the storm.
    Closed,
    /// Caught up after the reconnect, or why it could not.
    StormDone(Result<(), String>),
}

/// Problems by kind, with the first few examples of each.
#[derive(Default)]
struct Problems {
    counts: BTreeMap<&'static str, u64>,
    examples: BTreeMap<&'static str, Vec<String>>,
}

impl Problems {
    fn add(&mut self, kind: &'static str, example: impl FnOnce() -> String) {
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        let examples = self.examples.entry(kind).or_default();
        if examples.len() < EXAMPLES {
            examples.push(example());
        }
    }

    fn merge(&mut self, other: Problems) {
        for (kind, n) in other.counts {
            *self.counts.entry(kind).or_default() += n;
        }
        for (kind, examples) in other.examples {
            let mine = self.examples.entry(kind).or_default();
            let room = EXAMPLES.saturating_sub(mine.len());
            mine.extend(examples.into_iter().take(room));
        }
    }

    fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// A frame cut short for a report.
/// A second that may not be there, for a report.
fn second(t: Option<i64>) -> String {
    t.map_or("none".to_owned(), |t| t.to_string())
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[derive(Default)]
struct PointStream {
    seconds: Seconds,
    window_deliveries: u64,
    past_window: bool,
    /// This connection has had the stream's snapshot.
    snapshot: bool,
    /// A live frame of this connection had the full check (the rest take
    /// the fast path).
    checked: bool,
    /// A live point of the current second came after the snapshot.
    current: bool,
    /// Across the storm's reconnect.
    resume: Option<Resume>,
    /// Missing and duplicate seconds before the reconnect.
    before_storm: (u64, u64),
}

struct KlineStream {
    check: KlineCheck,
    snapshot: bool,
    frames: u64,
    window_frames: u64,
    closed: u64,
}

/// One client's reconnect, in ns from the storm's start.
#[derive(Default, Clone)]
struct Storm {
    connected_ns: Option<u128>,
    retries: u32,
    answered_ns: Option<u128>,
    snapshots_ns: Option<u128>,
    caught_up_ns: Option<u128>,
    epoch_changed: bool,
    error: Option<String>,
}

struct PointOutcome {
    seconds: Seconds,
    window_deliveries: u64,
    resume: Option<Resume>,
    /// Missing and duplicate seconds from the reconnect on.
    storm_delta: (u64, u64),
}

struct KlineOutcome {
    frames: u64,
    window_frames: u64,
    closed: u64,
}

/// What a client reports when it ends.
struct Outcome {
    ready: bool,
    points: Vec<PointOutcome>,
    klines: Vec<KlineOutcome>,
    problems: Problems,
    storm: Option<Storm>,
}

/// Why a connection ended.
enum End {
    Phase(Phase),
    Lost,
}

/// What the next read brought.
enum Got {
    PhaseChanged(bool),
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

struct Client {
    plan: Arc<Plan>,
    window: Arc<Window>,
    events: mpsc::UnboundedSender<Event>,
    phase: watch::Receiver<Phase>,
    points: Vec<PointStream>,
    klines: Vec<KlineStream>,
    epoch: Option<String>,
    deliveries: Vec<Delivery>,
    window_sent: bool,
    ready: Option<bool>,
    snapshot_points: usize,
    problems: Problems,
    /// Requests of this connection not answered yet: id and streams.
    pending: Vec<(u64, Vec<String>)>,
    answered: usize,
    storm: Option<Storm>,
    storm_start_ns: u128,
    storm_done: bool,
}

impl Client {
    fn new(
        plan: Arc<Plan>,
        window: Arc<Window>,
        events: mpsc::UnboundedSender<Event>,
        phase: watch::Receiver<Phase>,
    ) -> Self {
        Self {
            points: plan.points.iter().map(|_| PointStream::default()).collect(),
            klines: plan
                .klines
                .iter()
                .map(|_| KlineStream {
                    check: KlineCheck::new(KLINE_SECONDS),
                    snapshot: false,
                    frames: 0,
                    window_frames: 0,
                    closed: 0,
                })
                .collect(),
            plan,
            window,
            events,
            phase,
            epoch: None,
            deliveries: Vec::new(),
            window_sent: false,
            ready: None,
            snapshot_points: 0,
            problems: Problems::default(),
            pending: Vec::new(),
            answered: 0,
            storm: None,
            storm_start_ns: 0,
            storm_done: false,
        }
    }

    async fn run(mut self) -> Outcome {
        let mut end = self.session(None).await;
        loop {
            let phase = match end {
                End::Phase(phase) => phase,
                End::Lost => self.next_phase().await,
            };
            end = match phase {
                Phase::Close => {
                    let _ = self.events.send(Event::Closed);
                    End::Lost
                }
                Phase::Reconnect(start) if self.ready == Some(true) => {
                    self.session(Some(start)).await
                }
                Phase::Reconnect(_) | Phase::Measure => End::Lost,
                Phase::Stop => break,
            };
        }
        self.send_window();
        Outcome {
            ready: self.ready == Some(true),
            points: self
                .points
                .into_iter()
                .map(|p| PointOutcome {
                    storm_delta: match p.resume {
                        Some(_) => (
                            p.seconds.missing - p.before_storm.0,
                            p.seconds.duplicate - p.before_storm.1,
                        ),
                        None => (0, 0),
                    },
                    seconds: p.seconds,
                    window_deliveries: p.window_deliveries,
                    resume: p.resume,
                })
                .collect(),
            klines: self
                .klines
                .into_iter()
                .map(|k| KlineOutcome {
                    frames: k.frames,
                    window_frames: k.window_frames,
                    closed: k.closed,
                })
                .collect(),
            problems: self.problems,
            storm: self.storm,
        }
    }

    async fn next_phase(&mut self) -> Phase {
        match self.phase.changed().await {
            Ok(()) => *self.phase.borrow_and_update(),
            Err(_) => Phase::Stop,
        }
    }

    fn phase_now(&mut self, changed: bool) -> Phase {
        if changed {
            *self.phase.borrow_and_update()
        } else {
            Phase::Stop
        }
    }

    fn set_ready(&mut self, result: Result<usize, String>) {
        if self.ready.is_none() {
            self.ready = Some(result.is_ok());
            if result.is_err() {
                // It has no deliveries to wait for.
                self.send_window();
            }
            let _ = self.events.send(Event::Ready(result));
        }
    }

    fn set_storm_done(&mut self, result: Result<(), String>) {
        if !self.storm_done {
            self.storm_done = true;
            if let (Err(e), Some(storm)) = (&result, self.storm.as_mut()) {
                storm.error.get_or_insert_with(|| e.clone());
            }
            let _ = self.events.send(Event::StormDone(result));
        }
    }

    fn send_window(&mut self) {
        if !self.window_sent {
            self.window_sent = true;
            let _ = self
                .events
                .send(Event::Window(std::mem::take(&mut self.deliveries)));
        }
    }

    /// Something went wrong before this connection was of use: tell the run.
    fn fail(&mut self, storm: bool, why: String) {
        if storm {
            self.set_storm_done(Err(why));
        } else {
            self.set_ready(Err(why));
        }
    }

    /// One connection: the first (`storm_start` None) or the storm's
    /// reconnect. Ends when the run's phase changes or the connection is lost.
    async fn session(&mut self, storm_start: Option<u128>) -> End {
        for p in &mut self.points {
            p.snapshot = false;
            p.checked = false;
            p.current = false;
        }
        for k in &mut self.klines {
            k.snapshot = false;
            k.check = KlineCheck::new(KLINE_SECONDS);
        }
        self.pending.clear();
        self.answered = 0;
        let mut ws = match storm_start {
            None => match connect(&self.plan.url).await {
                Ok(ws) => ws,
                Err(e) => {
                    self.set_ready(Err(format!("connect: {e}")));
                    return End::Lost;
                }
            },
            Some(start) => {
                self.storm_start_ns = start;
                self.storm = Some(Storm::default());
                for p in &mut self.points {
                    p.before_storm = (p.seconds.missing, p.seconds.duplicate);
                    p.resume = Some(Resume {
                        last_before: p.seconds.last,
                        ..Resume::default()
                    });
                }
                match self.storm_connect().await {
                    Ok(ws) => ws,
                    Err(end) => return end,
                }
            }
        };
        for (id, streams, text) in self.requests(storm_start.is_some()) {
            if let Err(e) = ws.send(Message::text(text)).await {
                self.fail(storm_start.is_some(), format!("send: {e}"));
                return End::Lost;
            }
            self.pending.push((id, streams));
        }
        loop {
            let got = tokio::select! {
                biased;
                changed = self.phase.changed() => Got::PhaseChanged(changed.is_ok()),
                msg = ws.next() => Got::Frame(msg),
            };
            let now = unix_nanos();
            let msg = match got {
                Got::PhaseChanged(changed) => {
                    let phase = self.phase_now(changed);
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return End::Phase(phase);
                }
                Got::Frame(msg) => msg,
            };
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let arrived = ws.get_ref().arrived_ns();
                    self.frame(text.as_str(), now, u128::from(arrived));
                }
                Some(Ok(Message::Binary(b))) => self
                    .problems
                    .add("binary_frame", || format!("{} bytes", b.len())),
                Some(Ok(Message::Close(close))) => {
                    let why = close.map_or("no code".to_owned(), |c| {
                        format!("code {} {:?}", u16::from(c.code), c.reason.as_str())
                    });
                    return self.lost(
                        storm_start.is_some(),
                        format!("closed by the server: {why}"),
                    );
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return self.lost(storm_start.is_some(), format!("read: {e}")),
                None => return self.lost(storm_start.is_some(), "connection ended".into()),
            }
        }
    }

    fn lost(&mut self, storm: bool, why: String) -> End {
        self.problems.add("disconnected", || why.clone());
        // What it got of the window is all it will get.
        self.send_window();
        self.fail(storm, why);
        End::Lost
    }

    /// Connects for the storm, retrying until the storm's timeout.
    async fn storm_connect(&mut self) -> Result<Ws, End> {
        let deadline = Instant::now() + self.plan.storm_timeout;
        loop {
            let attempt = tokio::select! {
                biased;
                changed = self.phase.changed() => Err(changed.is_ok()),
                ws = tokio::time::timeout(Duration::from_secs(10), connect(&self.plan.url)) => Ok(ws),
            };
            let why = match attempt {
                Err(changed) => return Err(End::Phase(self.phase_now(changed))),
                Ok(Ok(Ok(ws))) => {
                    let at = unix_nanos().saturating_sub(self.storm_start_ns);
                    if let Some(storm) = self.storm.as_mut() {
                        storm.connected_ns = Some(at);
                    }
                    return Ok(ws);
                }
                Ok(Ok(Err(e))) => format!("connect: {e}"),
                Ok(Err(_)) => "connect: no answer in 10 s".to_owned(),
            };
            if Instant::now() >= deadline {
                self.set_storm_done(Err(why));
                return Err(End::Lost);
            }
            if let Some(storm) = self.storm.as_mut() {
                storm.retries += 1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The subscribe requests of a connection: id, streams, text. The first
    /// connection subscribes to everything in one request; a reconnect
    /// sends one per distinct `since` (the last second seen), the kline
    /// streams with the first.
    fn requests(&self, reconnect: bool) -> Vec<(u64, Vec<String>, String)> {
        let klines = self.plan.klines.iter().map(|k| k.name.clone());
        if !reconnect {
            let streams: Vec<String> = self
                .plan
                .points
                .iter()
                .map(|p| p.name.clone())
                .chain(klines)
                .collect();
            let refs: Vec<&str> = streams.iter().map(String::as_str).collect();
            let text = proto::subscribe_request(1, &refs, self.plan.history, None, None);
            return vec![(1, streams, text)];
        }
        let last: Vec<Option<i64>> = self.points.iter().map(|p| p.seconds.last).collect();
        let mut klines = Some(klines);
        since_groups(&last)
            .into_iter()
            .zip(1u64..)
            .map(|((since, members), id)| {
                let streams: Vec<String> = members
                    .iter()
                    .map(|&i| self.plan.points[i].name.clone())
                    .chain(klines.take().into_iter().flatten())
                    .collect();
                let refs: Vec<&str> = streams.iter().map(String::as_str).collect();
                let epoch = since.and(self.epoch.as_deref());
                let text = proto::subscribe_request(id, &refs, self.plan.history, since, epoch);
                (id, streams, text)
            })
            .collect()
    }

    fn frame(&mut self, text: &str, now: u128, arrived: u128) {
        if let Some((stream, time)) = proto::fast_point(text)
            && let Some(Slot::Point(i)) = self.plan.find(stream)
            && self.points[i].checked
        {
            self.point(i, time, now, arrived);
            return;
        }
        let frame = match proto::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.problems
                    .add("malformed", || format!("{e}: {}", clip(text)));
                return;
            }
        };
        match frame {
            Frame::Data { stream, data } => match self.plan.find(&stream) {
                Some(Slot::Point(i)) => {
                    let spec = &self.plan.points[i];
                    match proto::point(&data, &spec.symbol, spec.asset_id) {
                        Ok(p) => {
                            self.points[i].checked = true;
                            self.point(i, p.time, now, arrived);
                        }
                        Err(e) => self
                            .problems
                            .add("malformed", || format!("{e}: {}", clip(text))),
                    }
                }
                Some(Slot::Kline(i)) => match proto::candle(&data) {
                    Ok(c) => self.kline(i, c, now, text),
                    Err(e) => self
                        .problems
                        .add("kline_malformed", || format!("{e}: {}", clip(text))),
                },
                None => self.problems.add("unexpected_stream", || clip(text)),
            },
            Frame::Snapshot { stream, snapshot } => {
                self.snapshot(&stream, &snapshot, now, text);
            }
            Frame::Answer { id, result } => self.answer(&id, &result, now, text),
            Frame::Error { id, code, message } => {
                self.problems
                    .add("error_answer", || format!("id {id}: {code}: {message}"));
                let storm = self.storm.is_some();
                self.fail(storm, format!("{code}: {message}"));
            }
        }
    }

    /// A point stream's live point of second `time`.
    fn point(&mut self, i: usize, time: i64, now: u128, arrived: u128) {
        let name = &self.plan.points[i].name;
        let p = &mut self.points[i];
        if !p.snapshot {
            self.problems
                .add("data_before_snapshot", || format!("{name}: second {time}"));
        }
        let last = p.seconds.last;
        match p.seconds.observe(time) {
            Step::Gap(n) => self.problems.add("point_gap", || {
                format!(
                    "{name}: live second {time} after {} ({n} missing)",
                    second(last)
                )
            }),
            Step::Duplicate => self.problems.add("point_duplicate", || {
                format!("{name}: live second {time} after {}", second(last))
            }),
            Step::First | Step::Next => {}
        }
        if p.snapshot {
            if let Some(r) = p.resume.as_mut()
                && self.storm.is_some()
                && r.first_live.is_none()
            {
                r.first_live = Some(time);
            }
            if self.storm.is_some() && !p.current && is_current(time, now) {
                p.current = true;
                self.check_caught_up(now);
            }
        }
        let p = &mut self.points[i];
        let started = self.window.start_ns.load(Ordering::Acquire);
        if started == 0 || p.past_window {
            return;
        }
        // As in v1: the window is a run of whole seconds, by the point's time.
        let stop = self.window.stop_ns.load(Ordering::Relaxed);
        let second_ns = i128::from(time) * 1_000_000_000;
        if second_ns >= i128::from(stop) {
            p.past_window = true;
            if self.points.iter().all(|p| p.past_window) {
                self.send_window();
            }
        } else if second_ns >= i128::from(started) {
            p.window_deliveries += 1;
            self.deliveries.push(Delivery {
                time,
                arrived_ns: arrived,
                read_ns: now,
            });
        }
    }

    fn kline(&mut self, i: usize, c: proto::Candle, now: u128, text: &str) {
        let k = &mut self.klines[i];
        k.frames += 1;
        k.closed += u64::from(c.closed);
        let started = u128::from(self.window.start_ns.load(Ordering::Acquire));
        let stop = u128::from(self.window.stop_ns.load(Ordering::Relaxed));
        if started != 0 && now >= started && now < stop {
            k.window_frames += 1;
        }
        if !k.snapshot {
            let name = &self.plan.klines[i].name;
            self.problems
                .add("data_before_snapshot", || format!("{name}: {}", clip(text)));
        }
        if let Err((issue, detail)) = k.check.live(c) {
            let name = &self.plan.klines[i].name;
            self.problems
                .add(issue.name(), || format!("{name}: {detail}: {}", clip(text)));
        }
    }

    fn snapshot(&mut self, stream: &str, snapshot: &Value, now: u128, text: &str) {
        if self.answered == 0 {
            self.problems.add("snapshot_before_answer", || clip(text));
        }
        match self.plan.find(stream) {
            None => self.problems.add("unexpected_stream", || clip(text)),
            Some(Slot::Point(i)) => {
                let spec = &self.plan.points[i];
                let (points, recovered) =
                    match proto::point_snapshot(snapshot, &spec.symbol, spec.asset_id) {
                        Ok(s) => s,
                        Err(e) => {
                            self.problems
                                .add("malformed", || format!("{e}: {}", clip(text)));
                            return;
                        }
                    };
                let name = &spec.name;
                let p = &mut self.points[i];
                if p.snapshot {
                    self.problems.add("second_snapshot", || clip(text));
                    return;
                }
                p.snapshot = true;
                for point in &points {
                    let last = p.seconds.last;
                    let time = point.time;
                    match p.seconds.observe(time) {
                        Step::Gap(n) => self.problems.add("point_gap", || {
                            format!(
                                "{name}: snapshot second {time} after {} ({n} missing)",
                                second(last)
                            )
                        }),
                        Step::Duplicate => self.problems.add("point_duplicate", || {
                            format!("{name}: snapshot second {time} after {}", second(last))
                        }),
                        Step::First | Step::Next => {}
                    }
                }
                if self.storm.is_some() {
                    if recovered.is_none() {
                        self.problems
                            .add("recovered_absent", || format!("{name}: {}", clip(text)));
                    }
                    if let Some(r) = p.resume.as_mut() {
                        r.snapshot = Some(points.iter().map(|p| p.time).collect());
                        r.recovered = recovered;
                    }
                } else {
                    self.snapshot_points += points.len();
                }
            }
            Some(Slot::Kline(i)) => {
                let candles = match proto::kline_snapshot(snapshot) {
                    Ok(c) => c,
                    Err(e) => {
                        self.problems
                            .add("kline_malformed", || format!("{e}: {}", clip(text)));
                        return;
                    }
                };
                let name = &self.plan.klines[i].name;
                let k = &mut self.klines[i];
                if k.snapshot {
                    self.problems.add("second_snapshot", || clip(text));
                    return;
                }
                k.snapshot = true;
                if let Err((issue, detail)) = k.check.snapshot(&candles) {
                    self.problems
                        .add(issue.name(), || format!("{name}: {detail}: {}", clip(text)));
                }
            }
        }
        self.check_subscribed(now);
    }

    fn answer(&mut self, id: &Value, result: &Value, now: u128, text: &str) {
        let Some(at) = id
            .as_u64()
            .and_then(|id| self.pending.iter().position(|(p, _)| *p == id))
        else {
            self.problems.add("unknown_id", || clip(text));
            return;
        };
        let (_, asked) = self.pending.remove(at);
        self.answered += 1;
        match proto::subscribe_result(result) {
            Err(e) => self
                .problems
                .add("malformed", || format!("{e}: {}", clip(text))),
            Ok((streams, epoch)) => {
                if let Some(missing) = asked
                    .iter()
                    .find(|a| !streams.iter().any(|s| s.eq_ignore_ascii_case(a)))
                {
                    self.problems.add("answer_streams", || {
                        format!("{missing} not in the answer: {}", clip(text))
                    });
                }
                match epoch {
                    None => self.problems.add("no_epoch", || clip(text)),
                    Some(epoch) => {
                        if let (Some(storm), Some(old)) = (self.storm.as_mut(), &self.epoch)
                            && *old != epoch
                        {
                            storm.epoch_changed = true;
                        }
                        self.epoch = Some(epoch);
                    }
                }
            }
        }
        if self.pending.is_empty() {
            let at = now.saturating_sub(self.storm_start_ns);
            if let Some(storm) = self.storm.as_mut() {
                storm.answered_ns = Some(at);
            }
            self.check_subscribed(now);
        }
    }

    /// Every request answered and every stream's snapshot in: the first
    /// connection is ready; a reconnect has its snapshots.
    fn check_subscribed(&mut self, now: u128) {
        if !self.pending.is_empty()
            || !self.points.iter().all(|p| p.snapshot)
            || !self.klines.iter().all(|k| k.snapshot)
        {
            return;
        }
        if self.storm.is_none() {
            self.set_ready(Ok(self.snapshot_points));
            return;
        }
        let at = now.saturating_sub(self.storm_start_ns);
        if let Some(storm) = self.storm.as_mut() {
            storm.snapshots_ns.get_or_insert(at);
        }
        self.check_caught_up(now);
    }

    fn check_caught_up(&mut self, now: u128) {
        let at = now.saturating_sub(self.storm_start_ns);
        let Some(storm) = self.storm.as_mut() else {
            return;
        };
        if storm.caught_up_ns.is_some()
            || storm.snapshots_ns.is_none()
            || !self.points.iter().all(|p| p.current)
        {
            return;
        }
        storm.caught_up_ns = Some(at);
        self.set_storm_done(Ok(()));
    }
}

/// The server's catalog, by the `assets` method on a connection of its own.
async fn catalog(url: &str) -> Result<Vec<(u64, String)>, String> {
    let mut ws = connect(url).await.map_err(|e| format!("connect: {e}"))?;
    ws.send(Message::text(proto::assets_request(1)))
        .await
        .map_err(|e| format!("send: {e}"))?;
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            let Ok(Message::Text(text)) = msg else {
                if let Err(e) = msg {
                    return Err(format!("read: {e}"));
                }
                continue;
            };
            match proto::parse(text.as_str()) {
                Ok(Frame::Answer { id, result }) if id == 1 => {
                    return proto::assets_result(&result);
                }
                Ok(Frame::Error { code, message, .. }) => return Err(format!("{code}: {message}")),
                Ok(_) => {}
                Err(e) => return Err(format!("{e}: {}", clip(text.as_str()))),
            }
        }
        Err("the connection ended before the answer".to_owned())
    })
    .await
    .unwrap_or_else(|_| Err("no answer in 10 s".to_owned()));
    let _ = ws.close(None).await;
    answer
}

/// The seconds whose start is in `[start_ns, stop_ns)`: the window's.
fn window_seconds(start_ns: u64, stop_ns: u64) -> std::ops::Range<i64> {
    let first = start_ns.div_ceil(1_000_000_000) as i64;
    let end = stop_ns.div_ceil(1_000_000_000) as i64;
    first..end
}

fn ms(ns: u128) -> f64 {
    ns as f64 / 1e6
}

fn rss_text(rss: Option<(f64, f64)>) -> String {
    rss.map_or("unknown".to_owned(), |(r, p)| {
        format!("{r:.1} MiB (peak {p:.1} MiB)")
    })
}

pub async fn run(args: Args) {
    let url = v2_url(&args.url);
    if args.streams == 0 {
        eprintln!("ws-load: --streams must be at least 1");
        std::process::exit(2);
    }
    println!(
        "ws-load v2: {} clients x {} point streams + {} kline streams at {} ({} per second), \
         measuring {} s{}",
        args.clients,
        args.streams,
        args.klines,
        url,
        args.ramp,
        args.seconds,
        if args.reconnect_storm {
            format!(", then a reconnect storm ({} s apart)", args.storm_gap)
        } else {
            String::new()
        }
    );
    let assets = match catalog(&url).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ws-load: the server's catalog (method assets at {url}): {e}");
            std::process::exit(1);
        }
    };
    if args.streams > assets.len() || args.klines > assets.len() {
        eprintln!(
            "ws-load: the catalog has {} assets, fewer than --streams {} / --klines {}",
            assets.len(),
            args.streams,
            args.klines
        );
        std::process::exit(2);
    }
    let spec = |(id, name): &(u64, String), kind: &str| Spec {
        name: format!("{name}@{kind}"),
        symbol: name.clone(),
        asset_id: *id,
    };
    let plan = Arc::new(Plan {
        url: url.clone(),
        points: assets[..args.streams]
            .iter()
            .map(|a| spec(a, "point"))
            .collect(),
        klines: assets[..args.klines]
            .iter()
            .map(|a| spec(a, "kline_1m"))
            .collect(),
        history: args.history,
        storm_timeout: Duration::from_secs(args.storm_timeout),
    });
    let names: Vec<&str> = plan
        .points
        .iter()
        .chain(&plan.klines)
        .map(|s| s.name.as_str())
        .collect();
    println!(
        "catalog: {} assets; streams: {}",
        assets.len(),
        names.join(" ")
    );

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (phase_tx, phase_rx) = watch::channel(Phase::Measure);
    let window = Window::unbounded();
    let ramp_started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        ramp_pause(i, args.ramp).await;
        let client = Client::new(
            plan.clone(),
            window.clone(),
            events_tx.clone(),
            phase_rx.clone(),
        );
        tasks.push(tokio::spawn(client.run()));
    }
    drop(events_tx);
    drop(phase_rx);

    // Events that come while the run waits for others (a Window before
    // every Ready, say) are kept for their turn.
    let mut backlog: Vec<Event> = Vec::new();
    let (mut ok, mut failed, mut snapshot) = (0usize, Vec::new(), 0usize);
    while ok + failed.len() < args.clients {
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
            Ok(Some(Event::Ready(Ok(n)))) => {
                ok += 1;
                snapshot = snapshot.max(n);
            }
            Ok(Some(Event::Ready(Err(e)))) => failed.push(e),
            Ok(Some(other)) => backlog.push(other),
            Ok(None) | Err(_) => break,
        }
    }
    let what = format!("snapshot {snapshot} points a stream at most");
    let rss = measure(&args, &window, (ok, &failed), ramp_started, &what).await;
    let started = window.start_ns.load(Ordering::Acquire);

    // Every client sends its deliveries at its first point past the
    // window on every stream (or when it ends).
    let mut by_point: BTreeMap<i64, Vec<Delivery>> = BTreeMap::new();
    let mut windows = 0usize;
    let mut take = |e: Event, windows: &mut usize| match e {
        Event::Window(seen) => {
            *windows += 1;
            for d in seen {
                by_point.entry(d.time).or_default().push(d);
            }
            None
        }
        other => Some(other),
    };
    let mut later: Vec<Event> = Vec::new();
    for e in backlog {
        later.extend(take(e, &mut windows));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while windows < args.clients {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => later.extend(take(e, &mut windows)),
            Ok(None) | Err(_) => break,
        }
    }

    let points_per_client = plan.points.len();
    let mut lat = Latencies::default();
    let mut missing = 0usize;
    println!(
        "\npoint time   deliveries   arrival p50 ms   p99 ms   max ms   spread ms   read p99 ms"
    );
    // Every second of the window, also one that no client got.
    let stop = started + args.seconds * 1_000_000_000;
    for time in window_seconds(started, stop) {
        by_point.entry(time).or_default();
    }
    for (time, deliveries) in &by_point {
        lat.second(*time, deliveries, 10);
        missing += (ok * points_per_client).saturating_sub(deliveries.len());
    }
    lat.finish();

    // The storm.
    let mut storm_report = None;
    if args.reconnect_storm {
        println!("\nreconnect storm: {ok} clients close at once");
        let _ = phase_tx.send(Phase::Close);
        let closing = Instant::now();
        let mut closed = 0usize;
        for e in later.drain(..) {
            closed += usize::from(matches!(e, Event::Closed));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while closed < args.clients {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Closed)) => closed += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        println!(
            "closed: {closed} in {:.2} s; reconnecting all {} s later with since + epoch",
            closing.elapsed().as_secs_f64(),
            args.storm_gap
        );
        tokio::time::sleep(Duration::from_secs(args.storm_gap)).await;
        let rss_before = args.server_pid.and_then(rss_mib);
        let start = unix_nanos();
        let storm_started = Instant::now();
        let _ = phase_tx.send(Phase::Reconnect(start));
        let (mut caught, mut storm_failed) = (0usize, Vec::new());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.storm_timeout);
        while caught + storm_failed.len() < ok {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::StormDone(Ok(())))) => caught += 1,
                Ok(Some(Event::StormDone(Err(e)))) => storm_failed.push(e),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let all_caught_up = storm_started.elapsed().as_secs_f64();
        println!(
            "caught up: {caught} of {ok} in {all_caught_up:.2} s, {} failed, {} still behind{}",
            storm_failed.len(),
            ok - caught - storm_failed.len(),
            storm_failed
                .first()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        );
        // Watch the streams go on a little after the last caught up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_after = args.server_pid.and_then(rss_mib);
        storm_report = Some((caught, all_caught_up, rss_before, rss_after));
    }

    let _ = phase_tx.send(Phase::Stop);
    let mut outcomes = Vec::with_capacity(tasks.len());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for t in tasks {
        if let Ok(Ok(outcome)) = tokio::time::timeout_at(deadline, t).await {
            outcomes.push(outcome);
        }
    }

    // Per stream, over the whole run and all clients.
    let mut problems = Problems::default();
    // Gaps and duplicates of the first connections (the SUMMARY's), and
    // from the storm's reconnect on (the STORM's).
    let (mut gaps, mut duplicates) = (0u64, 0u64);
    let storm = args.reconnect_storm;
    println!(
        "\nstream             window deliveries   seconds seen   missing   duplicate{}",
        if storm {
            "   after reconnect: missing   duplicate"
        } else {
            ""
        }
    );
    for (i, spec) in plan.points.iter().enumerate() {
        let (mut delivered, mut seen, mut miss, mut dup, mut s_miss, mut s_dup) =
            (0, 0, 0, 0, 0, 0);
        for o in &outcomes {
            let p = &o.points[i];
            delivered += p.window_deliveries;
            seen += p.seconds.seen;
            miss += p.seconds.missing - p.storm_delta.0;
            dup += p.seconds.duplicate - p.storm_delta.1;
            s_miss += p.storm_delta.0;
            s_dup += p.storm_delta.1;
        }
        gaps += miss;
        duplicates += dup;
        println!(
            "{:<18} {delivered:>18}   {seen:>12}   {miss:>7}   {dup:>9}{}",
            spec.name,
            if storm {
                format!("   {s_miss:>24}   {s_dup:>9}")
            } else {
                String::new()
            }
        );
    }
    let (mut kline_frames, mut kline_window) = (0u64, 0u64);
    if !plan.klines.is_empty() {
        println!("\nstream             frames   window frames   closed frames");
        for (i, spec) in plan.klines.iter().enumerate() {
            let (mut frames, mut in_window, mut closed) = (0, 0, 0);
            for o in &outcomes {
                let k = &o.klines[i];
                frames += k.frames;
                in_window += k.window_frames;
                closed += k.closed;
            }
            kline_frames += frames;
            kline_window += in_window;
            println!(
                "{:<18} {frames:>6}   {in_window:>13}   {closed:>13}",
                spec.name
            );
        }
    }
    let mut storm_outcomes = Vec::new();
    for o in outcomes {
        problems.merge(o.problems);
        if o.ready
            && let Some(storm) = o.storm
        {
            storm_outcomes.push((storm, o.points));
        }
    }
    let kline_bad: u64 = problems
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with("kline_"))
        .map(|(_, n)| n)
        .sum();
    if problems.total() > 0 {
        println!("\nproblems (all clients, whole run):");
        for (kind, n) in &problems.counts {
            println!("  {kind}: {n}");
            for e in &problems.examples[kind] {
                println!("    e.g. {e}");
            }
        }
    }
    let seconds = args.seconds.max(1) as f64;
    println!(
        "\nSUMMARY v2 clients={ok} streams={} klines={} points={} deliveries={} \
         deliveries_per_s={:.0} missing={missing} unstamped={} gaps={gaps} \
         duplicates={duplicates} arrival_ms {} read_ms {} spread_ms p50={:.1} max={:.1} \
         kline_frames={kline_window} kline_frames_per_s={:.0} kline_bad={kline_bad} \
         problems={}{}",
        plan.points.len(),
        plan.klines.len(),
        by_point.len(),
        lat.reads.len(),
        lat.reads.len() as f64 / seconds,
        lat.unstamped,
        summary(&lat.arrivals),
        summary(&lat.reads),
        percentile(&lat.spreads, 0.5),
        percentile(&lat.spreads, 1.0),
        kline_window as f64 / seconds,
        problems.total(),
        rss.map(|(r, p)| format!(" server_rss_mib={r:.1} server_peak_mib={p:.1}"))
            .unwrap_or_default()
    );
    let _ = kline_frames;

    if let Some((caught, all_caught_up, rss_before, rss_after)) = storm_report {
        report_storm(
            &plan,
            ok,
            caught,
            all_caught_up,
            &storm_outcomes,
            rss_before,
            rss_after,
        );
    }
}

fn report_storm(
    plan: &Plan,
    ok: usize,
    caught: usize,
    all_caught_up: f64,
    outcomes: &[(Storm, Vec<PointOutcome>)],
    rss_before: Option<(f64, f64)>,
    rss_after: Option<(f64, f64)>,
) {
    let sorted = |f: &dyn Fn(&Storm) -> Option<u128>| {
        let mut v: Vec<f64> = outcomes.iter().filter_map(|(s, _)| f(s)).map(ms).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let connected = sorted(&|s| s.connected_ns);
    let answered = sorted(&|s| s.answered_ns);
    let snapshots = sorted(&|s| s.snapshots_ns);
    let caught_up = sorted(&|s| s.caught_up_ns);
    let retries: u64 = outcomes.iter().map(|(s, _)| u64::from(s.retries)).sum();
    let epoch_changed = outcomes.iter().filter(|(s, _)| s.epoch_changed).count();
    println!("\nreconnect storm, ms from the reconnect start:");
    println!(
        "  connected   ({:>5}) {}",
        connected.len(),
        summary(&connected)
    );
    println!(
        "  answered    ({:>5}) {}",
        answered.len(),
        summary(&answered)
    );
    println!(
        "  snapshots   ({:>5}) {}",
        snapshots.len(),
        summary(&snapshots)
    );
    println!(
        "  caught up   ({:>5}) {}",
        caught_up.len(),
        summary(&caught_up)
    );

    // The point streams across the reconnect.
    let (mut rec_true, mut rec_false, mut rec_absent) = (0u64, 0u64, 0u64);
    let (mut exact, mut unchecked) = (0u64, 0u64);
    let (mut gap_streams, mut gap_seconds, mut dup_streams, mut dup_seconds) = (0u64, 0, 0u64, 0);
    let (mut announced_streams, mut announced_seconds) = (0u64, 0u64);
    let (mut later_missing, mut later_dup) = (0u64, 0u64);
    let mut examples: Vec<String> = Vec::new();
    for (_, points) in outcomes {
        for (i, p) in points.iter().enumerate() {
            let Some(r) = &p.resume else {
                continue;
            };
            match r.recovered {
                Some(true) => rec_true += 1,
                Some(false) => rec_false += 1,
                None if r.snapshot.is_some() => rec_absent += 1,
                None => {}
            }
            let Some(c) = r.continuity() else {
                unchecked += 1;
                continue;
            };
            later_missing += p.storm_delta.0.saturating_sub(c.missing);
            later_dup += p.storm_delta.1.saturating_sub(c.duplicate);
            if c.missing == 0 && c.duplicate == 0 {
                exact += 1;
                if r.recovered == Some(false) && examples.len() < EXAMPLES {
                    examples.push(format!(
                        "{}: recovered false with nothing missing: {}",
                        plan.points[i].name,
                        r.describe()
                    ));
                }
                continue;
            }
            if c.missing > 0 && r.recovered == Some(false) {
                announced_streams += 1;
                announced_seconds += c.missing;
            } else if c.missing > 0 {
                gap_streams += 1;
                gap_seconds += c.missing;
            }
            if c.duplicate > 0 {
                dup_streams += 1;
                dup_seconds += c.duplicate;
            }
            if examples.len() < EXAMPLES * 2 {
                examples.push(format!(
                    "{}: {} missing, {} duplicate: {}",
                    plan.points[i].name,
                    c.missing,
                    c.duplicate,
                    r.describe()
                ));
            }
        }
    }
    println!(
        "  recovered: true {rec_true}, false {rec_false}, absent {rec_absent}; \
         epoch changed on {epoch_changed} clients; connect retries {retries}"
    );
    println!(
        "  across the reconnect: {exact} streams continue exactly, {gap_streams} with gaps \
         ({gap_seconds} s missing, recovered not false), {announced_streams} with announced \
         holes ({announced_seconds} s, recovered false), {dup_streams} with duplicates \
         ({dup_seconds} s), {unchecked} unchecked"
    );
    println!("  after the first live point: {later_missing} s missing, {later_dup} s duplicate");
    for e in &examples {
        println!("    e.g. {e}");
    }
    if let Some((r, p)) = rss_before {
        println!("  server RSS before the reconnect: {r:.1} MiB (peak {p:.1} MiB)");
    }
    if rss_after.is_some() {
        println!("  server RSS after the storm: {}", rss_text(rss_after));
    }
    println!(
        "\nSTORM clients={ok} caught_up={caught} all_caught_up_s={all_caught_up:.2} \
         caught_up_ms {} snapshot_ms {} recovered_true={rec_true} recovered_false={rec_false} \
         recovered_absent={rec_absent} exact={exact} gap_seconds={gap_seconds} \
         announced_gap_seconds={announced_seconds} duplicate_seconds={dup_seconds} \
         later_missing={later_missing} later_duplicate={later_dup} epoch_changed={epoch_changed} \
         retries={retries}{}{}",
        summary(&caught_up),
        summary(&snapshots),
        rss_before
            .map(|(r, _)| format!(" server_rss_before_mib={r:.1}"))
            .unwrap_or_default(),
        rss_after
            .map(|(r, p)| format!(" server_rss_after_mib={r:.1} server_peak_mib={p:.1}"))
            .unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_paths_switch_to_v2() {
        assert_eq!(
            v2_url("ws://127.0.0.1:8080/api/v1/ws"),
            "ws://127.0.0.1:8080/api/v2/ws"
        );
        assert_eq!(
            v2_url("ws://localhost:18090/api/v1/ws"),
            "ws://localhost:18090/api/v2/ws"
        );
        assert_eq!(
            v2_url("ws://127.0.0.1:8080/api/v2/ws"),
            "ws://127.0.0.1:8080/api/v2/ws"
        );
        assert_eq!(v2_url("ws://127.0.0.1:8080/"), "ws://127.0.0.1:8080/");
    }

    #[test]
    fn window_is_whole_seconds() {
        let s = 1_000_000_000u64;
        assert_eq!(window_seconds(100 * s + 1, 103 * s + 1), 101..104);
        assert_eq!(window_seconds(100 * s, 103 * s), 100..103);
        assert_eq!(window_seconds(100 * s + 1, 100 * s + 2), 101..101);
    }

    #[test]
    fn problems_keep_a_few_examples() {
        let mut a = Problems::default();
        for i in 0..5 {
            a.add("point_gap", || format!("gap {i}"));
        }
        let mut b = Problems::default();
        b.add("point_gap", || "other".into());
        b.add("malformed", || "bad".into());
        a.merge(b);
        assert_eq!(a.counts["point_gap"], 6);
        assert_eq!(a.examples["point_gap"], ["gap 0", "gap 1", "gap 2"]);
        assert_eq!(a.total(), 7);
        assert!(clip(&"x".repeat(400)).ends_with("..."));
    }
}
