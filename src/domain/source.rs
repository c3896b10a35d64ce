//! What is known of an upstream: the worker's circuit breaker writes it,
//! `/health/ready` shows it.

use serde::{Deserialize, Serialize};

use super::UnixSeconds;

/// What `/health/ready` tells of an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `ok`, `failing` (failed lately, still asked) or `open` (not asked until `retryAt`).
    pub state: String,
    /// Failures in a row.
    pub failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix second of the next attempt while open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<UnixSeconds>,
}
