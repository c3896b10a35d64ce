//! Setting types of their own: a secret that is never shown, a list of IP
//! addresses, the log format, the access mode.

/// How log lines are written to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stdout is a terminal.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields`.
    Json,
}

/// Who may call the API (`RATES_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every client anonymous, limited per IP; credentials are not read.
    Off,
    /// Anonymous clients get the `anonymous` tier; a key or token its own.
    Optional,
    /// The API, both WebSockets and the event stream need a key or token.
    Required,
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

pub(super) fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.chars().count() < 16 {
        return Err("a key must be at least 16 characters".into());
    }
    Ok(Secret(s.to_owned()))
}

/// Key material whose checks are its user's (a token key: a secret's
/// length, or a PEM).
pub(super) fn parse_key_material(s: &str) -> Result<Secret, String> {
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
