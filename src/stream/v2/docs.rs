//! The v2 frames, described for the OpenAPI document (the API lists these
//! schemas; the frames themselves are built in [`super`] and
//! [`crate::stream::frame`]).

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{AssetList, Candle, Point};
use crate::stream::frame::ErrorType;
use crate::stream::tickers::TickerData;

/// A request: every one gets exactly one answer with its `id`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "method": "subscribe",
    "params": {"streams": ["EURUSD@point", "USDJPY@kline_1m"], "history": 600}}))]
pub struct WsV2Request {
    /// An integer, or a string of at most 36 characters.
    #[schema(value_type = Object)]
    pub id: serde_json::Value,
    /// `subscribe`, `unsubscribe`, `list` or `assets`.
    pub method: String,
    pub params: Option<WsV2Params>,
}

/// The params of `subscribe` (all) and `unsubscribe` (`streams` only).
#[derive(Serialize, ToSchema)]
pub struct WsV2Params {
    /// `<symbol>@point`, `<symbol>@kline_<interval>` (1m, 5m, 15m, 30m,
    /// 1h, 4h, 1d), `<symbol>@ticker`, `!all@point` or `!all@ticker`;
    /// symbols case-insensitive, spelt as in REST.
    pub streams: Vec<String>,
    /// Seconds of history in each new stream's snapshot, 0..=1800 (default 0).
    pub history: Option<u32>,
    /// Resume a point stream: the last Unix second the client saw. The
    /// snapshot then holds every point after it (`history` is ignored).
    pub since: Option<i64>,
    /// Resume: the epoch an earlier subscribe answered.
    pub epoch: Option<String>,
}

/// The answer to `subscribe` (with `epoch`), `unsubscribe` and `list`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "result": {"streams": ["EURUSD@point", "USDJPY@kline_1m"],
    "epoch": "1764770000123456"}}))]
pub struct WsV2StreamsAnswer {
    #[schema(value_type = Object)]
    pub id: serde_json::Value,
    pub result: WsV2Streams,
}

#[derive(Serialize, ToSchema)]
pub struct WsV2Streams {
    /// Every stream of the connection, in the order they were added.
    pub streams: Vec<String>,
    /// The engine's data epoch (subscribe only): it changes when the
    /// server's data was lost and rebuilt.
    pub epoch: Option<String>,
}

/// The answer to `assets`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 2, "result": {"assets": [{"id": 1, "name": "EURUSD"}, {"id": 2, "name": "USDJPY"}]}}))]
pub struct WsV2AssetsAnswer {
    #[schema(value_type = Object)]
    pub id: serde_json::Value,
    pub result: AssetList,
}

/// A refused request; the connection stays open. `id` is null for a frame
/// that is not a readable request.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 7, "error": {"code": "NotFound",
    "message": "unknown symbol 'XXXYYY' in stream 'XXXYYY@point'"}}))]
pub struct WsV2ErrorAnswer {
    #[schema(value_type = Object)]
    pub id: serde_json::Value,
    pub error: WsV2Error,
}

#[derive(Serialize, ToSchema)]
pub struct WsV2Error {
    pub code: ErrorType,
    pub message: String,
}

/// A point stream's first frame: the last `history` seconds, or with
/// `since` every point after it; `recovered` is false when `since` is older
/// than the live window or `epoch` is not the current one.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"stream": "EURUSD@point", "snapshot": {"points": [
    {"assetName": "EURUSD", "time": 1455883484, "assetId": 1, "value": 1.110481}], "recovered": true}}))]
pub struct WsV2PointSnapshot {
    pub stream: String,
    pub snapshot: WsV2Points,
}

#[derive(Serialize, ToSchema)]
pub struct WsV2Points {
    pub points: Vec<Point>,
    pub recovered: bool,
}

/// A kline stream's first frame: the candles of the last `history`
/// seconds, or the forming candle alone.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"stream": "EURUSD@kline_1m", "snapshot": {"candles": [
    {"openTime": 1455883440, "closeTime": 1455883499, "open": 1.110481, "high": 1.111122,
     "low": 1.110402, "close": 1.110948, "count": 45, "closed": false}]}}))]
pub struct WsV2KlineSnapshot {
    pub stream: String,
    pub snapshot: WsV2Candles,
}

#[derive(Serialize, ToSchema)]
pub struct WsV2Candles {
    pub candles: Vec<Candle>,
}

/// A point stream's live frame, one per second after the snapshot's last.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"stream": "EURUSD@point", "data":
    {"assetName": "EURUSD", "time": 1455883485, "assetId": 1, "value": 1.110948}}))]
pub struct WsV2PointData {
    pub stream: String,
    pub data: Point,
}

/// A kline stream's live frame: the forming candle after each point; when
/// its bucket ends, the candle once more with `closed: true` before the
/// next bucket's first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"stream": "EURUSD@kline_1m", "data": {"openTime": 1455883440,
    "closeTime": 1455883499, "open": 1.110481, "high": 1.111122, "low": 1.110402,
    "close": 1.110948, "count": 46, "closed": false}}))]
pub struct WsV2KlineData {
    pub stream: String,
    pub data: Candle,
}

/// A ticker stream's first frame: the asset's 24-hour ticker now (`null`
/// before it has one).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"stream": "EURUSD@ticker", "snapshot": {"ticker": {"symbol": "EURUSD",
    "assetId": 1, "openTime": 1455797100, "closeTime": 1455883484, "open": 1.109101,
    "high": 1.112312, "low": 1.107954, "last": 1.110481, "change": 0.00138,
    "changePercent": 0.1244, "count": 86385, "stale": false}}}))]
pub struct WsV2TickerSnapshot {
    pub stream: String,
    pub snapshot: WsV2Ticker,
}

#[derive(Serialize, ToSchema)]
pub struct WsV2Ticker {
    pub ticker: Option<TickerData>,
}

/// A ticker stream's live frame, after every point of the asset.
#[derive(Serialize, ToSchema)]
pub struct WsV2TickerData {
    pub stream: String,
    pub data: TickerData,
}

/// One second of the whole market: every asset's point of that second, in
/// catalog order.
#[derive(Serialize, ToSchema)]
pub struct WsV2Second {
    pub time: i64,
    pub points: Vec<Point>,
}

/// `!all@point`'s first frame: the latest second, or with `since` each
/// second after it; `recovered` as for a point stream.
#[derive(Serialize, ToSchema)]
pub struct WsV2AllPointsSnapshot {
    pub stream: String,
    pub snapshot: WsV2Seconds,
}

#[derive(Serialize, ToSchema)]
pub struct WsV2Seconds {
    pub frames: Vec<WsV2Second>,
    pub recovered: bool,
}

/// `!all@point`'s live frame, one a second.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"stream": "!all@point", "data": {"time": 1455883485, "points": [
    {"assetName": "EURUSD", "time": 1455883485, "assetId": 1, "value": 1.110948}]}}))]
pub struct WsV2AllPointsData {
    pub stream: String,
    pub data: WsV2Second,
}

/// Every asset's ticker as of one second.
#[derive(Serialize, ToSchema)]
pub struct WsV2Tickers {
    pub time: i64,
    pub tickers: Vec<TickerData>,
}

/// `!all@ticker`'s first frame (every asset's ticker now) and its live
/// frame, one a second.
#[derive(Serialize, ToSchema)]
pub struct WsV2AllTickersData {
    pub stream: String,
    pub data: WsV2Tickers,
}
