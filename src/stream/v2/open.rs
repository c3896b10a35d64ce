//! Opening a v2 stream: attaching to its live channel (the asset's, or the
//! whole market's) and reading its snapshot: the last seconds or those
//! after `since`, the candles so far (and a seed for the process's kline
//! builder), the ticker now, or the whole market's latest second(s).

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::broadcast;

use super::names::{Kind, Stream};
use super::request::Subscribe;
use crate::clock::unix_now;
use crate::domain::{Asset, Candle, Interval, Point, UnixSeconds, is_fresh};
use crate::store::history::candles;
use crate::stream::hub::LiveEvent;
use crate::stream::hub::all::{AllPoints, AllTickers, MarketEvent};
use crate::stream::klines::KlineState;
use crate::stream::state::Streams;
use crate::stream::tickers::TickerData;

/// `{"stream": ..., "snapshot": ...}`
pub(super) fn snapshot_frame(stream: &str, snapshot: &Snapshot) -> bytes::Bytes {
    #[derive(Serialize)]
    struct Frame<'a> {
        stream: &'a str,
        snapshot: &'a Snapshot,
    }
    serde_json::to_vec(&Frame { stream, snapshot })
        .unwrap_or_default()
        .into()
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum Snapshot {
    Points {
        points: Vec<Point>,
        recovered: bool,
    },
    Candles {
        candles: Vec<Candle>,
    },
    Ticker {
        ticker: Option<TickerData>,
    },
    /// The whole market: the latest second's points, or with `since` each
    /// second after it.
    Seconds {
        frames: Vec<AllPoints>,
        recovered: bool,
    },
    Tickers(AllTickers),
}

/// The live channel a stream takes its frames from while it opens.
pub(super) enum Receiver {
    Asset(broadcast::Receiver<LiveEvent>),
    Market(broadcast::Receiver<MarketEvent>),
}

/// A new stream, read and ready to go live.
pub(super) struct Opening {
    pub(super) stream: Stream,
    pub(super) receiver: Receiver,
    /// The snapshot frame, encoded as soon as it is read.
    pub(super) snapshot: bytes::Bytes,
    /// The newest second the snapshot holds (or stands for).
    pub(super) last: UnixSeconds,
    /// A kline stream's candle so far, to seed the process's builder.
    pub(super) kline: Option<KlineState>,
}

fn unavailable() -> String {
    "history is unavailable right now; subscribe again shortly".to_owned()
}

/// Attaches to a stream's live channel and reads its snapshot; the error
/// is what the client is told.
pub(super) async fn open(
    streams: &Streams,
    stream: Stream,
    request: &Subscribe,
    same_epoch: bool,
) -> Result<Opening, String> {
    match stream.kind.clone() {
        Kind::Point(asset) => open_points(streams, stream, &asset, request, same_epoch).await,
        Kind::Kline(asset, interval) => {
            open_kline(streams, stream, &asset, interval, request).await
        }
        Kind::Ticker(asset) => open_ticker(streams, stream, &asset),
        Kind::AllPoints => open_seconds(streams, stream, request, same_epoch).await,
        Kind::AllTickers => Ok(open_tickers(streams, stream)),
    }
}

/// Attaches to an asset's channel; the newest second published for it by
/// then: every point up to it is in the engine, every later one on the
/// channel (the asset's own second: on a cluster, another asset's key
/// group may be a tick ahead).
fn attach(
    streams: &Streams,
    asset: &Asset,
) -> Result<(broadcast::Receiver<LiveEvent>, UnixSeconds), String> {
    let Some(receiver) = streams.hub.subscribe(asset.id) else {
        return Err(format!("asset {} has no live feed", asset.name));
    };
    Ok((receiver, streams.hub.latest_of(asset.id)))
}

async fn open_points(
    streams: &Streams,
    stream: Stream,
    asset: &Asset,
    request: &Subscribe,
    same_epoch: bool,
) -> Result<Opening, String> {
    let (receiver, newest) = attach(streams, asset)?;
    let history = streams
        .history_of(asset.id, newest)
        .await
        .map_err(|_| unavailable())?;
    let (points, recovered, last) = match request.since {
        Some(since) => {
            let points = newer_than(&history.points, since);
            let recovered = same_epoch && since >= history.from - 1;
            let last = points.last().map_or(since, |p| p.time);
            (points, recovered, last)
        }
        None => {
            let last = history.last.unwrap_or(newest);
            let from = last.saturating_sub(i64::from(request.history));
            (newer_than(&history.points, from), same_epoch, last)
        }
    };
    Ok(Opening {
        snapshot: snapshot_frame(&stream.name, &Snapshot::Points { points, recovered }),
        receiver: Receiver::Asset(receiver),
        stream,
        last,
        kline: None,
    })
}

