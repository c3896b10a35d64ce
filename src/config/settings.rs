//! The service's settings: one flat set of flags, each with its
//! environment variable and default.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args};

use super::values::{AuthMode, IpList, LogFormat, Secret, parse_key_material, parse_secret};
use crate::domain::{Catalog, CatalogError};
use crate::sources::{SourceSpec, UpstreamSettings};
use crate::store::redis::RedisMode;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Where the API listens.
    #[arg(
        long,
        env = "RATES_HTTP_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub http_addr: SocketAddr,

    /// A second address for `/metrics` and `/health/*` (e.g.
    /// `127.0.0.1:9091`), for a network the public cannot reach; set,
    /// `/metrics` is no longer served on the public address.
    #[arg(long, env = "RATES_ADMIN_ADDR", global = true)]
    pub admin_addr: Option<SocketAddr>,

    /// Seconds an HTTP connection may take to send a whole request header,
    /// counted from its opening or from the previous answer (so it is also
    /// the idle keep-alive deadline); then it is closed.
    #[arg(
        long,
        env = "RATES_HTTP_IDLE_TIMEOUT_SECONDS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub http_idle_timeout_seconds: u64,

    /// HTTP connections (WebSocket ones included until they upgrade) one
    /// client IP may hold; more are answered 429 and closed. 0: no cap.
    #[arg(
        long,
        env = "RATES_HTTP_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256,
        global = true
    )]
    pub http_max_connections_per_ip: u32,

    /// Redis, shared by any number of API processes and workers; unset,
    /// the embedded engine (one process, nothing survives a restart).
    /// `redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME`: the master a set
    /// of sentinels names, followed through failovers. With
    /// `RATES_REDIS_MODE=cluster`, a comma-separated list of seed nodes.
    #[arg(long, env = "RATES_REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,

    /// `standalone` (one Redis: an address, a managed failover address, or
    /// Sentinel's master) or `cluster` (a Redis Cluster: keys spread over
    /// its masters by hash tag, the live feed on sharded pub/sub).
    #[arg(
        long,
        env = "RATES_REDIS_MODE",
        value_enum,
        default_value_t = RedisMode::Standalone,
        global = true
    )]
    pub redis_mode: RedisMode,

    /// Prefix of every Redis key and channel, so that several deployments or
    /// tests share one Redis.
    #[arg(
        long,
        env = "RATES_REDIS_PREFIX",
        default_value = "rates:",
        global = true
    )]
    pub redis_prefix: String,

    /// The PostgreSQL archive, created if it does not exist yet; unset or
    /// `off` runs without one (history then reaches back over the live
    /// window only).
    #[arg(
        long,
        env = "RATES_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,

    /// Apply migrations at start.
    #[arg(long, env = "RATES_AUTO_MIGRATE", default_value_t = true, action = ArgAction::Set, global = true)]
    pub auto_migrate: bool,

    /// Upstreams in priority order, comma-separated: fxcm, binance,
    /// file:PATH, simulated.
    #[arg(
        long,
        env = "RATES_SOURCES",
        default_value = "simulated",
        value_delimiter = ',',
        global = true
    )]
    pub sources: Vec<SourceSpec>,

    /// Where the fxcm source reads.
    #[arg(
        long,
        env = "RATES_FXCM_URL",
        default_value = "https://ratesjson.fxcm.com/DataDisplayer",
        hide_env_values = true,
        global = true
    )]
    pub fxcm_url: reqwest::Url,

    /// Binance's REST base address; the binance source reads
    /// /api/v3/ticker/bookTicker below it.
    #[arg(
        long,
        env = "RATES_BINANCE_URL",
        default_value = "https://api.binance.com",
        hide_env_values = true,
        global = true
    )]
    pub binance_url: reqwest::Url,

    /// Assets beyond the five built-in ones, comma-separated
    /// `ID:NAME[:source=SYMBOL;...;simulated=PRICE]`, e.g.
    /// `6:BTCUSDT:binance=BTCUSDT,7:ETHUSDT:binance=ETHUSDT`.
    #[arg(long, env = "RATES_EXTRA_ASSETS", default_value = "", global = true)]
    pub extra_assets: String,

    /// On start with an empty history, the simulated source (when it is the
    /// first source) fills this many past seconds.
    #[arg(
        long,
        env = "RATES_SIMULATED_BACKFILL_SECONDS",
        default_value_t = 1800,
        global = true
    )]
    pub simulated_backfill_seconds: u32,

    /// The live window kept in the engine, in seconds.
    #[arg(long, env = "RATES_HISTORY_SECONDS", default_value_t = 1800,
          value_parser = clap::value_parser!(u32).range(1..=86_400), global = true)]
    pub history_seconds: u32,

    /// A quote older than this many seconds is stale.
    #[arg(long, env = "RATES_STALE_AFTER_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub stale_after_seconds: u32,

    /// How long one upstream fetch may take, in milliseconds (shorter than
    /// the one-second tick).
    #[arg(long, env = "RATES_UPSTREAM_TIMEOUT_MS", default_value_t = 700,
          value_parser = clap::value_parser!(u64).range(50..=950), global = true)]
    pub upstream_timeout_ms: u64,

    /// Ticks the archive buffer (in the engine) holds at most while
    /// PostgreSQL is away; older ones are dropped beyond it.
    #[arg(long, env = "RATES_ARCHIVE_BUFFER_TICKS", default_value_t = 604_800,
          value_parser = clap::value_parser!(u64).range(60..), global = true)]
    pub archive_buffer_ticks: u64,

    /// Days of archive kept: the archive is partitioned by UTC day, and a
    /// day's partition is dropped once the whole day is more than this many
    /// days before today (checked hourly). 0: keep everything.
    #[arg(
        long,
        env = "RATES_ARCHIVE_RETENTION_DAYS",
        default_value_t = 0,
        global = true
    )]
    pub archive_retention_days: u32,

    /// Client reads of the archive (history and candles older than the
    /// live window) one process runs at once, each on a connection of its
    /// own apart from the archiver's; more are answered 503 at once.
    #[arg(long, env = "RATES_ARCHIVE_MAX_READS", default_value_t = crate::store::archive::DEFAULT_MAX_READS,
          value_parser = clap::value_parser!(u32).range(1..=256), global = true)]
    pub archive_max_reads: u32,

    /// Largest WebSocket frame a client may send, in bytes; larger ones are
    /// refused with close code 1009.
    #[arg(long, env = "RATES_WS_MAX_FRAME_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(256..=16_777_216), global = true)]
    pub ws_max_frame_bytes: u64,

    /// Seconds between the server's WebSocket pings; a connection silent for
    /// three intervals (no pong, no frame) is closed.
    #[arg(long, env = "RATES_WS_PING_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub ws_ping_seconds: u64,

    /// Seconds a WebSocket connection may have bytes waiting with none of
    /// them acknowledged by the client (it keeps the connection but reads
    /// nothing); then it is closed.
    #[arg(long, env = "RATES_WS_WRITE_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub ws_write_timeout_seconds: u64,

    /// Accept `permessage-deflate` (RFC 7692) on WebSockets when the client
    /// offers it: histories, snapshots and large frames go compressed.
    #[arg(long, env = "RATES_WS_DEFLATE", default_value_t = true, action = ArgAction::Set, global = true)]
    pub ws_deflate: bool,

    /// Requests per second per client IP; 0 turns rate limiting off.
    #[arg(
        long,
        env = "RATES_RATE_LIMIT_PER_SECOND",
        default_value_t = 50,
        global = true
    )]
    pub rate_limit_per_second: u32,

    /// Burst size per client IP.
    #[arg(
        long,
        env = "RATES_RATE_LIMIT_BURST",
        default_value_t = 100,
        global = true
    )]
    pub rate_limit_burst: u32,

    /// Who may call the API: `off` (anyone, limited per IP), `optional`
    /// (anonymous clients get the `anonymous` tier, a key or token its own)
    /// or `required` (`/api/`, both WebSockets and the event stream need a
    /// key or token).
    #[arg(long, env = "RATES_AUTH", value_enum, default_value_t = AuthMode::Off, global = true)]
    pub auth: AuthMode,

    /// The API keys file: one line per key, `SHA256-HEX TIER NAME`
    /// (`ratesd keys new` prints both); re-read when it changes and on
    /// SIGHUP.
    #[arg(long, env = "RATES_KEYS_FILE", global = true)]
    pub keys_file: Option<std::path::PathBuf>,

    /// The key client tokens (JWTs) are checked with: an HS256 secret of
    /// 32 bytes or more, or a PEM public key (RS256, ES256), inline or as
    /// `file:PATH`.
    #[arg(long, env = "RATES_JWT_KEY", hide_env_values = true, value_parser = parse_key_material, global = true)]
    pub jwt_key: Option<Secret>,

    /// Tiers, `NAME:RATE/BURST/CONNECTIONS/STREAMS` comma-separated (e.g.
    /// `free:100/200/16/64,pro:1000/2000/256/1024`): requests a second,
    /// burst, open WebSocket and event-stream connections, streams per
    /// connection. `anonymous` (clients without a credential, counted per
    /// IP) defaults to the per-IP settings: `anonymous:50/100/256/64`.
    #[arg(long, env = "RATES_TIERS", default_value = "", global = true)]
    pub tiers: String,

    /// Proxies (IP addresses, comma-separated) whose `X-Forwarded-For` is
    /// believed; from any other peer the header is ignored.
    #[arg(long, env = "RATES_TRUSTED_PROXIES", default_value = "", global = true)]
    pub trusted_proxies: IpList,

    /// Origins whose pages may call the API from a browser (CORS):
    /// `*` for any, or a comma-separated list such as
    /// `https://app.example.com,https://admin.example.com`; empty: none.
    #[arg(long, env = "RATES_CORS_ORIGINS", default_value = "*", global = true)]
    pub cors_origins: String,

    /// The key history cursors are signed with (any text, 16 characters or
    /// more). Every API node of a deployment needs the same one; unset, each
    /// process signs with a random key of its own, and cursors then work on
    /// the node that issued them until it restarts.
    #[arg(
        long,
        env = "RATES_CURSOR_KEY",
        hide_env_values = true,
        value_parser = parse_secret,
        global = true
    )]
    pub cursor_key: Option<Secret>,

    /// WebSocket connections one client IP may hold; 0: no cap.
    #[arg(
        long,
        env = "RATES_WS_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256,
        global = true
    )]
    pub ws_max_connections_per_ip: u32,

    /// Streams one v2 WebSocket connection (`/api/v2/ws`) may hold; a
    /// subscribe past it is refused.
    #[arg(long, env = "RATES_WS_MAX_STREAMS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096), global = true)]
    pub ws_max_streams: u32,

    /// Frames a WebSocket client may send a second (bursts of twice that);
    /// more get RateLimited error frames, and a close if it goes on. 0: no limit.
    #[arg(
        long,
        env = "RATES_WS_FRAMES_PER_SECOND",
        default_value_t = 10,
        global = true
    )]
    pub ws_frames_per_second: u32,

    /// Serve the test page on `/`.
    #[arg(long, env = "RATES_ENABLE_UI", default_value_t = true, action = ArgAction::Set, global = true)]
    pub enable_ui: bool,

    /// Log filter (`warn`, `debug`, `ratesd=trace,tower_http=debug`, ...).
    #[arg(long, env = "RATES_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log lines as `text` (coloured only on a terminal) or `json` (one
    /// object a line, for log collectors).
    #[arg(
        long,
        env = "RATES_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("RATES_EXTRA_ASSETS: {0}")]
    Catalog(#[from] CatalogError),
    #[error("RATES_SOURCES is empty")]
    NoSources,
}

