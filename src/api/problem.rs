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
    RateLimited,
    TooManyConnections,
    WebSocketUpgrade,
    NoData,
    NoPoint,
    Unavailable,
    Internal,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::InvalidParameter,
        Kind::UnknownSymbol,
        Kind::UnknownCurrency,
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::PayloadTooLarge,
        Kind::MalformedRequest,
        Kind::RequestTooLarge,
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
            Kind::RateLimited => {
                "Over the per-client request limit. Wait `Retry-After` seconds; the \
                 `RateLimit-*` headers of every answer say how much is left."
            }
            Kind::TooManyConnections => {
                "This address holds as many connections (HTTP or WebSocket) as it may. Close \
                 some, or retry after `Retry-After` seconds."
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

    fn from_slug(slug: &str) -> Option<Kind> {
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

/// The answer of every v1 route to a client over its per-IP limit.
#[derive(utoipa::IntoResponses)]
pub enum RateLimited {
    /// Over the per-IP rate limit; see `Retry-After` and the `RateLimit-*` headers.
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
    /// Too many connections from this address, or over the per-IP rate limit
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
}

/// The answer of a streaming route to a client at its connection cap.
#[derive(utoipa::IntoResponses)]
pub enum TooManyConnectionsRefused {
    /// Too many connections (WebSocket and event streams) from this
    /// address, or over the per-IP rate limit; see `Retry-After`.
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

/// The answer of a route whose `{symbol}` names no asset.
#[derive(utoipa::IntoResponses)]
pub enum UnknownSymbol {
    /// No asset has this symbol.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// The answer of the rate and ticker routes to an unknown symbol, or to an
/// asset with no point (at the moment asked, or yet).
#[derive(utoipa::IntoResponses)]
pub enum NoPointAt {
    /// No asset has this symbol, or the asset has no point: (with `at`) at
    /// that second nor within the staleness limit before it, or (a ticker)
    /// yet.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
}

/// The answer of the conversion route when no rate can be had.
#[derive(utoipa::IntoResponses)]
pub enum NoConversion {
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

/// `GET /problems/{slug}`: what a problem `type` means, as a short page.
#[utoipa::path(get, path = "/problems/{slug}", tag = "health",
    operation_id = "problem_type",
    params(("slug" = String, Path, description = "The last part of a problem's `type`", example = "invalid-parameter")),
    responses(
        (status = 200, description = "A page describing the problem type", content_type = "text/html"),
        (status = 404, description = "No such problem type", body = Problem, content_type = "application/problem+json"),
        RateLimited,
    ))]
pub async fn problem_page(axum::extract::Path(slug): axum::extract::Path<String>) -> Response {
    let Some(kind) = Kind::from_slug(&slug) else {
        return Problem::new(
            Kind::NotFound,
            StatusCode::NOT_FOUND,
            format!("no problem type '{slug}'"),
        )
        .respond();
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title></head><body><h1>{title}</h1><p><code>{uri}</code></p>\
         <p>{about}</p><p>Every error answer of this API is an RFC 9457 problem \
         (<code>application/problem+json</code>) with <code>type</code>, <code>title</code>, \
         <code>status</code> and <code>detail</code>.</p></body></html>",
        title = kind.title(),
        uri = kind.uri(),
        about = kind.about(),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        page,
    )
        .into_response()
}

/// True for an error answer something other than a route made (405 from
/// the router, 413 from the body limit, 503 from a route's deadline, 404
/// from the docs' assets): no body type, or plain text. A route's own body
/// (a problem, the readiness report's JSON) is left as it is.
pub fn needs_problem_body(resp: &Response) -> bool {
    resp.status().as_u16() >= 400
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"))
}

/// The same answer with a problem body, keeping its headers (`Allow` on a
/// 405, the CORS headers).
pub async fn with_problem_body(resp: Response, method: axum::http::Method) -> Response {
    let status = resp.status();
    let (mut parts, body) = resp.into_parts();
    let said = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let said = String::from_utf8_lossy(&said).trim().to_owned();
    let (kind, detail) = match status {
        StatusCode::NOT_FOUND => (
            Some(Kind::NotFound),
            "there is nothing at this path".to_owned(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            // The router adds `Allow` after this layer; the name is enough.
            let shown: String = method.as_str().chars().take(20).collect();
            (
                Some(Kind::MethodNotAllowed),
                format!("this path does not take {shown}; the Allow header lists what it takes"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            Some(Kind::PayloadTooLarge),
            "request bodies are limited to 16 KiB".to_owned(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            Some(Kind::Unavailable),
            "the request took too long; retry shortly".to_owned(),
        ),
        _ if said.is_empty() => (
            None,
            status.canonical_reason().unwrap_or("error").to_owned(),
        ),
        _ => (None, said),
    };
    let problem = match kind {
        Some(kind) => Problem::new(kind, status, detail),
        None => Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            parameter: None,
        },
    };
    let mut answer = problem.respond();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    for (name, value) in &parts.headers {
        answer.headers_mut().entry(name).or_insert(value.clone());
    }
    answer
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
