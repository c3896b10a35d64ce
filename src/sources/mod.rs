//! Upstreams of quotes, each a small adapter behind [`Source`].
//!
//! A source turns one upstream fetch into bid/ask pairs for the catalog's
//! assets; it knows nothing of ticks, Redis or failover, which belong to the
//! worker. Payload parsing is a pure function in each adapter's module so
//! that it can be tested on the recorded fixtures.

pub mod binance;
pub mod file;
pub mod fxcm;
pub mod simulated;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::domain::{AssetId, BidAsk, Catalog};

/// Upstream payloads are a few hundred KiB; anything far larger is broken.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// One asset's quote from one fetch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceQuote {
    pub asset_id: AssetId,
    pub quote: BidAsk,
}

/// An upstream of quotes.
pub trait Source: Send + Sync {
    /// The name clients see in `source` (`fxcm`, `binance`, `file`, `simulated`).
    fn name(&self) -> &'static str;

    /// Fetches the current quotes of every catalog asset this upstream has.
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<SourceQuote>, SourceError>>;

    /// The simulated source makes up past quotes for demos; real ones cannot.
    fn as_simulated(&self) -> Option<&simulated::Simulated> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The request failed; `url` is redacted, `cause` the whole error chain
    /// (a TLS or DNS error is named, not just "error sending request").
    #[error("request to {url} failed: {cause}")]
    Http { url: String, cause: String },
    #[error("upstream answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("payload larger than {MAX_PAYLOAD_BYTES} bytes")]
    TooLarge,
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad payload: {0}")]
    Parse(#[from] ParseError),
}

/// Why a payload could not be read. Never a panic, whatever the bytes.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("no JSON {expected} found in the payload")]
    NoJson { expected: &'static str },
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("upstream reported an error: {0}")]
    Upstream(String),
}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

/// A price that an upstream writes as a JSON number or a string.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPrice {
    Number(f64),
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl RawPrice {
    pub(crate) fn value(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(s) => s.trim().parse().ok(),
            Self::Other(_) => None,
        }
    }
}

/// Keeps the catalog's assets out of an upstream's `(symbol, quote)` rows.
pub(crate) struct SymbolMap(HashMap<String, AssetId>);

impl SymbolMap {
    pub(crate) fn new(catalog: &Catalog, source_kind: &str) -> Self {
        Self(
            catalog
                .assets()
                .iter()
                .map(|a| (a.symbol_at(source_kind).to_owned(), a.id))
                .collect(),
        )
    }

    pub(crate) fn select(
        &self,
        rows: impl IntoIterator<Item = (String, BidAsk)>,
    ) -> Vec<SourceQuote> {
        let mut out: Vec<SourceQuote> = rows
            .into_iter()
            .filter_map(|(symbol, quote)| {
                self.0
                    .get(&symbol)
                    .map(|&asset_id| SourceQuote { asset_id, quote })
            })
            .collect();
        out.sort_by_key(|q| q.asset_id);
        out.dedup_by_key(|q| q.asset_id);
        out
    }
}

/// Turns a payload into `(upstream symbol, quote)` rows.
pub type Parser = fn(&str) -> Result<Vec<(String, BidAsk)>, ParseError>;

/// An upstream read over HTTP GET: one address, one payload parser.
pub struct HttpSource {
    name: &'static str,
    http: reqwest::Client,
    url: reqwest::Url,
    symbols: SymbolMap,
    parse: Parser,
}

impl HttpSource {
    pub(crate) fn new(
        name: &'static str,
        http: reqwest::Client,
        url: reqwest::Url,
        symbols: SymbolMap,
        parse: Parser,
    ) -> Self {
        Self {
            name,
            http,
            url,
            symbols,
            parse,
        }
    }
}

impl Source for HttpSource {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Vec<SourceQuote>, SourceError>> {
        async move {
            let resp = self
                .http
                .get(self.url.clone())
                .send()
                .await
                .map_err(|e| SourceError::http(&self.url, e))?;
            let body = read_body(resp, &self.url).await?;
            Ok(self.symbols.select((self.parse)(&body)?))
        }
        .boxed()
    }
}

impl SourceError {
    /// A failed request to `url`: the address redacted, the whole chain of
    /// causes (reqwest's own text names the URL unredacted, so it goes).
    fn http(url: &reqwest::Url, e: reqwest::Error) -> Self {
        Self::Http {
            url: redact(url),
            cause: error_chain(&e.without_url()),
        }
    }
}

/// An upstream address as it may be shown (logs, `/health/ready`): no
/// user or password, no query (tokens live there), no fragment.
pub fn redact(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    let mut text = shown.to_string();
    if had_query {
        text.push_str("?…");
    }
    text
}

/// An error and its causes, `outer: inner: innermost`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

/// Reads a response body, refusing error statuses and oversized bodies.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    url: &reqwest::Url,
) -> Result<String, SourceError> {
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| SourceError::http(url, e))? {
        if body.len() + chunk.len() > MAX_PAYLOAD_BYTES {
            return Err(SourceError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        let mut snippet: String = text.chars().take(200).collect();
        if text.len() > snippet.len() {
            snippet.push('…');
        }
        return Err(SourceError::Status {
            status: status.as_u16(),
            body: snippet,
        });
    }
    Ok(text)
}

/// One entry of `RATES_SOURCES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Fxcm,
    Binance,
    File(PathBuf),
    Simulated,
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "fxcm" => Ok(Self::Fxcm),
            "binance" => Ok(Self::Binance),
            "simulated" => Ok(Self::Simulated),
            _ => match s.strip_prefix("file:") {
                Some(path) if !path.is_empty() => Ok(Self::File(PathBuf::from(path))),
                _ => Err(format!(
                    "unknown source '{s}'; expected fxcm, binance, file:PATH or simulated"
                )),
            },
        }
    }
}

