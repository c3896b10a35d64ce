//! One error type for every route, answered as RFC 9457 problem details.
//! Internals are logged here, once, and never shown to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::history::HistoryError;
use crate::store::{ArchiveError, RedisError};
use crate::stream::UpgradeRejection;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

pub const PROBLEM_JSON: &str = "application/problem+json";

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

/// The answer of every v1 route to a client over its per-IP limit.
#[derive(utoipa::IntoResponses)]
pub enum RateLimited {
    /// Over the per-IP rate limit; see `Retry-After` and the `RateLimit-*` headers.
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

/// The answer of a route that cannot be served right now.
#[derive(utoipa::IntoResponses)]
pub enum Unavailable {
    /// The rates store (or, for a range older than the live window, the
    /// archive) is unavailable, or the asset has no quote yet; retry after
    /// `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    ServiceUnavailable(Problem),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    InvalidParameter {
        parameter: &'static str,
        detail: String,
    },
    #[error("unknown symbol '{0}'")]
    UnknownSymbol(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NoData(String),
    #[error("too many WebSocket connections from this address (at most {0})")]
    TooManyConnections(u32),
    /// A store failed earlier this second; the reason was logged then.
    #[error("{0}")]
    Unavailable(String),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("archive: {0}")]
    Archive(#[from] ArchiveError),
}

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::Redis(e) => Self::Redis(e),
            HistoryError::Archive(e) => Self::Archive(e),
        }
    }
}

impl ApiError {
    pub fn invalid(parameter: &'static str, detail: impl Into<String>) -> Self {
        Self::InvalidParameter {
            parameter,
            detail: detail.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::InvalidParameter { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid-parameter",
                "Invalid parameter",
            ),
            Self::UnknownSymbol(_) => (StatusCode::NOT_FOUND, "unknown-symbol", "Unknown symbol"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::TooManyConnections(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-connections",
                "Too many connections",
            ),
            Self::NoData(_) => (StatusCode::SERVICE_UNAVAILABLE, "no-data", "No data yet"),
            Self::Redis(RedisError::Corrupt { .. }) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
            Self::Redis(_) | Self::Archive(_) | Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.parts();
        let detail = match &self {
            Self::Redis(RedisError::Corrupt { .. }) => {
                tracing::error!(error = %self, "internal error");
                "the server could not read its own data; it has been logged".to_owned()
            }
            Self::Redis(_) => {
                metrics::counter!("ratesd_redis_errors_total", "op" => "api").increment(1);
                tracing::warn!(error = %self, "redis unavailable");
                "the rates store is unavailable; retry shortly".to_owned()
            }
            Self::Unavailable(reason) => {
                tracing::debug!(%reason, "rates snapshot unavailable");
                "the rates store is unavailable; retry shortly".to_owned()
            }
            Self::Archive(_) => {
                metrics::counter!("ratesd_postgres_errors_total", "op" => "api").increment(1);
                tracing::warn!(error = %self, "archive unavailable");
                "the history archive is unavailable; ranges within the live window still work"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let parameter = match &self {
            Self::InvalidParameter { parameter, .. } => Some((*parameter).to_owned()),
            Self::UnknownSymbol(_) => Some("symbol".to_owned()),
            _ => None,
        };
        let problem = Problem {
            kind: format!("/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            parameter,
        };
        problem_response(status, &problem)
    }
}

/// A problem body with its content type; 503s say when to retry.
pub fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// Answers routes that do not exist.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// A request to a WebSocket endpoint that cannot be upgraded.
impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        let status = match self {
            Self::NotAnUpgrade => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut resp = problem_response(
            status,
            &Problem {
                kind: "/problems/websocket-upgrade".into(),
                title: "WebSocket upgrade required".into(),
                status: status.as_u16(),
                detail: self.to_string(),
                parameter: None,
            },
        );
        if status == StatusCode::UPGRADE_REQUIRED {
            resp.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        resp
    }
}
