//! FXCM's DataDisplayer feed: `null({"Rates":[{"Symbol":..,"Bid":..,"Ask":..},..]});`
//!
//! Two formats are seen in the wild (see `tests/fixtures/README.md`): an
//! earlier one with every value a string and a trailing comma before every
//! `}`, and a later one with numeric prices and extra fields. Both arrive
//! wrapped in a JSONP callback named `null`.

use serde::Deserialize;

use super::{HttpSource, ParseError, RawPrice, SymbolMap};
use crate::domain::{BidAsk, Catalog};

/// The `fxcm` source: a DataDisplayer address, read with [`parse`].
pub fn source(http: reqwest::Client, url: reqwest::Url, catalog: &Catalog) -> HttpSource {
    HttpSource::new("fxcm", http, url, SymbolMap::new(catalog, "fxcm"), parse)
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "Rates")]
    rates: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    #[serde(rename = "Symbol", default)]
    symbol: Option<String>,
    #[serde(rename = "Bid", default)]
    bid: Option<RawPrice>,
    #[serde(rename = "Ask", default)]
    ask: Option<RawPrice>,
}

/// Parses a DataDisplayer body into `(symbol, quote)` rows. Rows without a
/// symbol or with prices that are not finite, positive and `bid <= ask` are
/// skipped: one bad row of 467 must not cost the other assets their quote.
pub fn parse(body: &str) -> Result<Vec<(String, BidAsk)>, ParseError> {
    let json = strip_trailing_commas(extract_object(body)?);
    let payload: Payload = serde_json::from_str(&json)?;
    Ok(payload
        .rates
        .into_iter()
        .filter_map(|row| {
            let quote = BidAsk::new(row.bid?.value()?, row.ask?.value()?)?;
            Some((row.symbol?.trim().to_owned(), quote))
        })
        .collect())
}

/// The outermost `{ ... }` of a body, whatever wrapper (`null(` / `);`,
/// whitespace, a BOM) surrounds it.
fn extract_object(body: &str) -> Result<&str, ParseError> {
    let missing = ParseError::NoJson { expected: "object" };
    let start = body.find('{').ok_or(missing.clone())?;
    let end = body.rfind('}').ok_or(missing.clone())?;
    if end < start {
        return Err(missing);
    }
    Ok(&body[start..=end])
}

/// Drops every comma that is followed (after whitespace) by `}` or `]`,
/// outside string literals: the earlier format's `"ProductType":"1",}`.
fn strip_trailing_commas(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in json.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ',' {
            let next = bytes[i + 1..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .copied();
            if matches!(next, Some(b'}') | Some(b']')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fixture;

    fn find(rows: &[(String, BidAsk)], symbol: &str) -> BidAsk {
        rows.iter()
            .find(|(s, _)| s == symbol)
            .unwrap_or_else(|| panic!("{symbol} missing"))
            .1
    }

    #[test]
    fn parses_2021_string_format() {
        let rows = parse(&fixture("fxcm-datadisplayer-2021-strings.txt")).unwrap();
        assert_eq!(rows.len(), 251);
        // Mid prices given in tests/fixtures/README.md.
        for (symbol, mid) in [
            ("EURUSD", 1.129575),
            ("USDJPY", 114.510),
            ("GBPUSD", 1.355665),
            ("AUDUSD", 0.71238),
            ("USDCAD", 1.26814),
        ] {
            assert_eq!(find(&rows, symbol).mid(), mid, "{symbol}");
        }
    }

    #[test]
    fn parses_2022_numeric_format() {
        let rows = parse(&fixture("fxcm-datadisplayer-2022-numeric.txt")).unwrap();
        assert_eq!(rows.len(), 467);
        let gbpjpy = find(&rows, "GBPJPY");
        assert_eq!((gbpjpy.bid, gbpjpy.ask), (164.465, 164.491));
        let eurusd = find(&rows, "EURUSD");
        assert!(eurusd.bid > 0.9 && eurusd.bid < 1.3 && eurusd.bid <= eurusd.ask);
    }

    #[test]
    fn tolerates_wrappers_and_whitespace() {
        let body = "\u{feff}  null( {\"Rates\":[{\"Symbol\":\"EURUSD\",\"Bid\":\"1.1\",\"Ask\":1.2,},] } ) ;\n\n";
        let rows = parse(body).unwrap();
        assert_eq!(
            rows,
            [("EURUSD".to_owned(), BidAsk::new(1.1, 1.2).unwrap())]
        );
    }

    #[test]
    fn skips_bad_rows_keeps_good_ones() {
        let body = r#"null({"Rates":[
            {"Symbol":"A","Bid":"x","Ask":"1"},
            {"Symbol":"B","Bid":2,"Ask":1},
            {"Bid":1,"Ask":2},
            {"Symbol":"C","Bid":null,"Ask":1},
            {"Symbol":"D","Bid":"-1","Ask":"1"},
            {"Symbol":"E,}","Bid":"1.5","Ask":"1.6",}
        ]});"#;
        let rows = parse(body).unwrap();
        assert_eq!(rows, [("E,}".to_owned(), BidAsk::new(1.5, 1.6).unwrap())]);
    }

    #[test]
    fn broken_payloads_are_clear_errors() {
        assert_eq!(
            parse("").unwrap_err(),
            ParseError::NoJson { expected: "object" }
        );
        assert_eq!(
            parse("} null({").unwrap_err(),
            ParseError::NoJson { expected: "object" }
        );
        assert!(matches!(
            parse("null({\"Rates\":5});"),
            Err(ParseError::Json { .. })
        ));
        assert!(matches!(
            parse("null({\"rates\":[]});"),
            Err(ParseError::Json { .. })
        ));
        let deep = format!("{}{}", "{\"a\":[".repeat(10_000), "]}".repeat(10_000));
        assert!(matches!(parse(&deep), Err(ParseError::Json { .. })));
    }

    #[test]
    fn truncated_and_garbled_fixtures_never_panic() {
        for name in [
            "fxcm-datadisplayer-2021-strings.txt",
            "fxcm-datadisplayer-2022-numeric.txt",
        ] {
            let body = fixture(name);
            let full = parse(&body).unwrap().len();
            let mut errors = 0;
            for cut in (0..body.len())
                .step_by(997)
                .filter(|&c| body.is_char_boundary(c))
            {
                match parse(&body[..cut]) {
                    Err(e) => {
                        errors += 1;
                        assert!(!e.to_string().is_empty());
                    }
                    // A cut may land right after a complete row; then fewer rows parse.
                    Ok(rows) => assert!(rows.len() <= full),
                }
            }
            assert!(errors > 10, "{name}: truncations should fail, got {errors}");
            for (i, garble) in crate::sources::garbled(&body).into_iter().enumerate() {
                // Must return, not panic; which way depends on where the damage lands.
                if let Ok(rows) = parse(&garble) {
                    assert!(rows.len() <= full, "{name} garble {i}");
                }
            }
        }
    }
}
