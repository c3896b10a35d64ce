//! What the v1 routes read from a request the same way: the asset a
//! symbol names, Unix seconds, a page's limit.

use super::V1State;
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Result};
use crate::domain::{Asset, FindError, UnixSeconds};

/// The catalog asset a path's symbol names, if the caller may read it
/// (403 when its token does not allow it).
pub(super) fn resolve<'a>(state: &'a V1State, raw: &str, caller: &Caller) -> Result<&'a Asset> {
    let asset = state.catalog.find(raw).map_err(|e| match e {
        FindError::Invalid(e) => ApiError::invalid("symbol", e.to_string()),
        FindError::Unknown(symbol) => ApiError::UnknownSymbol(symbol.to_string()),
    })?;
    caller.may_read(asset)?;
    Ok(asset)
}

/// `limit`: 1 to 1000, default 100.
pub(super) fn limit_param(raw: Option<&str>) -> Result<usize> {
    let Some(raw) = raw else { return Ok(100) };
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n as usize),
        Ok(n) => Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and 1000, got {n}"),
        )),
        Err(_) => Err(ApiError::invalid(
            "limit",
            format!("limit must be an integer between 1 and 1000, got '{raw}'"),
        )),
    }
}

/// A parameter `name` in Unix seconds, when given.
pub(super) fn seconds_param(name: &'static str, raw: Option<&str>) -> Result<Option<UnixSeconds>> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.trim().parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(ApiError::invalid(
            name,
            format!("{name} must be Unix seconds (a non-negative integer), got '{raw}'"),
        )),
    }
}
