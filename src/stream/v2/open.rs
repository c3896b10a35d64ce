//! Opening a v2 stream: attaching to its asset's live channel and reading
//! its snapshot (the last seconds or those after `since`, or the candles
//! so far and a seed for the process's kline builder).

use serde::Serialize;
use tokio::sync::broadcast;

use super::names::Stream;
use super::request::Subscribe;
use crate::clock::unix_now;
use crate::domain::{Candle, Point, UnixSeconds};
use crate::store::history::candles;
use crate::stream::hub::LiveEvent;
use crate::stream::klines::KlineState;
use crate::stream::state::Streams;

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
    Points { points: Vec<Point>, recovered: bool },
    Candles { candles: Vec<Candle> },
}

/// A new stream, read and ready to go live.
pub(super) struct Opening {
    pub(super) stream: Stream,
    pub(super) receiver: broadcast::Receiver<LiveEvent>,
    /// The snapshot frame, encoded as soon as it is read.
    pub(super) snapshot: bytes::Bytes,
    /// The newest second the snapshot holds (or stands for).
    pub(super) last: UnixSeconds,
    /// A kline stream's candle so far, to seed the process's builder.
    pub(super) kline: Option<KlineState>,
}

/// Attaches to a stream's asset and reads its snapshot; the error is what
/// the client is told.
pub(super) async fn open(
    streams: &Streams,
    stream: Stream,
    request: &Subscribe,
    same_epoch: bool,
) -> Result<Opening, String> {
    let unavailable = || "history is unavailable right now; subscribe again shortly".to_owned();
    let Some(receiver) = streams.hub.subscribe(stream.asset.id) else {
        return Err(format!("asset {} has no live feed", stream.asset.name));
    };
    // Read after attaching: every point of the asset up to this second is
    // in the engine, every later one on `receiver` (the asset's own second:
    // on a cluster, another asset's key group may be a tick ahead).
    let newest = streams.hub.latest_of(stream.asset.id);
    match stream.kline {
        None => {
            let history = streams
                .history
                .get(
                    &streams.engine,
                    streams.archive.as_ref(),
                    stream.asset.id,
                    streams.window_seconds,
                    newest,
                )
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
                stream,
                receiver,
                last,
                kline: None,
            })
        }
        Some(interval) => {
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
                &stream.asset,
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
                stream,
                receiver,
                last: to,
                kline: Some(state),
            })
        }
    }
}

/// The points after second `after`, oldest first.
fn newer_than(points: &[Point], after: UnixSeconds) -> Vec<Point> {
    let start = points.partition_point(|p| p.time <= after);
    points[start..].to_vec()
}
