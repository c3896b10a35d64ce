//! The streams a v2 client names, resolved against the catalog:
//! `<symbol>@point`, `<symbol>@kline_<interval>`, `<symbol>@ticker`, and
//! the whole market's `!all@point` and `!all@ticker`.

use super::request::truncate;
use crate::domain::{Asset, FindError, Interval};
use crate::stream::frame::{ALL_POINTS, ALL_TICKERS, ErrorType, stream_name, ticker_name};
use crate::stream::outbox::Feed;
use crate::stream::state::Streams;

/// What a stream carries.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Point(Asset),
    Kline(Asset, Interval),
    Ticker(Asset),
    /// Every asset's point of each second, one frame a second.
    AllPoints,
    /// Every asset's ticker, one frame a second.
    AllTickers,
}

/// A stream a client named, resolved against the catalog.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    /// The canonical name: `EURUSD@point`, `EURUSD@kline_1m`, `!all@point`.
    pub(super) name: String,
    pub(super) kind: Kind,
}

impl Stream {
    pub(super) fn feed(&self) -> Feed {
        match &self.kind {
            Kind::Point(a) => Feed::Point(a.id),
            Kind::Kline(a, i) => Feed::Kline(a.id, *i),
            Kind::Ticker(a) => Feed::Ticker(a.id),
            Kind::AllPoints => Feed::AllPoints,
            Kind::AllTickers => Feed::AllTickers,
        }
    }
}

/// Resolves a stream's name; the error is the code and message the client
/// is told.
pub(super) fn resolve(streams: &Streams, raw: &str) -> Result<Stream, (ErrorType, String)> {
    let shape = || {
        (
            ErrorType::ValidationError,
            format!(
                "stream '{}' must be <symbol>@point, <symbol>@kline_<interval>, <symbol>@ticker, \
                 {ALL_POINTS} or {ALL_TICKERS}",
                truncate(raw, 40)
            ),
        )
    };
    match raw {
        ALL_POINTS => {
            return Ok(Stream {
                name: ALL_POINTS.into(),
                kind: Kind::AllPoints,
            });
        }
        ALL_TICKERS => {
            return Ok(Stream {
                name: ALL_TICKERS.into(),
                kind: Kind::AllTickers,
            });
        }
        _ if raw.starts_with('!') => return Err(shape()),
        _ => {}
    }
    let (symbol, kind) = raw.rsplit_once('@').ok_or_else(shape)?;
    enum Of {
        Point,
        Ticker,
        Kline(Interval),
    }
    let of = match kind {
        "point" => Of::Point,
        "ticker" => Of::Ticker,
        k => match k.strip_prefix("kline_") {
            Some(interval) => Of::Kline(interval.parse::<Interval>().map_err(|_| {
                let names: Vec<&str> = Interval::ALL.iter().map(|i| i.name()).collect();
                (
                    ErrorType::ValidationError,
                    format!(
                        "unknown interval '{}' in stream '{}'; expected one of: {}",
                        truncate(interval, 8),
                        truncate(raw, 40),
                        names.join(", ")
                    ),
                )
            })?),
            None => return Err(shape()),
        },
    };
    let asset = streams.catalog.find(symbol).map_err(|e| match e {
        // Malformed (empty, a space, an `@`, too long), as REST answers 400.
        FindError::Invalid(e) => (
            ErrorType::ValidationError,
            format!(
                "malformed symbol '{}' in stream '{}': {e}",
                truncate(symbol, 32),
                truncate(raw, 40)
            ),
        ),
        FindError::Unknown(_) => (
            ErrorType::NotFound,
            format!(
                "unknown symbol '{}' in stream '{}'",
                truncate(symbol, 32),
                truncate(raw, 40)
            ),
        ),
    })?;
    let asset = asset.clone();
    Ok(match of {
        Of::Point => Stream {
            name: stream_name(&asset.name, None),
            kind: Kind::Point(asset),
        },
        Of::Kline(interval) => Stream {
            name: stream_name(&asset.name, Some(interval)),
            kind: Kind::Kline(asset, interval),
        },
        Of::Ticker => Stream {
            name: ticker_name(&asset.name),
            kind: Kind::Ticker(asset),
        },
    })
}
