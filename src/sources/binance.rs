//! Binance's public REST API: `GET {base}/api/v3/ticker/bookTicker`, an array
//! of `{symbol, bidPrice, bidQty, askPrice, askQty}` with prices as strings.
//!
//! The parser also reads `/api/v3/ticker/price` (`{symbol, price}`), taking
//! the last price as both bid and ask, so a recorded price list can stand in
//! for the book ticker.

use serde::Deserialize;

use super::{HttpSource, ParseError, RawPrice, SymbolMap};
use crate::domain::{BidAsk, Catalog};

/// The `binance` source: `{base}/api/v3/ticker/bookTicker`, read with
/// [`parse`]. The path goes after the base's own path; a query on the base
/// (an API key) stays a query.
pub fn source(http: reqwest::Client, base_url: &reqwest::Url, catalog: &Catalog) -> HttpSource {
    HttpSource::new(
        "binance",
        http,
        book_ticker_url(base_url),
        SymbolMap::new(catalog, "binance"),
        parse,
    )
}

fn book_ticker_url(base: &reqwest::Url) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty()
            .extend(["api", "v3", "ticker", "bookTicker"]);
    }
    url
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Payload {
    Rows(Vec<Row>),
    /// Binance's error shape: `{"code":-1121,"msg":"Invalid symbol."}`.
    Error {
        code: i64,
        msg: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default)]
    bid_price: Option<RawPrice>,
    #[serde(default)]
    ask_price: Option<RawPrice>,
    #[serde(default)]
    price: Option<RawPrice>,
}

impl Row {
    fn quote(&self) -> Option<BidAsk> {
        match (&self.bid_price, &self.ask_price, &self.price) {
            (Some(bid), Some(ask), _) => BidAsk::new(bid.value()?, ask.value()?),
            (None, None, Some(price)) => {
                let p = price.value()?;
                BidAsk::new(p, p)
            }
            _ => None,
        }
    }
}

/// Parses a book-ticker (or price-ticker) body into `(symbol, quote)` rows,
/// skipping rows with missing or nonsensical prices.
pub fn parse(body: &str) -> Result<Vec<(String, BidAsk)>, ParseError> {
    let trimmed = body.trim_start_matches('\u{feff}').trim();
    if !trimmed.starts_with('[') && !trimmed.starts_with('{') {
        return Err(ParseError::NoJson { expected: "array" });
    }
    match serde_json::from_str::<Payload>(trimmed) {
        Ok(Payload::Rows(rows)) => Ok(rows
            .into_iter()
            .filter_map(|row| Some((row.symbol.clone()?, row.quote()?)))
            .collect()),
        Ok(Payload::Error { code, msg }) => Err(ParseError::Upstream(format!("{code}: {msg}"))),
        // The untagged enum's own error says nothing useful; ask for the array's.
        Err(_) => Err(serde_json::from_str::<Vec<Row>>(trimmed)
            .err()
            .map(ParseError::from)
            .unwrap_or(ParseError::NoJson { expected: "array" })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::{fixture, garbled};

    #[test]
    fn parses_documented_book_ticker() {
        let rows = parse(&fixture("binance-bookticker-documented.json")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "LTCBTC");
        assert_eq!((rows[0].1.bid, rows[0].1.ask), (4.0, 4.000002));
        assert_eq!(rows[1].1.mid(), round_mid(0.079467, 100000.0));
    }

    fn round_mid(bid: f64, ask: f64) -> f64 {
        crate::domain::round6((bid + ask) / 2.0)
    }

    #[test]
    fn parses_recorded_price_ticker() {
        let rows = parse(&fixture("binance-ticker-price-2021.json")).unwrap();
        assert_eq!(rows.len(), 1242);
        let eth = rows.iter().find(|(s, _)| s == "ETHBTC").unwrap().1;
        assert_eq!((eth.bid, eth.ask), (0.032814, 0.032814));
    }

    #[test]
    fn upstream_error_body_is_reported() {
        assert_eq!(
            parse(r#"{"code":-1121,"msg":"Invalid symbol."}"#),
            Err(ParseError::Upstream("-1121: Invalid symbol.".into()))
        );
    }

    #[test]
    fn broken_payloads_are_clear_errors() {
        assert_eq!(parse(""), Err(ParseError::NoJson { expected: "array" }));
        assert_eq!(
            parse("<html>502</html>"),
            Err(ParseError::NoJson { expected: "array" })
        );
        assert!(matches!(parse("[1,2]"), Err(ParseError::Json { .. })));
        assert!(matches!(parse("{\"x\":1}"), Err(ParseError::Json { .. })));
        assert!(matches!(
            parse(&"[".repeat(100_000)),
            Err(ParseError::Json { .. })
        ));
    }

    #[test]
    fn skips_bad_rows() {
        let rows = parse(
            r#"[{"symbol":"A","bidPrice":"2","askPrice":"1"},
                {"symbol":"B","bidPrice":"1"},
                {"bidPrice":"1","askPrice":"2"},
                {"symbol":"C","bidPrice":"1.5","askPrice":"1.5","bidQty":"0"}]"#,
        )
        .unwrap();
        assert_eq!(rows, [("C".to_owned(), BidAsk::new(1.5, 1.5).unwrap())]);
    }

    #[test]
    fn truncated_and_garbled_fixtures_never_panic() {
        for name in [
            "binance-ticker-price-2021.json",
            "binance-bookticker-documented.json",
        ] {
            let body = fixture(name);
            let full = parse(&body).unwrap().len();
            for cut in (0..body.len()).step_by(211) {
                assert!(parse(&body[..cut]).is_err(), "{name} cut at {cut}");
            }
            for garble in garbled(&body) {
                if let Ok(rows) = parse(&garble) {
                    assert!(rows.len() <= full);
                }
            }
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::book_ticker_url;

    #[test]
    fn the_path_goes_before_the_query() {
        let at = |base: &str| book_ticker_url(&base.parse().unwrap()).to_string();
        assert_eq!(
            at("https://api.binance.com"),
            "https://api.binance.com/api/v3/ticker/bookTicker"
        );
        assert_eq!(
            at("http://127.0.0.1:9/proxy/"),
            "http://127.0.0.1:9/proxy/api/v3/ticker/bookTicker"
        );
        assert_eq!(
            at("https://h.example/b?apikey=s3cret"),
            "https://h.example/b/api/v3/ticker/bookTicker?apikey=s3cret"
        );
    }
}
