//! Every setting of the service: environment variables (also read from a
//! `.env` file by `main`), each with a command-line flag of the same name
//! and a default, all listed by `ratesd --help`.
//!
//! - [`settings`]: the service's settings ([`Config`]) and what is derived
//!   from them.
//! - [`cli`]: the command line: roles, subcommands, the demo client's own
//!   options.
//! - [`values`]: setting types of their own (a secret, an IP list, the log
//!   format).

mod cli;
mod settings;
mod values;

pub use self::cli::{Cli, ClientArgs, ClientCli, Command, KeysCommand, Role};
pub use self::settings::{Config, ConfigError};
pub use self::values::{AuthMode, IpList, LogFormat, Secret};
pub use crate::store::redis::RedisMode;

#[cfg(test)]
mod tests;
