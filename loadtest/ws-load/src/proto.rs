//! The v2 protocol's frames (`/api/v2/ws`, "WebSocket protocol v2" in
//! shared/API.md): the requests ws-load sends, and the frames it reads,
//! parsed and checked against the contract. No I/O here, so that all of it
//! is unit-tested.

use serde_json::{Value, json};

/// `{"id":..,"method":"assets","params":{}}`
pub fn assets_request(id: u64) -> String {
    json!({"id": id, "method": "assets", "params": {}}).to_string()
}

/// `{"id":..,"method":"subscribe","params":{"streams":[..],"history":..}}`;
/// with `since` (a reconnect), `since` and, when known, `epoch` instead of
/// `history`.
pub fn subscribe_request(
    id: u64,
    streams: &[&str],
    history: u64,
    since: Option<i64>,
    epoch: Option<&str>,
) -> String {
    let mut params = json!({ "streams": streams });
    match since {
        Some(since) => {
            params["since"] = json!(since);
            if let Some(epoch) = epoch {
                params["epoch"] = json!(epoch);
            }
        }
        None => params["history"] = json!(history),
    }
    json!({"id": id, "method": "subscribe", "params": params}).to_string()
}

/// A frame the server sent, by its envelope.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// `{"stream":..,"data":{..}}`
    Data { stream: String, data: Value },
    /// `{"stream":..,"snapshot":{..}}`
    Snapshot { stream: String, snapshot: Value },
    /// `{"id":..,"result":{..}}`
    Answer { id: Value, result: Value },
    /// `{"id":..,"error":{"code":..,"message":..}}`
    Error {
        id: Value,
        code: String,
        message: String,
    },
}

/// Reads a text frame's envelope; `Err` says what is wrong with it.
pub fn parse(text: &str) -> Result<Frame, String> {
    let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else {
        return Err("not a JSON object".into());
    };
    if let Some(stream) = frame.remove("stream") {
        let Value::String(stream) = stream else {
            return Err("\"stream\" is not a string".into());
        };
        return match (frame.remove("data"), frame.remove("snapshot")) {
            (Some(data @ Value::Object(_)), None) => Ok(Frame::Data { stream, data }),
            (None, Some(snapshot @ Value::Object(_))) => Ok(Frame::Snapshot { stream, snapshot }),
            _ => Err(
                "a stream frame needs exactly one of \"data\" or \"snapshot\", an object".into(),
            ),
        };
    }
    let Some(id) = frame.remove("id") else {
        return Err("neither \"stream\" nor \"id\"".into());
    };
    if !(id.is_u64() || id.is_i64() || id.is_string() || id.is_null()) {
        return Err(format!("\"id\" {id} is not an integer, a string or null"));
    }
    match (frame.remove("result"), frame.remove("error")) {
        (Some(result @ Value::Object(_)), None) => Ok(Frame::Answer { id, result }),
        (None, Some(Value::Object(error))) => {
            let code = error.get("code").and_then(Value::as_str);
            let message = error.get("message").and_then(Value::as_str);
            match (code, message) {
                (Some(code), Some(message)) => Ok(Frame::Error {
                    id,
                    code: code.to_owned(),
                    message: message.to_owned(),
                }),
                _ => Err("an error without a string \"code\" and \"message\"".into()),
            }
        }
        _ => Err("an answer needs exactly one of \"result\" or \"error\", an object".into()),
    }
}

