//! How long each v1 answer may be cached: the max-ages of `Cache-Control`,
//! and when a range is over long enough not to change any more.

use crate::domain::UnixSeconds;

/// Rates, tickers, conversions and what ends now: one tick.
pub const MAX_AGE_RATES: u32 = 1;
/// The catalog.
pub const MAX_AGE_CATALOG: u32 = 300;
/// A history page whose range ended more than [`SETTLED_AFTER`] seconds ago
/// no longer changes.
pub const MAX_AGE_SETTLED_HISTORY: u32 = 60;
/// A page whose last candle closed over [`SETTLED_AFTER`] seconds ago does
/// not change any more (unless the archive catches up after an outage); a
/// moment that has passed keeps its point as long.
pub const MAX_AGE_SETTLED_CANDLES: u32 = 600;
/// A range that ended more than this many seconds ago is settled: no more
/// points come into it.
pub const SETTLED_AFTER: UnixSeconds = 2;
