//! One error type for every route, answered as RFC 9457 problem details.
//! Internals are logged here, once, and never shown to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::problem::{Kind, Problem};
use crate::store::history::HistoryError;
use crate::store::{ArchiveError, EngineError, RedisError};
use crate::stream::UpgradeRejection;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    InvalidParameter {
        parameter: &'static str,
        detail: String,
    },
    #[error("unknown symbol '{0}'")]
    UnknownSymbol(String),
    /// A currency no asset names (`parameter`), or two with no chain
    /// between them (no parameter).
    #[error("{detail}")]
    NoConversion {
        parameter: Option<&'static str>,
        detail: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NoData(String),
    /// No point at a moment asked for.
    #[error("{0}")]
    NoPoint(String),
    #[error("too many WebSocket and event-stream connections for this client (at most {0})")]
    TooManyConnections(u32),
    /// A token's `symbols` do not allow the asset.
    #[error("{0}")]
    Forbidden(String),
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
            HistoryError::Engine(EngineError::Redis(e)) => Self::Redis(e),
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

    fn parts(&self) -> (StatusCode, Kind) {
        match self {
            Self::InvalidParameter { .. } => (StatusCode::BAD_REQUEST, Kind::InvalidParameter),
            Self::UnknownSymbol(_) => (StatusCode::NOT_FOUND, Kind::UnknownSymbol),
            Self::NoConversion { .. } => (StatusCode::NOT_FOUND, Kind::UnknownCurrency),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, Kind::NotFound),
            Self::TooManyConnections(_) => {
                (StatusCode::TOO_MANY_REQUESTS, Kind::TooManyConnections)
            }
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, Kind::Forbidden),
            Self::NoData(_) => (StatusCode::SERVICE_UNAVAILABLE, Kind::NoData),
            Self::NoPoint(_) => (StatusCode::NOT_FOUND, Kind::NoPoint),
            Self::Redis(RedisError::Corrupt { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, Kind::Internal)
            }
            Self::Redis(_) | Self::Archive(_) | Self::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, Kind::Unavailable)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.parts();
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
            Self::Archive(ArchiveError::Busy) => {
                tracing::debug!("archive read refused: at the read cap");
                "the archive is serving as many reads as it may; retry in a moment".to_owned()
            }
            Self::Archive(e) if e.is_overload() => {
                tracing::debug!(error = %e, "archive read cut at its statement timeout");
                "reading this range from the archive took too long; retry, or ask for a \
                 narrower range"
                    .to_owned()
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
            Self::NoConversion { parameter, .. } => parameter.map(str::to_owned),
            _ => None,
        };
        Problem {
            parameter,
            ..Problem::new(kind, status, detail)
        }
        .respond()
    }
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
        let mut resp = Problem::new(Kind::WebSocketUpgrade, status, self.to_string()).respond();
        let headers = resp.headers_mut();
        if status == StatusCode::UPGRADE_REQUIRED {
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        // RFC 6455 4.4: a version we do not speak is answered with the one we do.
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        resp
    }
}
