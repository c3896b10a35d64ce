//! Each asset's WebSocket history, prepared once per tick for every
//! subscriber.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::frame::history_frame;
use crate::clock::unix_now;
use crate::domain::{Asset, AssetId, Catalog, Point, UnixSeconds};
use crate::store::history::{HistoryError as ReadError, recent};
use crate::store::{Archive, Engine, EngineError, RedisError};

/// The WebSocket history of each asset, read from the engine at most once
/// per tick however many clients subscribe at once: after a restart or a
/// Redis outage every client reconnects in the same second, and 10,000
/// reads of a 130 KB window exhaust the Redis pool (measured: a third of
/// them got "history unavailable" before this cache).
///
/// It is read as REST reads history: the window, and the archive for the
/// seconds before the window's oldest. So a subscriber gets the whole
/// window's span even right after the engine lost its data, before the
/// worker has rebuilt the window from the archive.
///
/// Gapless handoff still holds. A subscriber attaches to the live feed,
/// then asks for a history covering `newest`, the newest second the feed
/// had published for that asset by then; any later point is sent on the
/// feed after it attached. A cached history that ends before `newest` is
/// read again.
pub struct HistoryCache {
    slots: HashMap<AssetId, (Asset, tokio::sync::Mutex<Slot>)>,
}

#[derive(Default)]
struct Slot {
    history: Option<Arc<History>>,
    /// The second a read last failed in: others fail fast until it turns.
    failed_in: Option<UnixSeconds>,
}

/// An asset's window, ready to send.
#[derive(Debug)]
pub struct History {
    /// `{"action":"asset_history","message":{"points":[...]}}`
    pub frame: Bytes,
    /// The points, oldest first (v2 snapshots take a part of them).
    pub points: Vec<Point>,
    /// The first second it covers (every point from it on is in it).
    pub from: UnixSeconds,
    /// The newest second in it.
    pub last: Option<UnixSeconds>,
    /// The second it was read in.
    read_in: UnixSeconds,
    /// `frame` compressed, for every subscriber that agreed to it.
    deflated: std::sync::OnceLock<Bytes>,
}

impl History {
    /// The frame compressed (`permessage-deflate`), once for every
    /// subscriber of this second.
    pub fn deflated(&self) -> &Bytes {
        self.deflated
            .get_or_init(|| super::deflate::compress(&self.frame))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history is unavailable right now; subscribe again shortly")]
    Unavailable,
    #[error("history could not be read")]
    Corrupt,
}

impl HistoryCache {
    pub fn new(catalog: &Catalog) -> Self {
        let slots = catalog
            .assets()
            .iter()
            .map(|a| (a.id, (a.clone(), tokio::sync::Mutex::default())))
            .collect();
        Self { slots }
    }

    /// The last `window_seconds` of `asset`, ending no earlier than `newest`.
    pub async fn get(
        &self,
        engine: &Engine,
        archive: Option<&Archive>,
        asset: AssetId,
        window_seconds: u32,
        newest: UnixSeconds,
    ) -> Result<Arc<History>, HistoryError> {
        let Some((asset, slot)) = self.slots.get(&asset) else {
            return Err(HistoryError::Unavailable);
        };
        // One reader per asset; the others wait here and take its result.
        let mut slot = slot.lock().await;
        let now = unix_now();
        if let Some(h) = &slot.history
            && h.read_in >= now - 1
            && h.last.unwrap_or(UnixSeconds::MIN) >= newest
        {
            return Ok(h.clone());
        }
        if slot.failed_in == Some(now) {
            return Err(HistoryError::Unavailable);
        }
        let since = now - i64::from(window_seconds);
        // The archive's part is at most the window's span; the window holds
        // no more than its span either.
        let limit = 2 * window_seconds as usize + 64;
        let points = match recent(engine, archive, asset, since, limit).await {
            Ok(points) => points,
            Err(e @ ReadError::Engine(EngineError::Redis(RedisError::Corrupt { .. }))) => {
                tracing::error!(error = %e, "corrupt history");
                return Err(HistoryError::Corrupt);
            }
            // `recent` reads the window alone when the archive fails: what
            // is left is the engine being unreachable.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read history for a subscribe");
                slot.failed_in = Some(now);
                return Err(HistoryError::Unavailable);
            }
        };
        let last = points.last().map(|p| p.time);
        let history = Arc::new(History {
            frame: history_frame(&points),
            points,
            from: since + 1,
            last,
            read_in: now,
            deflated: std::sync::OnceLock::new(),
        });
        slot.history = Some(history.clone());
        slot.failed_in = None;
        Ok(history)
    }
}
