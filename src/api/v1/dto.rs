//! The bodies of the v1 REST answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{Asset, AssetId, Candle, Point, StoredQuote, UnixSeconds, is_fresh};
pub use crate::stream::tickers::TickerData;

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

/// Every asset's ticker that has a point, in catalog order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TickerList {
    pub tickers: Vec<TickerData>,
}