async fn open_kline(
    streams: &Streams,
    stream: Stream,
    asset: &Asset,
    interval: Interval,
    request: &Subscribe,
) -> Result<Opening, String> {
    let (receiver, newest) = attach(streams, asset)?;
    // Before the hub has published a point: what the store has by now.
    let to = match newest {
        UnixSeconds::MIN => unix_now() - 1,
        t => t,
    };
    let from = if request.history == 0 {
        interval.open_of(to)
    } else {
        interval.open_of(to - i64::from(request.history) + 1)
    };
    let span = usize::try_from((to - from) / interval.seconds() + 2).unwrap_or(1);
    let window = streams.window_seconds;
    let mut read = candles(
        &streams.engine,
        streams.archive.as_ref(),
        asset,
        interval,
        (from, to),
        (unix_now() - i64::from(window) + 1, window as usize + 1),
        span,
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, stream = %stream.name, "cannot read candles for a subscribe");
        unavailable()
    })?;
    // Without an archive, a bucket that began before the window's
    // oldest second would be a cut-off candle (its open is not the
    // bucket's): left out, as a bucket with no point is, and if it
    // is the forming one, not built until the next bucket begins.
    let window_start = unix_now() - i64::from(window) + 1;
    let cut_off = |open: UnixSeconds| streams.archive.is_none() && open < window_start;
    read.retain(|c| !cut_off(c.open_time));
    let state = if cut_off(interval.open_of(to)) {
        KlineState::unknown(interval, to)
    } else {
        let forming = read
            .last_mut()
            .filter(|c| c.open_time == interval.open_of(to))
            .map(|c| {
                c.closed = false;
                *c
            });
        KlineState::new(interval, forming, to)
    };
    Ok(Opening {
        snapshot: snapshot_frame(&stream.name, &Snapshot::Candles { candles: read }),
        receiver: Receiver::Asset(receiver),
        stream,
        last: to,
        kline: Some(state),
    })
}

/// The ticker now (`null` before the asset has one, or while the process
/// seeds its tickers: the live frames come once it has).
fn open_ticker(streams: &Streams, stream: Stream, asset: &Asset) -> Result<Opening, String> {
    let (receiver, newest) = attach(streams, asset)?;
    let ticker = streams.hub.tickers().current(asset.id);
    let stale_after = streams.settings.stale_after_seconds;
    let data = ticker.map(|t| {
        let stale = !is_fresh(t.close_time, unix_now(), stale_after);
        TickerData::new(&asset.name, asset.id, &t, stale)
    });
    Ok(Opening {
        snapshot: snapshot_frame(&stream.name, &Snapshot::Ticker { ticker: data }),
        receiver: Receiver::Asset(receiver),
        stream,
        last: ticker.map_or(newest, |t| t.close_time),
        kline: None,
    })
}

/// The whole market's latest second, or with `since` every second after
/// it the assets' histories hold (`recovered` as for a point stream: the
/// window reaches back to it and the epoch is the same).
async fn open_seconds(
    streams: &Streams,
    stream: Stream,
    request: &Subscribe,
    same_epoch: bool,
) -> Result<Opening, String> {
    let market = streams.hub.market();
    let receiver = market.subscribe();
    let latest = market.latest();
    let last = latest.as_ref().map_or(UnixSeconds::MIN, |l| l.time);
    let (frames, recovered) = match request.since {
        None => (
            latest.map(|l| vec![(*l).clone()]).unwrap_or_default(),
            same_epoch,
        ),
        Some(since) => {
            let mut seconds: BTreeMap<UnixSeconds, Vec<Point>> = BTreeMap::new();
            let mut reaches = true;
            for asset in streams.catalog.assets() {
                let newest = streams.hub.latest_of(asset.id);
                let history = streams
                    .history_of(asset.id, newest.min(last))
                    .await
                    .map_err(|_| unavailable())?;
                reaches &= since >= history.from - 1;
                for p in newer_than(&history.points, since) {
                    if p.time <= last {
                        seconds.entry(p.time).or_default().push(p);
                    }
                }
            }
            let frames = seconds
                .into_iter()
                .map(|(time, points)| AllPoints { time, points })
                .collect();
            (frames, same_epoch && reaches)
        }
    };
    Ok(Opening {
        snapshot: snapshot_frame(&stream.name, &Snapshot::Seconds { frames, recovered }),
        receiver: Receiver::Market(receiver),
        stream,
        last,
        kline: None,
    })
}

/// Every asset's ticker now.
fn open_tickers(streams: &Streams, stream: Stream) -> Opening {
    let market = streams.hub.market();
    let receiver = market.subscribe();
    let last = market.latest().map_or(UnixSeconds::MIN, |l| l.time);
    let tickers = market.tickers(last, streams.hub.tickers());
    Opening {
        snapshot: snapshot_frame(&stream.name, &Snapshot::Tickers(tickers)),
        receiver: Receiver::Market(receiver),
        stream,
        last,
        kline: None,
    }
}

/// The points after second `after`, oldest first.
fn newer_than(points: &[Point], after: UnixSeconds) -> Vec<Point> {
    let start = points.partition_point(|p| p.time <= after);
    points[start..].to_vec()
}
