//! Property-based fuzzing of every input decoder: the FXCM and Binance
//! payload parsers, the WebSocket frame decoder, symbols and cursors. Each
//! must return (an answer or a clear error), never panic, whatever the
//! bytes. Inputs are random text, JSON-ish token soup, and mutations of the
//! recorded payloads. `PROPTEST_CASES` scales the run; failures are kept in
//! `tests/api/fuzz.proptest-regressions` and replayed first.

use proptest::prelude::*;
use ratesd::api::v1::{Cursor, CursorKey};
use ratesd::domain::Symbol;
use ratesd::sources::{binance, fxcm};
use ratesd::stream::frame::ErrorType;
use ratesd::stream::v1::{Refusal, Request, parse_request};

use crate::helpers::fixture;

/// Text made of JSON's own tokens, so that the parsers get deep.
fn json_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"".to_owned()),
        Just("null(".to_owned()),
        Just(");".to_owned()),
        Just("\"Rates\"".to_owned()),
        Just("\"Symbol\"".to_owned()),
        Just("\"Bid\"".to_owned()),
        Just("\"Ask\"".to_owned()),
        Just("\"bidPrice\"".to_owned()),
        Just("\"askPrice\"".to_owned()),
        Just("\"price\"".to_owned()),
        Just("\"symbol\"".to_owned()),
        Just("\"EURUSD\"".to_owned()),
        Just("\"action\"".to_owned()),
        Just("\"subscribe\"".to_owned()),
        Just("\"message\"".to_owned()),
        Just("\"assetId\"".to_owned()),
        "-?[0-9]{1,25}(\\.[0-9]{0,12})?(e[+-]?[0-9]{1,4})?",
        "\"[ -~]{0,8}\"",
        "[ \\t\\n]{1,3}",
    ];
    prop::collection::vec(token, 0..64).prop_map(|t| t.concat())
}

/// A recorded payload with random byte-level damage.
fn mutated(body: String) -> impl Strategy<Value = String> {
    let len = body.len();
    prop::collection::vec((0..len, any::<u8>(), 0u8..4), 1..12).prop_map(move |edits| {
        let mut b = body.clone().into_bytes();
        for (pos, byte, op) in edits {
            let pos = pos.min(b.len().saturating_sub(1));
            match op {
                0 if !b.is_empty() => b[pos] = byte,
                1 => b.insert(pos, byte),
                2 if !b.is_empty() => {
                    b.remove(pos);
                }
                _ => b.truncate(pos),
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

fn sound(quotes: &[(String, ratesd::domain::BidAsk)]) -> bool {
    quotes
        .iter()
        .all(|(_, q)| q.bid.is_finite() && q.ask.is_finite() && q.bid > 0.0 && q.bid <= q.ask)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn fxcm_parser_never_panics_on_text(s in "\\PC{0,400}") {
        if let Ok(rows) = fxcm::parse(&s) { prop_assert!(sound(&rows)); }
    }

    #[test]
    fn fxcm_parser_never_panics_on_json_soup(s in json_soup()) {
        if let Ok(rows) = fxcm::parse(&s) { prop_assert!(sound(&rows)); }
    }

    #[test]
    fn binance_parser_never_panics_on_json_soup(s in json_soup()) {
        if let Ok(rows) = binance::parse(&s) { prop_assert!(sound(&rows)); }
    }

    #[test]
    fn ws_decoder_answers_every_frame(s in prop_oneof![json_soup(), "\\PC{0,200}".boxed()]) {
        match parse_request(&s) {
            Ok(Request::Assets | Request::Subscribe(_)) => {}
            Err(Refusal(kind, text)) => {
                prop_assert_eq!(kind, ErrorType::ValidationError);
                prop_assert!(!text.is_empty() && text.len() < 400, "{}", text);
            }
        }
    }

    #[test]
    fn symbols_and_cursors_never_panic(s in "\\PC{0,120}") {
        if let Ok(sym) = Symbol::parse(&s) {
            prop_assert!(sym.as_str().chars().all(|c| c.is_ascii_alphanumeric()));
        }
        let key = CursorKey::new(b"fuzzing key");
        if let Ok(c) = Cursor::decode(&s, &key, 1) {
            prop_assert!(0 <= c.from && c.from <= c.after && c.after < c.to);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn fxcm_parser_survives_damaged_recordings(s in mutated(fixture("fxcm-datadisplayer-2021-strings.txt"))) {
        if let Ok(rows) = fxcm::parse(&s) { prop_assert!(sound(&rows)); }
    }

    #[test]
    fn fxcm_parser_survives_damaged_numeric_recordings(s in mutated(fixture("fxcm-datadisplayer-2022-numeric.txt"))) {
        if let Ok(rows) = fxcm::parse(&s) { prop_assert!(sound(&rows)); }
    }

    #[test]
    fn binance_parser_survives_damaged_recordings(s in mutated(fixture("binance-ticker-price-2021.json"))) {
        if let Ok(rows) = binance::parse(&s) { prop_assert!(sound(&rows)); }
    }
}

#[test]
fn ws_decoder_accepts_the_contract_frames() {
    assert_eq!(
        parse_request(r#"{"action":"assets","message":{}}"#),
        Ok(Request::Assets)
    );
    assert_eq!(
        parse_request(r#"{"action":"subscribe","message":{"assetId":1}}"#),
        Ok(Request::Subscribe(1))
    );
}
