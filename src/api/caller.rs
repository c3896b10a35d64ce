//! Who is on the other end of a request: its address and socket, which the
//! connection tells the app ([`ForPeer`]), and who the front door found it
//! to be ([`crate::access::Gate`]). [`Caller`] is what a route reads of that:
//! which assets the caller may read, which connection cap and streams it
//! has.
//!
//! All of it is one request extension, [`Peer`], put there by the front
//! door for a request it passes to the router: each extension is an
//! allocation (and a map of them another), which an answer the front door
//! gives itself does without.

use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::access::Identity;
use crate::domain::Asset;
use crate::stream::Grant;
use crate::stream::stall::SocketFd;

/// The other end of a request: its connection's address and socket, and
/// who the front door found it to be.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The socket's descriptor, for the stall check of a WebSocket or event
    /// stream the request may become.
    pub fd: Option<SocketFd>,
    /// Who is calling, once the front door has identified it.
    pub identity: Option<Identity>,
}

impl Peer {
    /// A request that came by no connection (a test calling the app
    /// directly): an unspecified address and no socket.
    pub fn unknown() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            fd: None,
            identity: None,
        }
    }
}

/// The app as one connection serves it: a copy that knows the connection's
/// peer (made once a connection, as the connection's own copy of the app
/// is), rather than a [`Peer`] put in each request's extensions before the
/// app has looked at it.
pub trait ForPeer {
    fn for_peer(&self, addr: SocketAddr, fd: SocketFd) -> Self;
}

/// The request's caller: its [`Identity`], address and socket. A route
/// extracts it once: the extractor takes the identity out of the request
/// (no copy of it), so a second extraction finds none (503, as a route
/// outside the front door would).
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub addr: SocketAddr,
    pub fd: Option<SocketFd>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// Takes the identity out of the request (a route reads it once).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get_mut::<Peer>()
            .and_then(|peer| {
                Some(Self {
                    identity: peer.identity.take()?,
                    addr: peer.addr,
                    fd: peer.fd,
                })
            })
            // Every route is behind the front door, which puts it there.
            .ok_or_else(|| ApiError::Unavailable("the caller is not known".into()))
    }
}

impl Caller {
    /// `Ok` when the caller may read `asset`; a 403 problem when its token
    /// does not allow it.
    pub fn may_read(&self, asset: &Asset) -> Result<(), ApiError> {
        if self.identity.scope.allows(asset.id) {
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
        self.identity.scope.is_all()
    }

    /// What a WebSocket or event stream of this caller may do.
    pub fn grant(&self) -> Grant {
        Grant {
            max_streams: usize::try_from(self.identity.tier.streams).ok(),
            scope: self.identity.scope.clone(),
            expires: self.identity.expires,
            revoked: self.identity.key.as_ref().map(|k| k.revoked.clone()),
        }
    }
}
