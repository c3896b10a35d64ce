//! The caller of a route, as the front door identified it
//! ([`crate::access::Gate`]): what a route reads to know which assets the
//! caller may read, which connection cap and streams it has.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::access::Identity;
use crate::domain::Asset;
use crate::stream::Grant;

/// The request's [`Identity`].
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(Self)
            // Every route is behind the front door, which puts it there.
            .ok_or_else(|| ApiError::Unavailable("the caller is not known".into()))
    }
}

impl Caller {
    /// `Ok` when the caller may read `asset`; a 403 problem when its token
    /// does not allow it.
    pub fn may_read(&self, asset: &Asset) -> Result<(), ApiError> {
        if self.0.scope.allows(asset.id) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token does not allow {}",
                asset.name
            )))
        }
    }

    /// Whether the caller may read every asset (a token's `symbols` list
    /// none).
    pub fn reads_all(&self) -> bool {
        self.0.scope.is_all()
    }

    /// What a WebSocket or event stream of this caller may do.
    pub fn grant(&self) -> Grant {
        Grant {
            max_streams: usize::try_from(self.0.tier.streams).ok(),
            scope: self.0.scope.clone(),
            expires: self.0.expires,
            revoked: self.0.key.as_ref().map(|k| k.revoked.clone()),
        }
    }
}
