//! Decoding a v2 client's frames: `{"id": ..., "method": ..., "params": {...}}`.
//! Never panics, whatever the text; every refusal says which id it answers
//! (null when the frame was not a readable request).

use serde_json::{Map, Value};

use crate::domain::UnixSeconds;
use crate::stream::frame::ErrorType;

/// Longest string id a client may use.
pub const MAX_ID_CHARS: usize = 36;

/// Longest history a subscribe may ask for, in seconds.
pub const MAX_HISTORY: u32 = 1800;

/// Longest stream name worth reading.
const MAX_STREAM_CHARS: usize = 64;

/// Longest epoch worth reading.
const MAX_EPOCH_CHARS: usize = 64;

const METHODS: &str = "expected one of: subscribe, unsubscribe, list, assets";

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's id, echoed in the answer: an integer or a short string.
    pub id: Value,
    pub method: Method,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Subscribe(Subscribe),
    Unsubscribe(Vec<String>),
    List,
    Assets,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscribe {
    pub streams: Vec<String>,
    /// Seconds of history in each new stream's snapshot.
    pub history: u32,
    /// Resume: the last second the client saw.
    pub since: Option<UnixSeconds>,
    /// Resume: the epoch the client's series came from.
    pub epoch: Option<String>,
}

/// Why a frame is refused, and which request it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub id: Value,
    pub kind: ErrorType,
    pub text: String,
}

impl Refusal {
    pub fn new(id: Value, kind: ErrorType, text: impl Into<String>) -> Self {
        Self {
            id,
            kind,
            text: text.into(),
        }
    }
}

/// Decodes a client's text frame.
pub fn parse_request(text: &str) -> Result<Request, Refusal> {
    let unreadable = |t: String| Refusal::new(Value::Null, ErrorType::ValidationError, t);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| unreadable(format!("message is not valid JSON: {e}")))?;
    let Value::Object(mut frame) = value else {
        return Err(unreadable(
            "message must be a JSON object {\"id\": ..., \"method\": ..., \"params\": {...}}"
                .into(),
        ));
    };
    let id = match frame.remove("id") {
        None => return Err(unreadable("missing 'id' (an integer or a string)".into())),
        Some(id @ Value::Number(_)) if id.is_i64() || id.is_u64() => id,
        Some(Value::String(s)) if s.chars().count() <= MAX_ID_CHARS => Value::String(s),
        Some(other) => {
            return Err(unreadable(format!(
                "'id' must be an integer or a string of at most {MAX_ID_CHARS} characters, got {}",
                truncate(&other.to_string(), 40)
            )));
        }
    };
    let invalid = |t: String| Refusal::new(id.clone(), ErrorType::ValidationError, t);
    let method = match frame.get("method") {
        None => return Err(invalid(format!("missing 'method'; {METHODS}"))),
        Some(Value::String(m)) => m.as_str(),
        Some(other) => {
            return Err(invalid(format!(
                "'method' must be a string, got {}; {METHODS}",
                truncate(&other.to_string(), 40)
            )));
        }
    };
    let params = match frame.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(other) => {
            return Err(invalid(format!(
                "'params' must be an object, got {}",
                truncate(&other.to_string(), 40)
            )));
        }
    };
    let method = match method {
        "subscribe" => {
            only(&params, &["streams", "history", "since", "epoch"], method).map_err(invalid)?;
            Method::Subscribe(Subscribe {
                streams: streams(&params).map_err(invalid)?,
                history: history(&params).map_err(invalid)?,
                since: since(&params).map_err(invalid)?,
                epoch: epoch(&params).map_err(invalid)?,
            })
        }
        "unsubscribe" => {
            only(&params, &["streams"], method).map_err(invalid)?;
            Method::Unsubscribe(streams(&params).map_err(invalid)?)
        }
        "list" => {
            only(&params, &[], method).map_err(invalid)?;
            Method::List
        }
        "assets" => {
            only(&params, &[], method).map_err(invalid)?;
            Method::Assets
        }
        other => {
            return Err(invalid(format!(
                "unknown method '{}'; {METHODS}",
                truncate(other, 40)
            )));
        }
    };
    Ok(Request { id, method })
}

/// Refuses params a method does not take (a misspelt `hitsory` would
/// otherwise be ignored without a word).
fn only(params: &Map<String, Value>, known: &[&str], method: &str) -> Result<(), String> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) if known.is_empty() => Err(format!(
            "unknown param '{}'; {method} takes none",
            truncate(k, 40)
        )),
        Some(k) => Err(format!(
            "unknown param '{}'; {method} takes: {}",
            truncate(k, 40),
            known.join(", ")
        )),
    }
}

pub(super) fn streams(params: &Map<String, Value>) -> Result<Vec<String>, String> {
    let Some(value) = params.get("streams") else {
        return Err("missing params.streams, a list of streams such as [\"EURUSD@point\"]".into());
    };
    let Value::Array(list) = value else {
        return Err(format!(
            "params.streams must be a list of strings, got {}",
            truncate(&value.to_string(), 40)
        ));
    };
    if list.is_empty() {
        return Err("params.streams is empty; name at least one stream".into());
    }
    list.iter()
        .map(|s| match s {
            Value::String(s) if s.chars().count() <= MAX_STREAM_CHARS => Ok(s.clone()),
            Value::String(s) => Err(format!(
                "stream '{}' is longer than {MAX_STREAM_CHARS} characters",
                truncate(s, 40)
            )),
            other => Err(format!(
                "params.streams must hold strings, got {}",
                truncate(&other.to_string(), 40)
            )),
        })
        .collect()
}

