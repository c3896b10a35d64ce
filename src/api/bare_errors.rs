//! Answers written below hyper, as problems: a refusal of a connection
//! that will not be served, and the answers hyper writes by itself to a
//! request it cannot parse (414, 431, 400), which carry no body.

use axum::http::StatusCode;

use super::problem::{Kind, PROBLEM_JSON, Problem};

/// A whole HTTP/1 answer carrying `problem`, for a connection that is
/// closed after it (written below hyper: a refusal, or in place of one of
/// hyper's bare error answers); `extra` are more header lines, each ending
/// in CRLF.
pub(super) fn raw_answer(problem: &Problem, extra: &str) -> Vec<u8> {
    let status = problem.status;
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = serde_json::to_string(problem).unwrap_or_default();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {PROBLEM_JSON}\r\n{extra}\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A problem answer in place of `bytes` when they are an answer hyper
/// writes by itself for a request it could not parse (a head alone, status
/// 400, 414 or 431, no body, no content type): every error answer of the
/// API is a problem, also those made below the router.
pub(super) fn bare_error_answer(bytes: &[u8]) -> Option<Vec<u8>> {
    let head = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let status = head.get(..3)?;
    if !bytes.ends_with(b"\r\n\r\n") || memchr_crlf2(bytes) != bytes.len() - 4 {
        return None;
    }
    let lower = bytes.to_ascii_lowercase();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if !has(b"\r\ncontent-length: 0\r\n") || has(b"\r\ncontent-type:") {
        return None;
    }
    let (kind, status, detail) = match status {
        b"400" => (
            Kind::MalformedRequest,
            StatusCode::BAD_REQUEST,
            "the request could not be read as HTTP: a malformed request line, header or \
             Content-Length, or not HTTP at all (TLS on a plain-text port?)",
        ),
        b"414" => (
            Kind::RequestTooLarge,
            StatusCode::URI_TOO_LONG,
            "the request line is longer than the server reads",
        ),
        b"431" => (
            Kind::RequestTooLarge,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request has more header fields than the server reads (100), or larger ones",
        ),
        _ => return None,
    };
    Some(raw_answer(&Problem::new(kind, status, detail), ""))
}

/// Where the first blank line (`\r\n\r\n`) starts.
fn memchr_crlf2(bytes: &[u8]) -> usize {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bare_error_answers_become_problems() {
        for (bare, status, slug) in [
            ("HTTP/1.1 400 Bad Request", 400, "malformed-request"),
            ("HTTP/1.1 414 URI Too Long", 414, "request-too-large"),
            (
                "HTTP/1.1 431 Request Header Fields Too Large",
                431,
                "request-too-large",
            ),
        ] {
            let head = format!(
                "{bare}\r\nconnection: close\r\ncontent-length: 0\r\n\
                 date: Sat, 05 Dec 2026 08:01:49 GMT\r\n\r\n"
            );
            let answer = String::from_utf8(bare_error_answer(head.as_bytes()).unwrap()).unwrap();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(
                head.contains("content-type: application/problem+json"),
                "{head}"
            );
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{head}"
            );
            let problem: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(problem["status"], status);
            assert_eq!(problem["type"], format!("/problems/{slug}"));
        }
        // The app's own answers are left alone: a problem, a body, other
        // statuses, a head split over writes.
        for own in [
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            "\u{81}\u{7e}HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert_eq!(bare_error_answer(own.as_bytes()), None, "{own}");
        }
    }
}