impl SourceSpec {
    /// The name its quotes carry in `source`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fxcm => "fxcm",
            Self::Binance => "binance",
            Self::File(_) => "file",
            Self::Simulated => "simulated",
        }
    }
}

/// Where the HTTP upstreams live and how long one fetch may take.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub fxcm_url: reqwest::Url,
    pub binance_url: reqwest::Url,
    pub timeout: Duration,
}

/// Builds the sources of `RATES_SOURCES`, in priority order.
pub fn build(
    specs: &[SourceSpec],
    catalog: &Catalog,
    settings: &UpstreamSettings,
) -> Result<Vec<Arc<dyn Source>>, reqwest::Error> {
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(concat!("ratesd/", env!("CARGO_PKG_VERSION")))
        .build()?;
    Ok(specs
        .iter()
        .map(|spec| -> Arc<dyn Source> {
            match spec {
                SourceSpec::Fxcm => Arc::new(fxcm::source(
                    http.clone(),
                    settings.fxcm_url.clone(),
                    catalog,
                )),
                SourceSpec::Binance => Arc::new(binance::source(
                    http.clone(),
                    &settings.binance_url,
                    catalog,
                )),
                SourceSpec::File(path) => Arc::new(file::File::new(path.clone(), catalog)),
                SourceSpec::Simulated => Arc::new(simulated::Simulated::new(catalog)),
            }
        })
        .collect())
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn credentials_and_queries_are_not_shown() {
        let url: reqwest::Url = "http://u:p@host.example/DataDisplayer?token=s3cret#x"
            .parse()
            .unwrap();
        let shown = redact(&url);
        assert_eq!(shown, "http://host.example/DataDisplayer?…");
        assert!(!shown.contains("s3cret") && !shown.contains("u:p"));
        let plain: reqwest::Url = "https://api.binance.com/api/v3/ticker/bookTicker"
            .parse()
            .unwrap();
        assert_eq!(redact(&plain), plain.as_str());
    }

    #[tokio::test]
    async fn a_failed_fetch_names_the_cause_and_not_the_secret() {
        // Nothing listens on port 9 of loopback: the connection is refused.
        let url: reqwest::Url = "http://u:p@127.0.0.1:9/DataDisplayer?token=s3cret"
            .parse()
            .unwrap();
        let catalog = Catalog::with_extra("").unwrap();
        let http = reqwest::Client::new();
        let source = fxcm::source(http, url, &catalog);
        let error = source.fetch().await.unwrap_err().to_string();
        assert!(
            !error.contains("s3cret") && !error.contains("u:p"),
            "{error}"
        );
        assert!(error.contains("127.0.0.1:9/DataDisplayer?…"), "{error}");
        assert!(
            error.to_lowercase().contains("refused"),
            "the cause is named: {error}"
        );
    }
}

/// Where a recorded upstream payload lives: `tests/fixtures/`.
#[cfg(test)]
pub(crate) fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Reads a recorded upstream payload.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Damaged copies of a payload: bytes swapped for JSON-significant ones at
/// spread-out places, a doubled middle, an unclosed string.
#[cfg(test)]
pub(crate) fn garbled(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = body.as_bytes();
    for (k, junk) in [b'"', b'{', b']', b',', b':', b'\\', b'x', b'9']
        .iter()
        .enumerate()
    {
        let mut b = bytes.to_vec();
        let mut i = 7 + k * 13;
        while i < b.len() {
            b[i] = *junk;
            i += 1499 + k * 7;
        }
        out.push(String::from_utf8_lossy(&b).into_owned());
    }
    let mid = body.len() / 2;
    let mid = (mid..body.len())
        .find(|&i| body.is_char_boundary(i))
        .unwrap_or(0);
    out.push(format!("{}{body}", &body[..mid]));
    out.push(format!("{}\"", &body[..mid]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse() {
        assert_eq!("fxcm".parse(), Ok(SourceSpec::Fxcm));
        assert_eq!(" binance ".parse(), Ok(SourceSpec::Binance));
        assert_eq!("simulated".parse(), Ok(SourceSpec::Simulated));
        assert_eq!(
            "file:/tmp/x.txt".parse(),
            Ok(SourceSpec::File("/tmp/x.txt".into()))
        );
        assert!("file:".parse::<SourceSpec>().is_err());
        assert!(
            "bloomberg"
                .parse::<SourceSpec>()
                .unwrap_err()
                .contains("bloomberg")
        );
    }

    #[test]
    fn raw_prices_accept_numbers_and_strings() {
        let p: Vec<RawPrice> =
            serde_json::from_str(r#"[1.5, "2.25", " 3 ", "x", null, {}]"#).unwrap();
        let v: Vec<_> = p.iter().map(RawPrice::value).collect();
        assert_eq!(v, [Some(1.5), Some(2.25), Some(3.0), None, None, None]);
    }
}
