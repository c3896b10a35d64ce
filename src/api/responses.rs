//! The error answers the OpenAPI document names for each route (each a
//! problem of one status), shared by the routes that give them.

use super::problem::Problem;

/// The answer of every API route to a client over its tier's limit, or
/// without the credential the deployment asks for.
#[derive(utoipa::IntoResponses)]
pub enum RateLimited {
    /// No API key or token where `RATES_AUTH` asks for one, or an unknown,
    /// revoked or expired one; see `WWW-Authenticate`.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// Over the tier's rate limit; see `Retry-After` and the `RateLimit-*` headers.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
}

/// What a WebSocket route answers instead of switching protocols (both
/// versions: one upgrade, one per-IP cap).
#[derive(utoipa::IntoResponses)]
pub enum WsUpgradeRefused {
    /// A WebSocket upgrade with a bad version or no key
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// Not a WebSocket upgrade request (Upgrade: websocket)
    #[response(status = 426, content_type = "application/problem+json")]
    UpgradeRequired(Problem),
    /// No API key or token where `RATES_AUTH` asks for one (here also as
    /// `?token=`), or a bad one
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The token does not allow a stream the URL names
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// Too many connections for this client, or over its tier's rate limit
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
}

/// The answer of a streaming route to a client at its connection cap.
#[derive(utoipa::IntoResponses)]
pub enum TooManyConnectionsRefused {
    /// No API key or token where `RATES_AUTH` asks for one (here also as
    /// `?token=`), or a bad one
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The token does not allow a stream the URL names
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// Too many connections (WebSocket and event streams) for this client,
    /// or over its tier's rate limit; see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
}

/// The answer of a route to a bad parameter.
#[derive(utoipa::IntoResponses)]
pub enum InvalidParameter {
    /// A parameter (the symbol, a query parameter) is malformed; `parameter` names it.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
}

/// The answer of a route whose `{symbol}` names no asset, or one the
/// caller's token does not allow.
#[derive(utoipa::IntoResponses)]
pub enum UnknownSymbol {
    /// The token's `symbols` do not allow this asset.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No asset has this symbol.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// The answer of the rate and ticker routes to an unknown symbol, or to an
/// asset with no point (at the moment asked, or yet), or one the caller's
/// token does not allow.
#[derive(utoipa::IntoResponses)]
pub enum NoPointAt {
    /// The token's `symbols` do not allow this asset.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No asset has this symbol, or the asset has no point: (with `at`) at
    /// that second nor within the staleness limit before it, or (a ticker)
    /// yet.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// The answer of the conversion route when no rate can be had, or a leg
/// is an asset the caller's token does not allow.
#[derive(utoipa::IntoResponses)]
pub enum NoConversion {
    /// The token's `symbols` do not allow an asset of the conversion.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No asset names a currency (`parameter` says which), or no chain of
    /// at most two assets joins the two.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// The answer of a route that cannot be served right now.
#[derive(utoipa::IntoResponses)]
pub enum Unavailable {
    /// The rates store (or, for a range older than the live window, the
    /// archive) is unavailable, or the asset has no quote yet; retry after
    /// `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    ServiceUnavailable(Problem),
}
