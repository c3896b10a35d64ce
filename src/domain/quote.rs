//! Quotes as upstreams give them, the per-second points we store and serve,
//! and the one rule for when a quote is stale.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalog::Asset;
use super::{AssetId, UnixSeconds};

/// A bid/ask pair as an upstream gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BidAsk {
    pub bid: f64,
    pub ask: f64,
}

impl BidAsk {
    /// Accepts only finite, positive prices with `bid <= ask`.
    pub fn new(bid: f64, ask: f64) -> Option<Self> {
        let ok = bid.is_finite() && ask.is_finite() && bid > 0.0 && ask > 0.0 && bid <= ask;
        ok.then_some(Self { bid, ask })
    }

    /// The mid price, rounded to 6 decimals.
    pub fn mid(&self) -> f64 {
        round6((self.bid + self.ask) / 2.0)
    }
}

/// Rounds to 6 decimal places. Dividing the rounded integer by 1e6 gives the
/// double nearest to the 6-decimal number, which serde_json then prints in
/// its shortest form: `1.110481`, never `1.1104815000000001`.
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// One asset's value at one whole second: the frame clients get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"assetName": "EURUSD", "time": 1455883484, "assetId": 1, "value": 1.110481}))]
pub struct Point {
    pub asset_name: String,
    /// Unix seconds (UTC) of the tick that produced the point.
    pub time: UnixSeconds,
    pub asset_id: AssetId,
    /// Mid price `(bid + ask) / 2`, rounded to 6 decimal places.
    pub value: f64,
}

impl Point {
    /// `asset`'s point at `time`.
    pub fn of(asset: &Asset, time: UnixSeconds, value: f64) -> Self {
        Self {
            asset_name: asset.name.clone(),
            time,
            asset_id: asset.id,
            value,
        }
    }
}

/// The latest quote of an asset as the worker stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredQuote {
    pub asset_id: AssetId,
    pub bid: f64,
    pub ask: f64,
    pub value: f64,
    /// The tick second this quote was written for.
    pub time: UnixSeconds,
    /// The tick second of the upstream fetch that returned it: the quote is
    /// stale once this is older than the staleness limit.
    pub quoted_at: UnixSeconds,
    pub source: String,
}

/// What the archive keeps of a point.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedPoint {
    pub asset_id: AssetId,
    pub time: UnixSeconds,
    pub value: f64,
}

/// A quote fetched at `quoted_at` is fresh at `now` while it is no more
/// than `stale_after` seconds old: the worker writes points for it, REST
/// shows `stale: false`, readiness counts the asset as served.
pub fn is_fresh(quoted_at: UnixSeconds, now: UnixSeconds, stale_after: u32) -> bool {
    now - quoted_at <= i64::from(stale_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mid_is_rounded_without_float_noise() {
        let q = BidAsk::new(1.11047, 1.110493).unwrap();
        assert_eq!(q.mid(), 1.110482);
        assert_eq!(serde_json::to_string(&q.mid()).unwrap(), "1.110482");
        // (1.110481 + 1.110482) / 2 has 7 decimals: it prints with at most 6.
        let q = BidAsk::new(1.110481, 1.110482).unwrap();
        let printed = serde_json::to_string(&q.mid()).unwrap();
        assert!(printed == "1.110481" || printed == "1.110482", "{printed}");
        assert_eq!(
            serde_json::to_string(&round6(114.5100000001)).unwrap(),
            "114.51"
        );
    }

    #[test]
    fn bid_ask_rejects_nonsense() {
        assert!(BidAsk::new(f64::NAN, 1.0).is_none());
        assert!(BidAsk::new(0.0, 1.0).is_none());
        assert!(BidAsk::new(-1.0, 1.0).is_none());
        assert!(BidAsk::new(1.2, 1.1).is_none());
        assert!(BidAsk::new(1.1, f64::INFINITY).is_none());
    }

    #[test]
    fn a_quote_is_fresh_up_to_the_limit() {
        assert!(is_fresh(100, 110, 10));
        assert!(!is_fresh(100, 111, 10));
        assert!(is_fresh(100, 100, 0));
    }
}