pub(super) fn history(params: &Map<String, Value>) -> Result<u32, String> {
    match params.get("history") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .filter(|&h| h <= MAX_HISTORY)
            .ok_or_else(|| {
                format!(
                    "params.history must be an integer from 0 to {MAX_HISTORY} (seconds), got {}",
                    truncate(&v.to_string(), 40)
                )
            }),
    }
}

pub(super) fn since(params: &Map<String, Value>) -> Result<Option<UnixSeconds>, String> {
    match params.get("since") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().filter(|&s| s >= 0).map(Some).ok_or_else(|| {
            format!(
                "params.since must be a Unix second (a non-negative integer), got {}",
                truncate(&v.to_string(), 40)
            )
        }),
    }
}

pub(super) fn epoch(params: &Map<String, Value>) -> Result<Option<String>, String> {
    match params.get("epoch") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(e)) if e.chars().count() <= MAX_EPOCH_CHARS => Ok(Some(e.clone())),
        Some(v) => Err(format!(
            "params.epoch must be the string a subscribe answer gave, got {}",
            truncate(&v.to_string(), 40)
        )),
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(text: &str) -> Refusal {
        match parse_request(text) {
            Err(r) => r,
            Ok(r) => panic!("{text} was accepted: {r:?}"),
        }
    }

    #[test]
    fn requests_parse() {
        let r = parse_request(
            r#"{"id":7,"method":"subscribe","params":{"streams":["EURUSD@point","usdjpy@kline_1m"],"history":600}}"#,
        )
        .unwrap();
        assert_eq!(r.id, json!(7));
        assert_eq!(
            r.method,
            Method::Subscribe(Subscribe {
                streams: vec!["EURUSD@point".into(), "usdjpy@kline_1m".into()],
                history: 600,
                since: None,
                epoch: None,
            })
        );
        let r = parse_request(
            r#"{"id":"a-1","method":"subscribe","params":{"streams":["EURUSD@point"],"since":1455883485,"epoch":"e1"}}"#,
        )
        .unwrap();
        assert_eq!(r.id, json!("a-1"));
        let Method::Subscribe(s) = r.method else {
            panic!("subscribe")
        };
        assert_eq!(
            (s.since, s.epoch.as_deref()),
            (Some(1_455_883_485), Some("e1"))
        );
        assert_eq!(
            parse_request(r#"{"id":1,"method":"list"}"#).unwrap().method,
            Method::List
        );
        assert_eq!(
            parse_request(r#"{"id":1,"method":"assets","params":{}}"#)
                .unwrap()
                .method,
            Method::Assets
        );
        assert_eq!(
            parse_request(
                r#"{"id":1,"method":"unsubscribe","params":{"streams":["EURUSD@point"]}}"#
            )
            .unwrap()
            .method,
            Method::Unsubscribe(vec!["EURUSD@point".into()])
        );
    }

    #[test]
    fn an_unreadable_frame_is_answered_with_a_null_id() {
        for text in [
            "hello",
            "[1]",
            r#"{"method":"list"}"#,
            r#"{"id":1.5,"method":"list"}"#,
            r#"{"id":{"a":1},"method":"list"}"#,
            r#"{"id":null,"method":"list"}"#,
            &format!(r#"{{"id":"{}","method":"list"}}"#, "x".repeat(37)),
        ] {
            let r = refused(text);
            assert_eq!(
                (r.id, r.kind),
                (Value::Null, ErrorType::ValidationError),
                "{text}"
            );
        }
        assert!(
            refused("hello")
                .text
                .starts_with("message is not valid JSON")
        );
    }

    #[test]
    fn a_bad_request_is_refused_under_its_id() {
        let cases = [
            (r#"{"id":3}"#, "missing 'method'"),
            (r#"{"id":3,"method":5}"#, "'method' must be a string"),
            (r#"{"id":3,"method":"foo"}"#, "unknown method 'foo'"),
            (
                r#"{"id":3,"method":"list","params":[1]}"#,
                "'params' must be an object",
            ),
            (
                r#"{"id":3,"method":"list","params":{"x":1}}"#,
                "unknown param 'x'; list takes none",
            ),
            (r#"{"id":3,"method":"subscribe"}"#, "missing params.streams"),
            (
                r#"{"id":3,"method":"subscribe","params":{"streams":"EURUSD@point"}}"#,
                "must be a list",
            ),
            (
                r#"{"id":3,"method":"subscribe","params":{"streams":[]}}"#,
                "is empty",
            ),
            (
                r#"{"id":3,"method":"subscribe","params":{"streams":[1]}}"#,
                "must hold strings",
            ),
            (
                r#"{"id":3,"method":"subscribe","params":{"streams":["a"],"history":1801}}"#,
                "from 0 to 1800",
            ),
            (
                r#"{"id":3,"method":"subscribe","params":{"streams":["a"],"history":-1}}"#,
                "from 0 to 1800",
            ),
            (
                r#"{"id":3,"method":"subscribe","params":{"streams":["a"],"since":"x"}}"#,
                "params.since",
            ),
            (
                r#"{"id":3,"method":"subscribe","params":{"streams":["a"],"epoch":5}}"#,
                "params.epoch",
            ),
            (
                r#"{"id":3,"method":"subscribe","params":{"streams":["a"],"hitsory":5}}"#,
                "unknown param 'hitsory'",
            ),
        ];
        for (text, says) in cases {
            let r = refused(text);
            assert_eq!(
                (r.id, r.kind),
                (json!(3), ErrorType::ValidationError),
                "{text}"
            );
            assert!(r.text.contains(says), "{text}: {}", r.text);
        }
        let long = format!(r#"{{"id":3,"method":"{}"}}"#, "x".repeat(10_000));
        assert!(refused(&long).text.len() < 200, "echoes are truncated");
    }
}
