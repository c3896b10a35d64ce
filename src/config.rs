//! Every setting of the service: environment variables (also read from a
//! `.env` file by `main`), each with a command-line flag of the same name
//! and a default, all listed by `ratesd --help`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::domain::{Catalog, CatalogError};
use crate::sources::{SourceSpec, UpstreamSettings};
pub use crate::store::redis::RedisMode;

#[derive(Debug, Parser)]
#[command(
    name = "ratesd",
    version,
    about = "Streams currency and crypto rates over REST and WebSocket",
    long_about = "Streams currency and crypto rates over REST and WebSocket.\n\n\
        With no subcommand, runs the worker and the API in one process. Every \
        setting is an environment variable (also read from ./.env) or the flag \
        of the same name."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the API alone (several API processes share one Redis: needs
    /// RATES_REDIS_URL).
    Serve,
    /// Run the worker alone: upstream polling, the live window, the archive
    /// (needs RATES_REDIS_URL).
    Worker,
    /// Apply the PostgreSQL migrations and exit.
    Migrate,
    /// Demo client: subscribe to an asset over the WebSocket and print the
    /// history size, then each point, one line each; with `--v2`, several
    /// streams (points, candles) on one v2 connection, one line a frame.
    Client(ClientArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Asset name (EURUSD, eur-usd, ...) or numeric id.
    #[arg(long, default_value = "EURUSD")]
    pub asset: String,
    /// The service's WebSocket endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:8080/api/v1/ws")]
    pub url: String,
    /// Stop after this many live points; with --v2, live data frames of any
    /// stream (default: run until Ctrl-C).
    #[arg(long)]
    pub points: Option<u64>,
    /// Speak protocol v2 (many streams a connection) on /api/v2/ws; a --url
    /// on the v1 path (/api/v1/ws or /) is moved to it.
    #[arg(long)]
    pub v2: bool,
    /// A v2 stream: SYMBOL@point or SYMBOL@kline_INTERVAL (1m, 5m, 15m, 30m,
    /// 1h, 4h, 1d); repeat for more (default: the --asset's point stream).
    #[arg(
        long = "stream",
        value_name = "STREAM",
        requires = "v2",
        conflicts_with = "asset"
    )]
    pub streams: Vec<String>,
    /// Seconds of past data in each v2 stream's snapshot (0..=1800; default:
    /// the server's, 0).
    #[arg(long, value_name = "SECONDS", requires = "v2")]
    pub history: Option<u32>,
}

/// `ratesd client ...` on its own: the demo client takes only its own
/// options (the server's settings would be noise in its `--help`).
#[derive(Debug, Parser)]
#[command(
    name = "ratesd client",
    about = "Demo client: subscribe to an asset over the WebSocket and print the \
        history size, then each point, one line each; with --v2, several streams \
        (--stream EURUSD@point --stream USDJPY@kline_1m) on one v2 connection, one line a frame"
)]
pub struct ClientCli {
    #[command(flatten)]
    pub args: ClientArgs,
}

impl ClientCli {
    /// The client's arguments when `argv` runs the `client` subcommand.
    pub fn from_argv(argv: &[std::ffi::OsString]) -> Option<Result<Self, clap::Error>> {
        (argv.get(1).is_some_and(|a| a == "client"))
            .then(|| Self::try_parse_from(argv.iter().skip(1)))
    }
}

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Serve,
    Worker,
}

impl Role {
    pub fn runs_api(self) -> bool {
        matches!(self, Self::All | Self::Serve)
    }

    pub fn runs_worker(self) -> bool {
        matches!(self, Self::All | Self::Worker)
    }
}

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
    /// the embedded engine (one process, nothing survives a restart). With
    /// `RATES_REDIS_MODE=cluster`, a comma-separated list of seed nodes.
    #[arg(long, env = "RATES_REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,

    /// `standalone` (one Redis, or one behind Sentinel or a managed
    /// failover address) or `cluster` (a Redis Cluster: keys spread over its
    /// masters by hash tag, the live feed on sharded pub/sub).
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

/// How log lines are written to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stdout is a terminal.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

/// A setting that must not be shown: its `Debug` says only that it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.chars().count() < 16 {
        return Err("a key must be at least 16 characters".into());
    }
    Ok(Secret(s.to_owned()))
}

/// Comma-separated IP addresses; empty entries (and an empty list) are fine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpList(pub Vec<std::net::IpAddr>);

impl std::str::FromStr for IpList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().map_err(|_| format!("'{p}' is not an IP address")))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("RATES_EXTRA_ASSETS: {0}")]
    Catalog(#[from] CatalogError),
    #[error("RATES_SOURCES is empty")]
    NoSources,
}

