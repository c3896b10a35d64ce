//! What every WebSocket connection of a process shares.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::history::{History, HistoryCache, HistoryError};
use super::hub::LiveHub;
use crate::clock::unix_now;
use crate::config::Config;
use crate::domain::{AssetId, Catalog, UnixSeconds};
use crate::store::{Archive, Engine, EngineError};

#[derive(Debug, Clone)]
pub struct WsSettings {
    pub max_frame_bytes: usize,
    pub ping_every: Duration,
    /// A connection that sends nothing (not even a pong) this long is closed.
    pub idle_timeout: Duration,
    /// A send that cannot complete this long means the client stopped reading.
    pub send_timeout: Duration,
    /// Bytes waiting with none acknowledged this long: the client stopped
    /// reading ([`super::stall`]).
    pub write_timeout: Duration,
    /// Data frames a client may send a second (bursts of twice that); 0: no limit.
    pub frames_per_second: u32,
    /// Streams one v2 connection may hold.
    pub max_streams: usize,
    /// A ticker whose newest point is older than this is stale.
    pub stale_after_seconds: u32,
    /// Accept `permessage-deflate` when a client offers it.
    pub deflate: bool,
    /// How often an event stream writes a keep-alive comment: at least
    /// every 15 s, as often as WebSocket pings, and within half the HTTP
    /// idle deadline (which would otherwise cut a quiet stream).
    pub keep_alive_every: Duration,
}

/// The longest an event stream goes without a keep-alive comment.
pub const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(15);

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            frames_per_second: 10,
            max_streams: 64,
            stale_after_seconds: 10,
            keep_alive_every: EVENT_KEEP_ALIVE,
            deflate: true,
        }
    }
}

impl WsSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_frame_bytes: usize::try_from(config.ws_max_frame_bytes).unwrap_or(usize::MAX),
            ping_every: Duration::from_secs(config.ws_ping_seconds),
            write_timeout: Duration::from_secs(config.ws_write_timeout_seconds),
            idle_timeout: Duration::from_secs(3 * config.ws_ping_seconds),
            frames_per_second: config.ws_frames_per_second,
            max_streams: usize::try_from(config.ws_max_streams).unwrap_or(usize::MAX),
            stale_after_seconds: config.stale_after_seconds,
            deflate: config.ws_deflate,
            keep_alive_every: EVENT_KEEP_ALIVE
                .min(Duration::from_secs(config.ws_ping_seconds))
                .min(Duration::from_secs(config.http_idle_timeout_seconds) / 2)
                .max(Duration::from_millis(500)),
            ..Self::default()
        }
    }
}

/// The catalog, the engine and the archive, the live hub, the history
/// cache and the settings: all a session needs, and nothing of HTTP.
pub struct Streams {
    pub catalog: Arc<Catalog>,
    pub engine: Engine,
    /// Where a history reaches back to when the window misses seconds.
    pub archive: Option<Archive>,
    pub hub: LiveHub,
    /// Each asset's history, read once per tick.
    pub history: HistoryCache,
    /// The live window a subscriber's history covers.
    pub window_seconds: u32,
    pub settings: WsSettings,
    /// Cancelled at shutdown: sessions close with 1001.
    pub shutdown: CancellationToken,
    /// The engine's data epoch and the second it was read in.
    epoch: tokio::sync::Mutex<Option<(UnixSeconds, String)>>,
}

impl Streams {
    pub fn new(
        catalog: Arc<Catalog>,
        engine: Engine,
        archive: Option<Archive>,
        hub: LiveHub,
        window_seconds: u32,
        settings: WsSettings,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            history: HistoryCache::new(&catalog),
            catalog,
            engine,
            archive,
            hub,
            window_seconds,
            settings,
            shutdown,
            epoch: tokio::sync::Mutex::default(),
        }
    }

    /// An asset's history up to `newest` (the cache's one read a tick,
    /// reaching into the archive where the window lacks seconds).
    pub async fn history_of(
        &self,
        asset: AssetId,
        newest: UnixSeconds,
    ) -> Result<Arc<History>, HistoryError> {
        self.history
            .get(
                &self.engine,
                self.archive.as_ref(),
                asset,
                self.window_seconds,
                newest,
            )
            .await
    }

    /// The engine's data epoch, read at most once a second however many
    /// clients subscribe (a reconnect storm is thousands in a second);
    /// `"0"` before the first tick.
    pub async fn epoch(&self) -> Result<String, EngineError> {
        let mut cached = self.epoch.lock().await;
        let now = unix_now();
        if let Some((read_in, epoch)) = cached.as_ref()
            && *read_in == now
        {
            return Ok(epoch.clone());
        }
        let epoch = self.engine.epoch().await?.unwrap_or_else(|| "0".into());
        *cached = Some((now, epoch.clone()));
        Ok(epoch)
    }
}
