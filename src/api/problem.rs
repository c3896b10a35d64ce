//! The problems the API answers with (RFC 9457): their kinds, each with a
//! page at `/problems/{slug}`; the body; the documented error answers of
//! the OpenAPI document; and problem bodies for error answers that
//! something other than a route made.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every kind of problem the API answers with. Each has a page at
/// `/problems/{slug}` ([`problem_page`]), which its `type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidParameter,
    UnknownSymbol,
    UnknownCurrency,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    MalformedRequest,
    RequestTooLarge,
    Unauthorized,
    Forbidden,
    RateLimited,
    TooManyConnections,
    WebSocketUpgrade,
    NoData,
    NoPoint,
    Unavailable,
    Internal,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::InvalidParameter,
        Kind::UnknownSymbol,
        Kind::UnknownCurrency,
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::PayloadTooLarge,
        Kind::MalformedRequest,
        Kind::RequestTooLarge,
        Kind::Unauthorized,
        Kind::Forbidden,
        Kind::RateLimited,
        Kind::TooManyConnections,
        Kind::WebSocketUpgrade,
        Kind::NoData,
        Kind::NoPoint,
        Kind::Unavailable,
        Kind::Internal,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Kind::InvalidParameter => "invalid-parameter",
            Kind::UnknownSymbol => "unknown-symbol",
            Kind::UnknownCurrency => "unknown-currency",
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::MalformedRequest => "malformed-request",
            Kind::RequestTooLarge => "request-too-large",
            Kind::Unauthorized => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::RateLimited => "rate-limited",
            Kind::TooManyConnections => "too-many-connections",
            Kind::WebSocketUpgrade => "websocket-upgrade",
            Kind::NoData => "no-data",
            Kind::NoPoint => "no-point",
            Kind::Unavailable => "unavailable",
            Kind::Internal => "internal",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::InvalidParameter => "Invalid parameter",
            Kind::UnknownSymbol => "Unknown symbol",
            Kind::UnknownCurrency => "No conversion",
            Kind::NotFound => "Not found",
            Kind::MethodNotAllowed => "Method not allowed",
            Kind::PayloadTooLarge => "Payload too large",
            Kind::MalformedRequest => "Malformed request",
            Kind::RequestTooLarge => "Request too large",
            Kind::Unauthorized => "Unauthorized",
            Kind::Forbidden => "Forbidden",
            Kind::RateLimited => "Too many requests",
            Kind::TooManyConnections => "Too many connections",
            Kind::WebSocketUpgrade => "WebSocket upgrade required",
            Kind::NoData => "No data yet",
            Kind::NoPoint => "No point at that moment",
            Kind::Unavailable => "Temporarily unavailable",
            Kind::Internal => "Internal error",
        }
    }

    /// What the problem means and what a client does about it.
    pub fn about(self) -> &'static str {
        match self {
            Kind::InvalidParameter => {
                "A path or query parameter is malformed or out of range. `parameter` names it \
                 and `detail` says what is accepted. Fix the request; repeating it will not help."
            }
            Kind::UnknownSymbol => {
                "The symbol names no asset of this deployment. `GET /api/v1/assets` lists them."
            }
            Kind::UnknownCurrency => {
                "No asset of this deployment names the currency (`parameter` says which), or no \
                 chain of at most two assets joins the two currencies. `GET /api/v1/assets` \
                 lists the assets; a six-letter name is base then quote."
            }
            Kind::NotFound => "There is nothing at this path. The API lives under `/api/v1`.",
            Kind::MethodNotAllowed => {
                "The path exists but not for this method; the `Allow` header lists the ones it takes."
            }
            Kind::PayloadTooLarge => "The request body is over 16 KiB; no route reads a body.",
            Kind::MalformedRequest => {
                "The request could not be read as HTTP: a malformed request line or header, a \
                 bad `Content-Length`, or not HTTP at all (TLS sent to a plain-text port). The \
                 connection is closed after this answer."
            }
            Kind::RequestTooLarge => {
                "The request line (414) or the header fields (431: more than 100, or too large) \
                 are over what the server reads. No route needs long URLs or many headers. The \
                 connection is closed after this answer."
            }
            Kind::Unauthorized => {
                "This deployment needs an API key or token here (`RATES_AUTH`), and the \
                 request had none, or an unknown, revoked or expired one; `detail` says which. \
                 Send a key as `Authorization: Bearer rk_...` or `X-API-Key: rk_...`, a token \
                 as `Authorization: Bearer ...`; where a browser cannot set headers \
                 (WebSocket, `EventSource`), as `?token=...`. The answer carries \
                 `WWW-Authenticate: Bearer`. An expired token: ask your backend for a fresh one."
            }
            Kind::Forbidden => {
                "The request's token names the only assets it may read (its `symbols` claim), \
                 and this asset is not among them. Ask for a token that allows it."
            }
            Kind::RateLimited => {
                "Over the per-client request limit of the client's tier. Wait `Retry-After` seconds; the \
                 `RateLimit-*` headers of every answer say how much is left."
            }
            Kind::TooManyConnections => {
                "This client (an address, or a key or token's tier) holds as many connections \
                 (HTTP, WebSocket or event stream) as it may. Close some, or retry after \
                 `Retry-After` seconds."
            }
            Kind::WebSocketUpgrade => {
                "This path takes WebSocket connections only: an HTTP/1.1 GET with \
                 `Connection: upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and \
                 a valid `Sec-WebSocket-Key`."
            }
            Kind::NoData => {
                "The asset has no quote yet (the service started moments ago, or no upstream \
                 has it). Retry after `Retry-After` seconds."
            }
            Kind::NoPoint => {
                "The asset has no point at the second asked (`at`) nor within the staleness \
                 limit before it (the service was not running then, the upstreams had no quote, \
                 or the archive does not reach back so far), or, for a ticker, no point yet."
            }
            Kind::Unavailable => {
                "The rates store, the archive or the server's capacity is unavailable for a \
                 moment. Retry after `Retry-After` seconds; `/health/ready` says more."
            }
            Kind::Internal => {
                "The server could not read its own data. It has been logged; retrying may help."
            }
        }
    }

    pub fn from_slug(slug: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.slug() == slug)
    }

    /// The `type` URI of this kind.
    pub fn uri(self) -> String {
        format!("/problems/{}", self.slug())
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/invalid-parameter",
    "title": "Invalid parameter",
    "status": 400,
    "detail": "limit must be between 1 and 1000, got 0",
    "parameter": "limit"
}))]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The query or path parameter at fault, for `invalid-parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl Problem {
    pub fn new(kind: Kind, status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.uri(),
            title: kind.title().to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            parameter: None,
        }
    }

    /// The answer: this body with its content type; 503s and 429s say when
    /// to retry.
    pub fn respond(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // A caller that knows a longer wait (the rate limiter) sets its own.
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_page_of_its_own() {
        let mut slugs = std::collections::BTreeSet::new();
        for kind in Kind::ALL {
            assert!(slugs.insert(kind.slug()), "{kind:?} slug used twice");
            assert_eq!(Kind::from_slug(kind.slug()), Some(kind));
            assert!(!kind.about().is_empty() && !kind.title().is_empty());
        }
    }
}
