//! The command line: the roles a process runs, the subcommands, and the
//! demo client's own options.

use clap::{Args, Parser, Subcommand};

use super::settings::Config;

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
    /// API keys: `ratesd keys new --tier pro --name acme` prints a new key
    /// once, and the line to add to the keys file (RATES_KEYS_FILE).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Demo client: subscribe to an asset over the WebSocket and print the
    /// history size, then each point, one line each; with `--v2`, several
    /// streams (points, candles) on one v2 connection, one line a frame.
    Client(ClientArgs),
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Make a new key (32 bytes from the OS's random source).
    New {
        /// Its tier, as RATES_TIERS names it.
        #[arg(long, default_value = "free")]
        tier: String,
        /// Its name: whom it is for (one word: letters, digits, `-`, `_`,
        /// `.`, `@`).
        #[arg(long)]
        name: String,
    },
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
    /// A v2 stream: SYMBOL@point, SYMBOL@kline_INTERVAL (1m, 5m, 15m, 30m,
    /// 1h, 4h, 1d), SYMBOL@ticker, !all@point or !all@ticker; repeat for more
    /// (default: the --asset's point stream).
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
    /// An API key or token, sent as `Authorization: Bearer` (for a
    /// deployment that asks for one).
    #[arg(long, value_name = "KEY_OR_TOKEN")]
    pub key: Option<String>,
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
}
