//! The bodies of the v1 REST answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Asset, AssetId, Candle, Point, StoredQuote, UnixSeconds, is_fresh};

/// The latest quote of an asset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"symbol": "EURUSD", "assetId": 1, "value": 1.110481, "bid": 1.11047,
    "ask": 1.110492, "time": 1455883484, "source": "fxcm", "stale": false}))]
pub struct Rate {
    pub symbol: String,
    pub asset_id: AssetId,
    /// Mid price `(bid + ask) / 2`, rounded to 6 decimals.
    pub value: f64,
    pub bid: f64,
    pub ask: f64,
    /// Unix second of the newest point.
    pub time: UnixSeconds,
    /// The upstream that produced it: `fxcm`, `binance`, `file` or `simulated`.
    pub source: String,
    /// True when the newest upstream quote is older than the staleness limit.
    pub stale: bool,
}

impl Rate {
    pub(crate) fn new(asset: &Asset, q: StoredQuote, now: UnixSeconds, stale_after: u32) -> Self {
        Self {
            symbol: asset.name.clone(),
            asset_id: asset.id,
            value: q.value,
            bid: q.bid,
            ask: q.ask,
            time: q.time,
            stale: !is_fresh(q.quoted_at, now, stale_after),
            source: q.source,
        }
    }
}

/// The latest quote of every asset that has one, in catalog order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RateList {
    pub rates: Vec<Rate>,
}

/// A page of history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Points oldest first, at most `limit`.
    pub points: Vec<Point>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of candles.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandlePage {
    /// The asset's name.
    #[schema(example = "EURUSD")]
    pub symbol: String,
    /// The candles' interval.
    #[schema(example = "1m")]
    pub interval: &'static str,
    /// Candles oldest first, at most `limit`.
    pub candles: Vec<Candle>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// An amount converted at the latest rates.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"from": "EUR", "to": "JPY", "amount": 100.0, "rate": 162.1533,
    "result": 16215.33, "time": 1455883484, "path": ["EURUSD", "USDJPY"], "stale": false}))]
pub struct Conversion {
    pub from: String,
    pub to: String,
    pub amount: f64,
    /// How many `to` one `from` is worth.
    pub rate: f64,
    /// `amount * rate`.
    pub result: f64,
    /// The oldest `time` of the rates used (Unix seconds).
    pub time: UnixSeconds,
    /// The assets used, in order: one for a pair or its inverse, two
    /// through a common currency, none when `from` is `to`.
    pub path: Vec<String>,
    /// True when any rate used is stale.
    pub stale: bool,
}

/// An asset's statistics over its rolling 24 hours (minute granularity).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"symbol": "EURUSD", "assetId": 1, "openTime": 1455797100,
    "closeTime": 1455883484, "open": 1.109101, "high": 1.112312, "low": 1.107954,
    "last": 1.110481, "change": 0.00138, "changePercent": 0.1244, "count": 86385, "stale": false}))]
pub struct TickerDto {
    pub symbol: String,
    pub asset_id: AssetId,
    /// The start of the UTC minute 1,439 minutes before the minute holding
    /// `closeTime`; where the data reaches back less far, the first minute
    /// it covers.
    pub open_time: UnixSeconds,
    /// The newest point's second.
    pub close_time: UnixSeconds,
    /// The first point's value from `openTime` on.
    pub open: f64,
    pub high: f64,
    pub low: f64,
    /// The newest point's value.
    pub last: f64,
    /// `last - open`, rounded to 6 decimals.
    pub change: f64,
    /// `100 * change / open`, rounded to 4 decimals.
    pub change_percent: f64,
    /// Points from `openTime` through `closeTime`.
    pub count: u64,
    /// As for the latest quote: the newest upstream quote is older than the
    /// staleness limit.
    pub stale: bool,
}

impl TickerDto {
    pub fn new(asset: &Asset, t: &crate::domain::Ticker, stale: bool) -> Self {
        Self {
            symbol: asset.name.clone(),
            asset_id: asset.id,
            open_time: t.open_time,
            close_time: t.close_time,
            open: t.open,
            high: t.high,
            low: t.low,
            last: t.last,
            change: t.change,
            change_percent: t.change_percent,
            count: t.count,
            stale,
        }
    }
}

/// Every asset's ticker that has a point, in catalog order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TickerList {
    pub tickers: Vec<TickerDto>,
}
