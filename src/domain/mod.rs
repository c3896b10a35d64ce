//! The service's vocabulary: assets and their catalog, symbols as clients
//! write them, upstream quotes, and the per-second points we store and serve.

pub mod candle;
mod catalog;
pub mod convert;
mod quote;
mod scope;
mod source;
mod symbol;
pub mod ticker;

pub use candle::{Candle, Interval};
pub use catalog::{Asset, AssetInfo, AssetList, Catalog, CatalogError, FindError, currency_code};
pub use quote::{ArchivedPoint, BidAsk, Point, StoredQuote, is_fresh, round6};
pub use scope::Scope;
pub use source::SourceStatus;
pub use symbol::{Symbol, SymbolError};
pub use ticker::Ticker;

/// Stable numeric id of an asset. Ids never change once given: existing
/// clients hard-code the five seed ids.
pub type AssetId = u32;

/// Unix seconds, UTC.
pub type UnixSeconds = i64;