impl Config {
    pub fn catalog(&self) -> Result<Catalog, ConfigError> {
        if self.sources.is_empty() {
            return Err(ConfigError::NoSources);
        }
        Ok(Catalog::with_extra(&self.extra_assets)?)
    }

    /// The archive, when there is one (a lazy handle: nothing is asked yet).
    pub fn archive(&self) -> Result<Option<crate::store::Archive>, crate::store::ArchiveError> {
        self.archive_url()
            .map(|url| crate::store::Archive::with_max_reads(url, self.archive_max_reads))
            .transpose()
    }

    /// The archive's URL, or `None` when it is unset or `off`.
    pub fn archive_url(&self) -> Option<&str> {
        let url = self.database_url.as_deref()?.trim();
        (!url.is_empty() && !url.eq_ignore_ascii_case("off")).then_some(url)
    }

    /// Redis's URL, or `None` for the embedded engine.
    pub fn redis_url(&self) -> Option<&str> {
        let url = self.redis_url.as_deref()?.trim();
        (!url.is_empty()).then_some(url)
    }

    pub fn upstream_settings(&self) -> UpstreamSettings {
        UpstreamSettings {
            fxcm_url: self.fxcm_url.clone(),
            binance_url: self.binance_url.clone(),
            timeout: Duration::from_millis(self.upstream_timeout_ms),
        }
    }
}
