//! Answers made of problems: the page each problem `type` names
//! (`/problems/{slug}`), and a problem body for an error answer that
//! something other than a route made.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::problem::{Kind, Problem};
use super::responses::RateLimited;

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
    // Every value of each header the answer does not set itself (`Vary`
    // may come twice: a caller's credentials, and `Origin`).
    for name in parts.headers.keys() {
        if answer.headers().contains_key(name) {
            continue;
        }
        for value in parts.headers.get_all(name) {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}
