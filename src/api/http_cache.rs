//! HTTP caching: `ETag` / `If-None-Match` / `Cache-Control` for every
//! cacheable GET, over a JSON body prepared once.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::hash::fnv1a64;

/// A prepared JSON body and its entity tag.
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
    pub fn respond(&self, request: &HeaderMap, max_age: u32) -> Response {
        let cache_control = match max_age {
            1 => HeaderValue::from_static("public, max-age=1"),
            60 => HeaderValue::from_static("public, max-age=60"),
            300 => HeaderValue::from_static("public, max-age=300"),
            n => HeaderValue::from_str(&format!("public, max-age={n}"))
                .unwrap_or(HeaderValue::from_static("no-cache")),
        };
        let headers = [
            (header::ETAG, self.etag.clone()),
            (header::CACHE_CONTROL, cache_control),
        ];
        if not_modified(request, &self.etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        (
            headers,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            Body::from(self.body.clone()),
        )
            .into_response()
    }
}

/// A strong tag from a 64-bit FNV-1a hash of the body.
fn etag_of(body: &[u8]) -> HeaderValue {
    let h = fnv1a64(body);
    HeaderValue::from_str(&format!("\"{h:016x}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// `If-None-Match` names this tag (weakly compared, as RFC 9110 asks for GET).
fn not_modified(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
        })
    })
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
        assert_eq!(p.respond(&req(&tag), 1).status(), StatusCode::NOT_MODIFIED);
        let ok = p.respond(&HeaderMap::new(), 1);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CACHE_CONTROL], "public, max-age=1");
    }

    #[test]
    fn etags_differ_with_the_body() {
        assert_ne!(Prepared::json(&1).etag, Prepared::json(&2).etag);
    }
}
