//! A range of history in one streamed answer: `Accept: text/csv` or
//! `application/x-ndjson` (or `format=csv|ndjson`) on the history route.
//! The archive is read a chunk at a time as the client takes the answer,
//! so the server's memory does not grow with the range.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;

use super::V1State;
use crate::api::error::{ApiError, Result};
use crate::clock::unix_now;
use crate::domain::{Asset, UnixSeconds};
use crate::store::history;

/// The longest range one export may cover.
pub const MAX_EXPORT_SECONDS: i64 = 31 * 86_400;

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `time,value` lines after that header.
    Csv,
    /// One point a line, as history's JSON writes it.
    Ndjson,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }
}

/// The request's `Accept` header, the only one an export reads.
#[derive(Debug, Default)]
pub struct Accept(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for Accept {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(header::ACCEPT).cloned()))
    }
}

/// The export a request asks for, if any: `format` first (`json` is the
/// paged answer), else a CSV or NDJSON media type in `Accept`.
pub fn requested(format: Option<&str>, accept: &Accept) -> Result<Option<Format>> {
    match format.map(str::trim) {
        Some("csv") => return Ok(Some(Format::Csv)),
        Some("ndjson") => return Ok(Some(Format::Ndjson)),
        Some("json") => return Ok(None),
        Some(other) => {
            let shown: String = other.chars().take(20).collect();
            return Err(ApiError::invalid(
                "format",
                format!("format must be csv, ndjson or json, got '{shown}'"),
            ));
        }
        None => {}
    }
    let accept = accept
        .0
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let wants = |media: &str| {
        accept.split(',').any(|part| {
            part.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(media))
        })
    };
    Ok(if wants("text/csv") {
        Some(Format::Csv)
    } else if wants("application/x-ndjson") {
        Some(Format::Ndjson)
    } else {
        None
    })
}

/// Streams `asset`'s points with `from <= time <= to` (`to` default now)
/// in `format`. A range needs its `from`, spans at most
/// [`MAX_EXPORT_SECONDS`], and has no pages (`limit` and `cursor` are
/// refused).
pub async fn respond(
    state: Arc<V1State>,
    asset: &Asset,
    format: Format,
    (from, to): (Option<UnixSeconds>, Option<UnixSeconds>),
    paged: Option<&'static str>,
) -> Result<Response> {
    if let Some(parameter) = paged {
        return Err(ApiError::invalid(
            parameter,
            format!("an export is one answer with no pages: leave out {parameter}"),
        ));
    }
    let now = unix_now();
    let from = from.ok_or_else(|| {
        ApiError::invalid(
            "from",
            "an export needs from (Unix seconds) and, if not now, to",
        )
    })?;
    let to = to.unwrap_or(now).min(now);
    if from > to {
        return Err(ApiError::invalid(
            "from",
            format!("from ({from}) must not be after to ({to})"),
        ));
    }
    if to - from >= MAX_EXPORT_SECONDS {
        return Err(ApiError::invalid(
            "from",
            format!(
                "an export covers at most {} days; ask for several",
                MAX_EXPORT_SECONDS / 86_400
            ),
        ));
    }
    let reads = state
        .archive
        .as_ref()
        .map(crate::store::Archive::export_reads)
        .transpose()?;
    let window = i64::from(state.window_seconds);
    let chunks = history::export(
        &state.engine,
        reads,
        asset.id,
        (from, to),
        (now - window + 1, state.window_seconds as usize + 1),
    )
    .await?;
    let name = asset.name.clone();
    let id = asset.id;
    let header = match format {
        Format::Csv => Some(Ok(Bytes::from_static(b"time,value\n"))),
        Format::Ndjson => None,
    };
    // Fused: the compression layer polls a body again after its end, and
    // an unfold polled past its end panics.
    let body = futures_util::stream::iter(header)
        .chain(chunks.map(move |chunk| {
            chunk.map(|values| encode(format, &name, id, &values)).inspect_err(|e| {
                tracing::warn!(error = %e, "an export stopped part-way: the archive could not be read");
            })
        }))
        .fuse();
    let mut resp = Response::new(Body::from_stream(body));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}-{from}-{to}.{}\"",
        asset.name,
        format.extension()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// One chunk of an export.
fn encode(
    format: Format,
    name: &str,
    id: crate::domain::AssetId,
    values: &[(UnixSeconds, f64)],
) -> Bytes {
    let mut out = String::with_capacity(values.len() * 64);
    let name = serde_json::to_string(name).unwrap_or_default();
    for &(time, value) in values {
        // serde_json's number formatting, as the JSON answers write values.
        let value = serde_json::Value::from(value);
        let _ = match format {
            Format::Csv => writeln!(out, "{time},{value}"),
            Format::Ndjson => writeln!(
                out,
                "{{\"assetName\":{name},\"time\":{time},\"assetId\":{id},\"value\":{value}}}"
            ),
        };
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_asked_by_parameter_or_accept() {
        let accept = |v: &'static str| Accept(Some(HeaderValue::from_static(v)));
        let none = Accept::default();
        assert_eq!(requested(Some("csv"), &none).unwrap(), Some(Format::Csv));
        assert_eq!(
            requested(Some("ndjson"), &accept("text/csv")).unwrap(),
            Some(Format::Ndjson)
        );
        assert_eq!(requested(Some("json"), &accept("text/csv")).unwrap(), None);
        assert!(requested(Some("xml"), &none).is_err());
        assert_eq!(
            requested(None, &accept("text/csv")).unwrap(),
            Some(Format::Csv)
        );
        assert_eq!(
            requested(
                None,
                &accept("application/json;q=0.9, application/x-ndjson")
            )
            .unwrap(),
            Some(Format::Ndjson)
        );
        assert_eq!(requested(None, &accept("application/json")).unwrap(), None);
        assert_eq!(requested(None, &accept("*/*")).unwrap(), None);
        assert_eq!(requested(None, &none).unwrap(), None);
    }

    #[test]
    fn lines_are_written_as_the_json_answers_write_points() {
        let values = [(1_455_883_485, 1.110948), (1_455_883_486, 1.0)];
        assert_eq!(
            encode(Format::Csv, "EURUSD", 1, &values),
            "1455883485,1.110948\n1455883486,1.0\n"
        );
        let ndjson = encode(Format::Ndjson, "EURUSD", 1, &values);
        let lines: Vec<crate::domain::Point> = std::str::from_utf8(&ndjson)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].time, lines[0].value, lines[0].asset_id),
            (1_455_883_485, 1.110948, 1)
        );
        assert_eq!(lines[1].asset_name, "EURUSD");
    }
}