/// A point stream's live frame read without a full parse, for the fast
/// path: the stream and the point's second, when the frame starts
/// `{"stream":"<name>@point","data":{` and has a `"time":` of digits.
/// Anything else (another field order, say) is `None` and gets the full
/// parse.
pub fn fast_point(text: &str) -> Option<(&str, i64)> {
    let rest = text.strip_prefix(r#"{"stream":""#)?;
    let (stream, rest) = rest.split_once('"')?;
    if !stream.ends_with("@point") || !rest.starts_with(r#","data":{"#) {
        return None;
    }
    let (_, after) = rest.split_once(r#""time":"#)?;
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let time = after[..digits].parse().ok()?;
    Some((stream, time))
}

/// A point, as the contract has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub asset_name: String,
    pub asset_id: u64,
    pub time: i64,
    pub value: f64,
}

/// A point's object: `{"assetName","time","assetId","value"}`, checked
/// to be of `symbol`/`asset_id`.
pub fn point(v: &Value, symbol: &str, asset_id: u64) -> Result<Point, String> {
    let asset_name = v["assetName"].as_str().ok_or("no string \"assetName\"")?;
    let id = v["assetId"].as_u64().ok_or("no integer \"assetId\"")?;
    let time = v["time"].as_i64().ok_or("no integer \"time\"")?;
    let value = v["value"].as_f64().ok_or("no number \"value\"")?;
    if !asset_name.eq_ignore_ascii_case(symbol) {
        return Err(format!("assetName {asset_name:?} in a stream of {symbol}"));
    }
    if id != asset_id {
        return Err(format!(
            "assetId {id} in a stream of {symbol} (id {asset_id})"
        ));
    }
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("value {value}"));
    }
    Ok(Point {
        asset_name: asset_name.to_owned(),
        asset_id: id,
        time,
        value,
    })
}

/// A point stream's snapshot: its points (oldest first, each one second
/// after the other is checked by the caller) and its `recovered` flag
/// (`None` when absent).
pub fn point_snapshot(
    snapshot: &Value,
    symbol: &str,
    asset_id: u64,
) -> Result<(Vec<Point>, Option<bool>), String> {
    let points = snapshot["points"]
        .as_array()
        .ok_or("a point snapshot without a \"points\" list")?
        .iter()
        .map(|p| point(p, symbol, asset_id))
        .collect::<Result<Vec<_>, _>>()?;
    let recovered = match &snapshot["recovered"] {
        Value::Null => None,
        Value::Bool(b) => Some(*b),
        other => return Err(format!("\"recovered\" is {other}, not a boolean")),
    };
    Ok((points, recovered))
}

/// A candle, as the contract has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candle {
    pub open_time: i64,
    pub close_time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub count: u64,
    pub closed: bool,
}

/// A candle's object, with every field of the right type.
pub fn candle(v: &Value) -> Result<Candle, String> {
    let int = |k: &str| v[k].as_i64().ok_or_else(|| format!("no integer \"{k}\""));
    let num = |k: &str| v[k].as_f64().ok_or_else(|| format!("no number \"{k}\""));
    Ok(Candle {
        open_time: int("openTime")?,
        close_time: int("closeTime")?,
        open: num("open")?,
        high: num("high")?,
        low: num("low")?,
        close: num("close")?,
        count: v["count"].as_u64().ok_or("no integer \"count\"")?,
        closed: v["closed"].as_bool().ok_or("no boolean \"closed\"")?,
    })
}

impl Candle {
    /// What is wrong with this candle on its own, for buckets of
    /// `interval` seconds: alignment, closeTime, OHLC order, count.
    pub fn problem(&self, interval: i64) -> Option<String> {
        if self.open_time.rem_euclid(interval) != 0 {
            return Some(format!(
                "openTime {} not aligned to {interval} s",
                self.open_time
            ));
        }
        if self.close_time != self.open_time + interval - 1 {
            return Some(format!(
                "closeTime {} for openTime {} (expected {})",
                self.close_time,
                self.open_time,
                self.open_time + interval - 1
            ));
        }
        let prices = [self.open, self.high, self.low, self.close];
        if prices.iter().any(|p| !p.is_finite()) {
            return Some("a price that is not finite".into());
        }
        if self.low > self.open.min(self.close) || self.high < self.open.max(self.close) {
            return Some(format!(
                "open {} high {} low {} close {} out of order",
                self.open, self.high, self.low, self.close
            ));
        }
        if self.count == 0 || self.count > interval as u64 {
            return Some(format!("count {} for a {interval} s bucket", self.count));
        }
        None
    }