impl Config {
    /// Reads the configuration from the environment, with `args` as flags
    /// (the first item is the program name). Tests use it to set each field.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args).map(|cli| cli.config)
    }

    pub fn catalog(&self) -> Result<Catalog, ConfigError> {
        if self.sources.is_empty() {
            return Err(ConfigError::NoSources);
        }
        Ok(Catalog::with_extra(&self.extra_assets)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_operator_contract() {
        // Only the defaults of variables a test environment is unlikely to set.
        let c = Config::from_args(["ratesd"]).unwrap();
        if std::env::var_os("RATES_HISTORY_SECONDS").is_none() {
            assert_eq!(c.history_seconds, 1800);
        }
        if std::env::var_os("RATES_STALE_AFTER_SECONDS").is_none() {
            assert_eq!(c.stale_after_seconds, 10);
        }
        if std::env::var_os("RATES_SOURCES").is_none() {
            assert_eq!(c.sources, [SourceSpec::Simulated]);
        }
        if std::env::var_os("RATES_ARCHIVE_RETENTION_DAYS").is_none() {
            assert_eq!(c.archive_retention_days, 0, "keep everything");
        }
        // A bare machine: the embedded engine and no archive.
        if std::env::var_os("RATES_REDIS_URL").is_none() {
            assert_eq!(c.redis_url(), None);
        }
        if std::env::var_os("RATES_DATABASE_URL").is_none() {
            assert_eq!(c.archive_url(), None);
        }
    }

    #[test]
    fn flags_parse_lists_booleans_and_off() {
        let c = Config::from_args([
            "ratesd",
            "--sources",
            "fxcm,binance,file:/tmp/f.txt",
            "--auto-migrate",
            "false",
            "--database-url",
            "off",
        ])
        .unwrap();
        assert_eq!(
            c.sources,
            [
                SourceSpec::Fxcm,
                SourceSpec::Binance,
                SourceSpec::File("/tmp/f.txt".into())
            ]
        );
        assert!(!c.auto_migrate);
        assert_eq!(c.archive_url(), None);
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        let err = Config::from_args(["ratesd", "--sources", "reuters"]).unwrap_err();
        assert!(err.to_string().contains("reuters"), "{err}");
        let err = Config::from_args(["ratesd", "--history-seconds", "0"]).unwrap_err();
        assert!(err.to_string().contains("history-seconds"), "{err}");
    }

    #[test]
    fn proxy_lists_may_be_empty() {
        assert_eq!("".parse::<IpList>(), Ok(IpList(vec![])));
        assert_eq!(" 10.0.0.1, ::1 ,".parse::<IpList>().unwrap().0.len(), 2);
        assert!(
            "10.0.0.x"
                .parse::<IpList>()
                .unwrap_err()
                .contains("10.0.0.x")
        );
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["ratesd", "worker", "--log", "debug"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Worker)));
        assert_eq!(cli.config.log, "debug");
        let help = Cli::try_parse_from(["ratesd", "--help"])
            .unwrap_err()
            .to_string();
        for var in [
            "RATES_HTTP_ADDR",
            "RATES_SOURCES",
            "RATES_DATABASE_URL",
            "RATES_ARCHIVE_RETENTION_DAYS",
            "RATES_LOG",
        ] {
            assert!(help.contains(var), "--help lacks {var}");
        }
    }

    #[test]
    fn the_client_shows_its_own_options_only() {
        let argv = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let parsed = ClientCli::from_argv(&argv(&["ratesd", "client", "--asset", "USDJPY"]))
            .unwrap()
            .unwrap();
        assert_eq!(parsed.args.asset, "USDJPY");
        assert!(ClientCli::from_argv(&argv(&["ratesd", "serve"])).is_none());
        let help = ClientCli::from_argv(&argv(&["ratesd", "client", "--help"]))
            .unwrap()
            .unwrap_err()
            .to_string();
        for flag in ["--asset", "--url", "--v2", "--stream", "--history"] {
            assert!(help.contains(flag), "--help lacks {flag}: {help}");
        }
        assert!(
            !help.contains("--redis-url") && !help.contains("RATES_"),
            "{help}"
        );
    }

    #[test]
    fn the_client_takes_v2_streams_only_with_v2() {
        let client = |a: &[&str]| {
            let argv: Vec<_> = ["ratesd", "client"]
                .iter()
                .chain(a)
                .map(std::ffi::OsString::from)
                .collect();
            ClientCli::from_argv(&argv).unwrap().map(|c| c.args)
        };
        let args = client(&[
            "--v2",
            "--stream",
            "EURUSD@point",
            "--stream",
            "USDJPY@kline_1m",
            "--history",
            "600",
        ])
        .unwrap();
        assert!(args.v2);
        assert_eq!(args.streams, ["EURUSD@point", "USDJPY@kline_1m"]);
        assert_eq!(args.history, Some(600));
        let v1 = client(&[]).unwrap();
        assert!(!v1.v2 && v1.streams.is_empty() && v1.history.is_none());
        // A stream or a history means nothing to v1, and a stream names its
        // own asset.
        for refused in [
            &["--stream", "EURUSD@point"][..],
            &["--history", "60"],
            &["--v2", "--asset", "USDJPY", "--stream", "EURUSD@point"],
        ] {
            assert!(client(refused).is_err(), "{refused:?} was accepted");
        }
    }
}
