//! Each asset's WebSocket history, prepared once per tick for every
//! subscriber.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::frame::history_frame;
use crate::clock::unix_now;
use crate::domain::{AssetId, Catalog, UnixSeconds};
use crate::store::RedisStore;

/// The WebSocket history of each asset, read from Redis at most once per
/// tick however many clients subscribe at once: after a restart or a
/// Redis outage every client reconnects in the same second, and 10,000
/// reads of a 130 KB window exhaust the Redis pool (measured: a third of
/// them got "history unavailable" before this cache).
///
/// Gapless handoff still holds. A subscriber attaches to the live feed,
/// then asks for a history covering `newest`, the newest second the feed
/// had announced by then; any later point is sent on the feed after it
/// attached. A cached history that ends before `newest` is read again.
pub struct HistoryCache {
    slots: HashMap<AssetId, tokio::sync::Mutex<Slot>>,
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
    /// The newest second in it.
    pub last: Option<UnixSeconds>,
    /// The second it was read in.
    read_in: UnixSeconds,
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
            .map(|a| (a.id, tokio::sync::Mutex::default()))
            .collect();
        Self { slots }
    }

    /// The last `window_seconds` of `asset`, ending no earlier than `newest`.
    pub async fn get(
        &self,
        redis: &RedisStore,
        asset: AssetId,
        window_seconds: u32,
        newest: UnixSeconds,
    ) -> Result<Arc<History>, HistoryError> {
        let Some(slot) = self.slots.get(&asset) else {
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
        let members = match redis.window_after(asset, since).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read history for a subscribe");
                slot.failed_in = Some(now);
                return Err(HistoryError::Unavailable);
            }
        };
        let last = match members.last() {
            None => None,
            Some(m) => match redis.parse_points(asset, std::slice::from_ref(m)) {
                Ok(p) => p.first().map(|p| p.time),
                Err(e) => {
                    tracing::error!(error = %e, "corrupt history");
                    return Err(HistoryError::Corrupt);
                }
            },
        };
        let frame = history_frame(&members).map_err(|e| {
            tracing::error!(error = %e, "corrupt history");
            HistoryError::Corrupt
        })?;
        let history = Arc::new(History {
            frame,
            last,
            read_in: now,
        });
        slot.history = Some(history.clone());
        slot.failed_in = None;
        Ok(history)
    }
}