    /// The same candle apart from `closed`.
    pub fn same_values(&self, other: &Candle) -> bool {
        self.open_time == other.open_time
            && self.open == other.open
            && self.high == other.high
            && self.low == other.low
            && self.close == other.close
            && self.count == other.count
    }
}

/// A kline stream's snapshot: its candles, oldest first.
pub fn kline_snapshot(snapshot: &Value) -> Result<Vec<Candle>, String> {
    snapshot["candles"]
        .as_array()
        .ok_or("a kline snapshot without a \"candles\" list")?
        .iter()
        .map(candle)
        .collect()
}

/// A subscribe answer's `result`: the connection's streams and its epoch.
pub fn subscribe_result(result: &Value) -> Result<(Vec<String>, Option<String>), String> {
    let streams = result["streams"]
        .as_array()
        .ok_or("a subscribe result without a \"streams\" list")?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or("a stream that is not a string")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let epoch = match &result["epoch"] {
        Value::Null => None,
        Value::String(e) => Some(e.clone()),
        other => return Err(format!("\"epoch\" is {other}, not a string")),
    };
    Ok((streams, epoch))
}

/// An `assets` answer's `result`: `(id, name)` in the server's order.
pub fn assets_result(result: &Value) -> Result<Vec<(u64, String)>, String> {
    result["assets"]
        .as_array()
        .ok_or("an assets result without an \"assets\" list")?
        .iter()
        .map(|a| match (a["id"].as_u64(), a["name"].as_str()) {
            (Some(id), Some(name)) => Ok((id, name.to_owned())),
            _ => Err(format!("an asset without an integer id and a name: {a}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POINT: &str = r#"{"stream":"EURUSD@point","data":{"assetName":"EURUSD","time":1455883485,"assetId":1,"value":1.110948}}"#;
    const KLINE: &str = r#"{"stream":"EURUSD@kline_1m","data":{"openTime":1455883440,"closeTime":1455883499,"open":1.1,"high":1.2,"low":1.05,"close":1.15,"count":46,"closed":false}}"#;

    #[test]
    fn requests() {
        let sub = subscribe_request(7, &["EURUSD@point", "USDJPY@kline_1m"], 0, None, None);
        let v: Value = serde_json::from_str(&sub).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["method"], "subscribe");
        assert_eq!(
            v["params"]["streams"],
            json!(["EURUSD@point", "USDJPY@kline_1m"])
        );
        assert_eq!(v["params"]["history"], 0);
        assert!(v["params"].get("since").is_none());

        let resume = subscribe_request(2, &["EURUSD@point"], 0, Some(1455883485), Some("e1"));
        let v: Value = serde_json::from_str(&resume).unwrap();
        assert_eq!(v["params"]["since"], 1455883485);
        assert_eq!(v["params"]["epoch"], "e1");
        assert!(v["params"].get("history").is_none());

        let v: Value = serde_json::from_str(&assets_request(1)).unwrap();
        assert_eq!(v, json!({"id": 1, "method": "assets", "params": {}}));
    }

    #[test]
    fn fast_point_reads_stream_and_time() {
        assert_eq!(fast_point(POINT), Some(("EURUSD@point", 1455883485)));
        // Not the fast path's shape: the full parse reads them.
        assert_eq!(fast_point(KLINE), None);
        assert_eq!(
            fast_point(r#"{"data":{"time":1},"stream":"EURUSD@point"}"#),
            None
        );
        assert_eq!(
            fast_point(r#"{"stream":"EURUSD@point","snapshot":{"points":[]}}"#),
            None
        );
        assert_eq!(
            fast_point(r#"{"stream":"EURUSD@point","data":{"time":"x"}}"#),
            None
        );
    }

    #[test]
    fn envelopes() {
        let Ok(Frame::Data { stream, data }) = parse(POINT) else {
            panic!("a data frame")
        };
        assert_eq!(stream, "EURUSD@point");
        let p = point(&data, "EURUSD", 1).unwrap();
        assert_eq!((p.time, p.value), (1455883485, 1.110948));
        assert!(point(&data, "USDJPY", 2).unwrap_err().contains("assetName"));
        assert!(point(&data, "eurusd", 3).unwrap_err().contains("assetId"));

        let snap = r#"{"stream":"EURUSD@point","snapshot":{"points":[{"assetName":"EURUSD","time":10,"assetId":1,"value":1.1}],"recovered":true}}"#;
        let Ok(Frame::Snapshot { snapshot, .. }) = parse(snap) else {
            panic!("a snapshot")
        };
        let (points, recovered) = point_snapshot(&snapshot, "EURUSD", 1).unwrap();
        assert_eq!(
            (points.len(), points[0].time, recovered),
            (1, 10, Some(true))
        );
        let (_, recovered) = point_snapshot(&json!({"points": []}), "EURUSD", 1).unwrap();
        assert_eq!(recovered, None);
        assert!(point_snapshot(&json!({"points": [], "recovered": "yes"}), "EURUSD", 1).is_err());
        assert!(point_snapshot(&json!({"candles": []}), "EURUSD", 1).is_err());

        let answer = r#"{"id":1,"result":{"streams":["EURUSD@point"],"epoch":"abc"}}"#;
        let Ok(Frame::Answer { id, result }) = parse(answer) else {
            panic!("an answer")
        };
        assert_eq!(id, 1);
        assert_eq!(
            subscribe_result(&result).unwrap(),
            (vec!["EURUSD@point".to_owned()], Some("abc".to_owned()))
        );

        let error = r#"{"id":7,"error":{"code":"NotFound","message":"unknown symbol"}}"#;
        assert_eq!(
            parse(error).unwrap(),
            Frame::Error {
                id: json!(7),
                code: "NotFound".into(),
                message: "unknown symbol".into()
            }
        );
        let assets = json!({"assets":[{"id":1,"name":"EURUSD"},{"id":2,"name":"USDJPY"}]});
        assert_eq!(
            assets_result(&assets).unwrap(),
            vec![(1, "EURUSD".into()), (2, "USDJPY".into())]
        );

        for bad in [
            "not json",
            "[1]",
            r#"{"stream":1,"data":{}}"#,
            r#"{"stream":"EURUSD@point"}"#,
            r#"{"stream":"EURUSD@point","data":{},"snapshot":{}}"#,
            r#"{"id":1}"#,
            r#"{"id":1.5,"result":{}}"#,
            r#"{"id":1,"error":{"code":"NotFound"}}"#,
            r#"{"action":"point","message":{}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn candles() {
        let Ok(Frame::Data { data, .. }) = parse(KLINE) else {
            panic!("a data frame")
        };
        let c = candle(&data).unwrap();
        assert_eq!((c.open_time, c.count, c.closed), (1455883440, 46, false));
        assert_eq!(c.problem(60), None);
        let bad = |f: fn(&mut Candle)| {
            let mut b = c.clone();
            f(&mut b);
            b.problem(60)
        };
        assert!(bad(|b| b.open_time += 1).unwrap().contains("aligned"));
        assert!(bad(|b| b.close_time += 1).unwrap().contains("closeTime"));
        assert!(bad(|b| b.high = 1.0).unwrap().contains("out of order"));
        assert!(bad(|b| b.low = 1.12).unwrap().contains("out of order"));
        assert!(bad(|b| b.count = 0).unwrap().contains("count"));
        assert!(bad(|b| b.count = 61).unwrap().contains("count"));
        assert!(candle(&json!({"openTime": 0})).is_err());
        assert_eq!(
            kline_snapshot(&json!({"candles": [data]})).unwrap(),
            vec![c]
        );
    }
}
