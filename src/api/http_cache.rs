//! HTTP caching: `ETag` / `If-None-Match` / `Cache-Control` for every
//! cacheable GET, over a JSON body prepared once; and the [`Shortcut`] by
//! which the front door gives a route's prepared answer itself.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use crate::access::Identity;
use crate::hash::fnv1a64;

/// A route's common answer, given by the front door without the router:
/// for a GET of the route with no query string, from the route's one path
/// parameter as the path spells it (not percent-decoded) and the request's
/// headers. `None` leaves the request to the route, which answers every
/// case the shortcut does not; where both answer, the answers are the same.
pub trait Shortcut: Send + Sync {
    /// The route template it answers, as the router has it
    /// (`/api/v1/rates/{symbol}`).
    fn route(&self) -> &'static str;

    fn answer(&self, param: &str, headers: &HeaderMap, who: &Identity) -> Option<Response>;
}

/// A prepared JSON body and its entity tag: an answer made of pieces
/// prepared once, that allocates nothing but its header map. Its
/// `Content-Length` is the body's exact size, which hyper writes (or axum,
/// for an answer through the router) without being given the header.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Prepared {
    pub fn json<T: serde::Serialize>(value: &T) -> Self {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let etag = etag_of(&body);
        Self { body, etag }
    }

    /// 200 with the body, or 304 when the client holds this version.
    pub fn respond(&self, request: &IfNoneMatch, max_age: u32) -> Response {
        let cache_control = match max_age {
            1 => HeaderValue::from_static("public, max-age=1"),
            60 => HeaderValue::from_static("public, max-age=60"),
            300 => HeaderValue::from_static("public, max-age=300"),
            n => HeaderValue::from_str(&format!("public, max-age={n}"))
                .unwrap_or(HeaderValue::from_static("no-cache")),
        };
        let not_modified = request.names(&self.etag);
        let mut resp = Response::new(if not_modified {
            Body::empty()
        } else {
            Body::from(self.body.clone())
        });
        // Room for what the layers outside add (CORS, the rate-limit
        // headers), so that the map is allocated once.
        let headers = resp.headers_mut();
        headers.reserve(RESPONSE_HEADERS);
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CACHE_CONTROL, cache_control);
        if not_modified {
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
        } else {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        resp
    }
}

/// Headers a cached answer ends up with, at most: its own three, the
/// `Content-Length` axum adds through the router, Link, two of CORS, four
/// of the rate limit and a keyed caller's `Vary`.
const RESPONSE_HEADERS: usize = 12;

/// A request's `If-None-Match` values (none for most requests: then nothing
/// is copied or allocated, unlike extracting the whole `HeaderMap`).
#[derive(Debug, Default)]
pub struct IfNoneMatch(Vec<HeaderValue>);

impl IfNoneMatch {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self(
            headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .cloned()
                .collect(),
        )
    }

    /// Whether the client holds the version tagged `etag`.
    fn names(&self, etag: &HeaderValue) -> bool {
        self.0.iter().any(|v| tag_listed(v, etag))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// A strong tag from a 64-bit FNV-1a hash of the body.
fn etag_of(body: &[u8]) -> HeaderValue {
    let h = fnv1a64(body);
    HeaderValue::from_str(&format!("\"{h:016x}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// One `If-None-Match` value names this tag (weakly compared, as RFC 9110
/// asks for GET).
fn tag_listed(value: &HeaderValue, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    value.to_str().is_ok_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
    })
}

#[cfg(test)]
fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    IfNoneMatch::from_headers(request).names(etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let p = Prepared::json(&serde_json::json!({"a": 1}));
        let tag = p.etag.to_str().unwrap().to_owned();
        let req = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(not_modified(&req(&tag), &p.etag));
        assert!(not_modified(&req(&format!("W/{tag}")), &p.etag));
        assert!(not_modified(&req(&format!("\"x\", {tag}")), &p.etag));
        assert!(not_modified(&req("*"), &p.etag));
        assert!(!not_modified(&req("\"other\""), &p.etag));
        assert!(!not_modified(&HeaderMap::new(), &p.etag));
        let not_modified = p.respond(&IfNoneMatch::from_headers(&req(&tag)), 1);
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert!(!not_modified.headers().contains_key(header::CONTENT_TYPE));
        assert_eq!(not_modified.headers()[header::ETAG], p.etag);
        let ok = p.respond(&IfNoneMatch::default(), 1);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CACHE_CONTROL], "public, max-age=1");
    }

    #[test]
    fn etags_differ_with_the_body() {
        assert_ne!(Prepared::json(&1).etag, Prepared::json(&2).etag);
    }
}
