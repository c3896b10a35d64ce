//! Conversion between currencies at the latest rates: `/api/v1/convert`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::V1State;
use super::dto::Conversion;
use super::freshness::MAX_AGE_RATES;
use crate::api::caller::Caller;
use crate::api::error::{ApiError, Result};
use crate::api::http_cache::{IfNoneMatch, Prepared};
use crate::api::query::Params;
use crate::api::responses::{InvalidParameter, NoConversion, RateLimited, Unavailable};
use crate::clock::unix_now;
use crate::domain::convert::rate;
use crate::domain::currency_code;

pub fn router() -> OpenApiRouter<Arc<V1State>> {
    OpenApiRouter::new().routes(routes!(convert))
}

/// Conversion query. Every field is read as text so that a bad value gets a
/// problem body naming it.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConvertQuery {
    /// The currency to convert from (case-insensitive), e.g. `EUR`.
    #[param(value_type = String, pattern = "^[A-Za-z0-9]{2,10}$", example = "EUR")]
    from: Option<String>,
    /// The currency to convert to, e.g. `JPY`.
    #[param(value_type = String, pattern = "^[A-Za-z0-9]{2,10}$", example = "JPY")]
    to: Option<String>,
    /// A positive finite number. Default 1.
    #[param(value_type = Option<f64>, exclusive_minimum = 0, example = 100)]
    amount: Option<String>,
}

impl TryFrom<Params> for ConvertQuery {
    type Error = ApiError;

    fn try_from(mut p: Params) -> Result<Self> {
        Ok(Self {
            from: p.take("from")?,
            to: p.take("to")?,
            amount: p.take("amount")?,
        })
    }
}

fn currency(name: &'static str, raw: Option<&str>) -> Result<String> {
    let raw = raw.ok_or_else(|| ApiError::invalid(name, format!("{name} is required")))?;
    currency_code(raw).ok_or_else(|| {
        ApiError::invalid(
            name,
            format!("{name} must be a currency code of 2 to 10 letters or digits, got '{raw}'"),
        )
    })
}

/// Converts an amount between two currencies at the latest mid rates.
///
/// Currencies are the two sides of each asset (a six-letter name is base
/// then quote: `EURUSD` prices EUR in USD). The rate is a direct pair, its
/// inverse, or a chain of two pairs through a common currency, the
/// shortest first; `path` names the assets used, `time` is the oldest of
/// their times and `stale` is true when any of them is stale. Answered from
/// the same per-tick snapshot as `/rates`.
#[utoipa::path(get, path = "/api/v1/convert", tag = "rates", operation_id = "convert",
    params(ConvertQuery),
    responses(
        (status = 200, description = "The converted amount", body = Conversion,
            headers(("ETag" = String), ("Cache-Control" = String, description = "public, max-age=1"))),
        (status = 304, description = "Not modified: the `If-None-Match` tag is current"),
        InvalidParameter,
        NoConversion,
        Unavailable,
        RateLimited,
    ))]
#[tracing::instrument(level = "debug", skip(state, caller, params, if_none_match))]
async fn convert(
    State(state): State<Arc<V1State>>,
    caller: Caller,
    params: Params,
    if_none_match: IfNoneMatch,
) -> Result<Response> {
    let query = ConvertQuery::try_from(params)?;
    let from = currency("from", query.from.as_deref())?;
    let to = currency("to", query.to.as_deref())?;
    let amount = match query.amount.as_deref() {
        None => 1.0,
        Some(raw) => raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|a| a.is_finite() && *a > 0.0)
            .ok_or_else(|| {
                ApiError::invalid(
                    "amount",
                    format!("amount must be a positive finite number, got '{raw}'"),
                )
            })?,
    };
    for (name, code) in [("from", &from), ("to", &to)] {
        if !state.converter.knows(code) {
            return Err(ApiError::NoConversion {
                parameter: Some(name),
                detail: format!("no asset names the currency '{code}'"),
            });
        }
    }
    let legs = state
        .converter
        .path(&from, &to)
        .ok_or_else(|| ApiError::NoConversion {
            parameter: None,
            detail: format!("no chain of at most two assets joins {from} and {to}"),
        })?;
    // A token that allows some assets converts through those only.
    for leg in &legs {
        if let Some(asset) = state.catalog.by_id(leg.asset) {
            caller.may_read(asset)?;
        }
    }
    let snapshot = state.rates.get().await;
    let rates = snapshot
        .value
        .as_ref()
        .map_err(|e| ApiError::Unavailable(e.clone()))?;
    let mut path = Vec::with_capacity(legs.len());
    let (mut time, mut stale) = (unix_now(), false);
    for leg in &legs {
        let r = rates
            .list
            .iter()
            .find(|r| r.asset_id == leg.asset)
            .ok_or_else(|| {
                let name = state
                    .catalog
                    .by_id(leg.asset)
                    .map_or("", |a| a.name.as_str());
                ApiError::NoData(format!("no quote for {name} yet"))
            })?;
        path.push(r.symbol.clone());
        time = time.min(r.time);
        stale |= r.stale;
    }
    let value_of = |id| {
        rates
            .list
            .iter()
            .find(|r| r.asset_id == id)
            .map(|r| r.value)
    };
    let rate = rate(&legs, value_of)
        .ok_or_else(|| ApiError::NoData(format!("no usable rate between {from} and {to}")))?;
    let result = amount * rate;
    if !result.is_finite() {
        return Err(ApiError::invalid(
            "amount",
            format!("amount {amount} is too large to convert at rate {rate}"),
        ));
    }
    let answer = Prepared::json(&Conversion {
        from,
        to,
        amount,
        rate,
        result,
        time,
        path,
        stale,
    });
    Ok(answer.respond(&if_none_match, MAX_AGE_RATES))
}
