//! REST v1, under `/api/v1`: the catalog, the latest rates, paginated
//! history (and its export), the rate at a moment, candles, conversion,
//! 24-hour tickers; and the route of the v1 WebSocket.

mod candles;
mod convert;
mod cursor;
mod dto;
mod export;
mod freshness;
mod history;
mod moment;
mod params;
mod rates;
mod snapshot;
mod tickers;
pub mod ws;

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;

pub use self::cursor::{BadCursor, Cursor, CursorKey};
pub use self::dto::{CandlePage, Conversion, HistoryPage, Rate, RateList};
pub use self::rates::LatestRate;
pub use self::snapshot::RatesCache;
use super::http_cache::Prepared;
use super::limit::ConnectionLimiter;
use super::shared_limit::SharedConnections;
use crate::access::Client;
use crate::config::Config;
use crate::domain::convert::Converter;
use crate::domain::{AssetList, Catalog};
use crate::store::{Archive, Engine};
use crate::stream::Streams;

/// What the v1 routes share.
pub struct V1State {
    pub catalog: Arc<Catalog>,
    pub engine: Engine,
    pub archive: Option<Archive>,
    pub window_seconds: u32,
    /// `RATES_STALE_AFTER_SECONDS`: how far before a moment its rate may be.
    pub stale_after_seconds: u32,
    /// The latest rates, prepared once per tick.
    pub rates: Arc<RatesCache>,
    /// The catalog's JSON, prepared once.
    pub catalog_json: Prepared,
    /// What the WebSocket sessions share.
    pub streams: Arc<Streams>,
    /// Open WebSockets and event streams per client, on this node.
    pub ws_connections: Arc<ConnectionLimiter<Client>>,
    /// With Redis, the same on every node.
    pub shared_connections: Option<Arc<SharedConnections>>,
    /// The test page on `/`.
    pub enable_ui: bool,
    /// Signs and checks history cursors.
    pub cursor_key: CursorKey,
    /// The currencies of the catalog and the assets between them.
    pub converter: Converter,
    /// Candle pages made within the current tick.
    pub candle_pages: candles::CandlePages,
}

impl V1State {
    pub fn new(
        config: &Config,
        engine: Engine,
        archive: Option<Archive>,
        streams: Arc<Streams>,
    ) -> Self {
        let catalog = streams.catalog.clone();
        // With Redis, connections are counted on every node together.
        let shared_connections = match &engine {
            Engine::Redis(store) => Some(SharedConnections::new(store.clone())),
            Engine::Embedded(_) => None,
        };
        Self {
            rates: Arc::new(RatesCache::new(
                catalog.clone(),
                engine.clone(),
                config.stale_after_seconds,
                streams.hub.clone(),
            )),
            catalog_json: Prepared::json(&AssetList::from_catalog(&catalog)),
            converter: Converter::new(&catalog),
            candle_pages: candles::CandlePages::default(),
            catalog,
            engine,
            archive,
            window_seconds: config.history_seconds,
            stale_after_seconds: config.stale_after_seconds,
            streams,
            ws_connections: ConnectionLimiter::new(),
            shared_connections,
            enable_ui: config.enable_ui,
            cursor_key: match &config.cursor_key {
                Some(secret) => CursorKey::new(secret.expose().as_bytes()),
                None => CursorKey::random(),
            },
        }
    }
}

/// The v1 routes, with their full paths (one flat router: no nested prefix
/// to strip on every request).
pub fn router() -> OpenApiRouter<Arc<V1State>> {
    OpenApiRouter::new()
        .merge(rates::router())
        .merge(history::router())
        .merge(candles::router())
        .merge(convert::router())
        .merge(tickers::router())
        .merge(ws::router())
}
