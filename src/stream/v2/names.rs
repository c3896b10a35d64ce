//! The streams a v2 client names (`<symbol>@point`,
//! `<symbol>@kline_<interval>`), resolved against the catalog.

use super::request::truncate;
use crate::domain::{Asset, FindError, Interval};
use crate::stream::frame::{ErrorType, stream_name};
use crate::stream::outbox::Feed;
use crate::stream::state::Streams;

/// A stream a client named, resolved against the catalog.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    /// The canonical name: `EURUSD@point`, `EURUSD@kline_1m`.
    pub(super) name: String,
    pub(super) asset: Asset,
    pub(super) kline: Option<Interval>,
}

impl Stream {
    pub(super) fn feed(&self) -> Feed {
        match self.kline {
            None => Feed::Point(self.asset.id),
            Some(i) => Feed::Kline(self.asset.id, i),
        }
    }
}

/// Resolves `<symbol>@point` or `<symbol>@kline_<interval>`.
pub(super) fn resolve(streams: &Streams, raw: &str) -> Result<Stream, (ErrorType, String)> {
    let shape = || {
        (
            ErrorType::ValidationError,
            format!(
                "stream '{}' must be <symbol>@point or <symbol>@kline_<interval>",
                truncate(raw, 40)
            ),
        )
    };
    let (symbol, kind) = raw.rsplit_once('@').ok_or_else(shape)?;
    let kline = match kind {
        "point" => None,
        k => match k.strip_prefix("kline_") {
            Some(interval) => Some(interval.parse::<Interval>().map_err(|_| {
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
    Ok(Stream {
        name: stream_name(&asset.name, kline),
        asset: asset.clone(),
        kline,
    })
}
