//! Who is calling: one place that turns a request into a client identity
//! (anonymous by IP, an API key, or a token's subject) with its tier.
//! Everything after it (request limits, connection and stream caps, the
//! assets a token allows, metrics by tier) reads the [`Identity`]; nothing
//! else reads credentials.
//!
//! - [`tiers`]: `RATES_TIERS`, each tier's limits.
//! - [`keys`]: API keys, the keys file of digests, its reloading.
//! - [`token`]: client tokens (JWTs), checked against `RATES_JWT_KEY`.

pub mod keys;
pub mod tiers;
pub mod token;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, Uri, header};

use self::keys::{KeyEntry, KeyRing, KeysError};
use self::tiers::{ANONYMOUS, Tier, Tiers, TiersError};
use self::token::{KeyError, TokenError, Verifier};
use crate::config::{AuthMode, Config};
use crate::domain::{Catalog, Scope, UnixSeconds};

/// Whom a tier's limits are counted for: an IP (the `anonymous` tier), a
/// key (by its name), a token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    Ip(IpAddr),
    Key(Arc<str>),
    Subject(Arc<str>),
}

/// A request's caller, as [`Gate::identify`] found it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub client: Client,
    pub tier: Arc<Tier>,
    /// The assets it may read (a token's `symbols`).
    pub scope: Scope,
    /// When a token expires.
    pub expires: Option<UnixSeconds>,
    /// The key's entry, for a key (its revocation).
    pub key: Option<Arc<KeyEntry>>,
}

impl Identity {
    /// `anonymous`, `key` or `token`.
    pub fn kind(&self) -> &'static str {
        match self.client {
            Client::Ip(_) => "anonymous",
            Client::Key(_) => "key",
            Client::Subject(_) => "token",
        }
    }
}

/// Why a request's credential is refused (401). Its text names no
/// credential.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error(
        "this deployment needs an API key or token: send `Authorization: Bearer ...` or \
         `X-API-Key: ...`, or `?token=...` on a WebSocket or event stream"
    )]
    Missing,
    #[error("unknown or revoked API key")]
    UnknownKey,
    #[error("this deployment accepts no tokens, only API keys")]
    NoTokens,
    #[error("{0}")]
    Token(TokenError),
    #[error("the token's tier is not one of this deployment's")]
    UnknownTier,
}

impl Refusal {
    /// The `reason` label of `ratesd_http_unauthorized_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::UnknownKey => "unknown_key",
            Self::Token(TokenError::Expired) => "expired",
            Self::NoTokens | Self::Token(_) | Self::UnknownTier => "bad_token",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750).
    pub fn challenge(&self) -> String {
        match self {
            Self::Missing => "Bearer realm=\"ratesd\"".to_owned(),
            other => format!(
                "Bearer realm=\"ratesd\", error=\"invalid_token\", error_description=\"{}\"",
                other.to_string().replace('"', "'")
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Tiers(#[from] TiersError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    TokenKey(#[from] KeyError),
    #[error("RATES_AUTH={0}: set RATES_KEYS_FILE or RATES_JWT_KEY (no credential could pass)")]
    NoCredentials(&'static str),
}

/// Turns requests into identities.
pub struct Gate {
    mode: AuthMode,
    tiers: Tiers,
    keys: Option<Arc<KeyRing>>,
    verifier: Option<Verifier>,
    catalog: Arc<Catalog>,
    trusted_proxies: Vec<IpAddr>,
}

impl Gate {
    /// The tiers `config` defines: `RATES_TIERS` over the `anonymous` tier
    /// of the per-IP settings.
    pub fn tiers_of(config: &Config) -> Result<Tiers, TiersError> {
        let anonymous = Tier {
            name: ANONYMOUS.to_owned(),
            per_second: config.rate_limit_per_second,
            burst: config.rate_limit_burst.max(1),
            connections: config.ws_max_connections_per_ip,
            streams: config.ws_max_streams,
        };
        Tiers::parse(&config.tiers, anonymous)
    }

    pub fn new(config: &Config, catalog: Arc<Catalog>) -> Result<Self, AccessError> {
        let tiers = Self::tiers_of(config)?;
        let mode = config.auth;
        let (keys, verifier) = if mode == AuthMode::Off {
            if config.keys_file.is_some() || config.jwt_key.is_some() {
                tracing::warn!("RATES_AUTH=off: API keys and tokens are not read");
            }
            (None, None)
        } else {
            let keys = config
                .keys_file
                .as_deref()
                .map(|path| KeyRing::open(path, tiers.clone()))
                .transpose()?;
            let verifier = config
                .jwt_key
                .as_ref()
                .map(|key| Verifier::from_setting(key.expose()))
                .transpose()?;
            if keys.is_none() && verifier.is_none() {
                let name = if mode == AuthMode::Required {
                    "required"
                } else {
                    "optional"
                };
                return Err(AccessError::NoCredentials(name));
            }
            (keys, verifier)
        };
        Ok(Self {
            mode,
            tiers,
            keys,
            verifier,
            catalog,
            trusted_proxies: config.trusted_proxies.0.clone(),
        })
    }

    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    /// The keys file, when there is one (its watcher wants it).
    pub fn keys(&self) -> Option<Arc<KeyRing>> {
        self.keys.clone()
    }

    /// The caller of a request from `peer` to `uri`; `upgrade` tells
    /// whether it asks for a WebSocket (asked only with credentials on). A
    /// credential is read only where it matters (under `/api/`, and a
    /// WebSocket upgrade on `/`); elsewhere every caller is anonymous.
    pub fn identify(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        uri: &Uri,
        upgrade: impl Fn() -> bool,
    ) -> Result<Identity, Refusal> {
        let ip = client_ip(&self.trusted_proxies, peer, headers);
        if self.mode == AuthMode::Off {
            return Ok(self.anonymous(ip));
        }
        let path = uri.path();
        if !(path.starts_with("/api/") || (path == "/" && upgrade())) {
            return Ok(self.anonymous(ip));
        }
        // `?token=` only where a browser cannot set headers.
        let in_query = path == "/api/v2/events" || upgrade();
        match credential(headers, in_query.then(|| uri.query()).flatten()) {
            None if self.mode == AuthMode::Required => Err(Refusal::Missing),
            None => Ok(self.anonymous(ip)),
            Some(key) if key.starts_with(keys::PREFIX) => {
                let entry = self
                    .keys
                    .as_ref()
                    .and_then(|ring| ring.lookup(&key))
                    .ok_or(Refusal::UnknownKey)?;
                Ok(Identity {
                    client: Client::Key(entry.name.clone()),
                    tier: entry.tier.clone(),
                    scope: Scope::All,
                    expires: None,
                    key: Some(entry),
                })
            }
            Some(token) => {
                let verifier = self.verifier.as_ref().ok_or(Refusal::NoTokens)?;
                let claims = verifier.verify(&token).map_err(Refusal::Token)?;
                let tier = match claims.tier.as_deref() {
                    None => self.tiers.anonymous().clone(),
                    Some(name) => self.tiers.get(name).ok_or(Refusal::UnknownTier)?.clone(),
                };
                let scope = claims.symbols.map_or(Scope::All, |symbols| {
                    Scope::only(
                        symbols
                            .iter()
                            .filter_map(|s| self.catalog.find(s).ok().map(|a| a.id)),
                    )
                });
                Ok(Identity {
                    client: Client::Subject(claims.sub.into()),
                    tier,
                    scope,
                    expires: Some(claims.exp),
                    key: None,
                })
            }
        }
    }

    /// The anonymous caller a request from `peer` is (whatever credential
    /// it carries).
    pub fn anonymous_at(&self, peer: IpAddr, headers: &HeaderMap) -> Identity {
        self.anonymous(client_ip(&self.trusted_proxies, peer, headers))
    }

    fn anonymous(&self, ip: IpAddr) -> Identity {
        Identity {
            client: Client::Ip(ip),
            tier: self.tiers.anonymous().clone(),
            scope: Scope::All,
            expires: None,
            key: None,
        }
    }
}

/// The credential a request carries: `Authorization: Bearer`, `X-API-Key`,
/// or (given `query`) `?token=`.
fn credential<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<Cow<'a, str>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let header_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if let Some(found) = bearer
        .or(header_key)
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        return Some(Cow::Borrowed(found));
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| Cow::<str>::Owned(value.trim().to_owned()))
        .filter(|v| !v.is_empty())
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` entry that is not itself one.
pub fn client_ip(trusted: &[IpAddr], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests;
