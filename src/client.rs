//! `ratesd client`: a demo WebSocket client.
//!
//! In v1 (the default) it asks for the catalog, subscribes to one asset,
//! prints the history's size and span, then one line per live point:
//! `TIME NAME VALUE`.
//!
//! With `--v2` it subscribes to all its `--stream`s in one request on
//! `/api/v2/ws` and prints one line per frame: the answer, each stream's
//! snapshot as a summary, then each live datum prefixed by its stream
//! (`EURUSD@point TIME VALUE`, `EURUSD@kline_1m OPEN_TIME o= h= l= c= n=
//! forming|closed`). An error answer ends it with an error.

use std::io::Write;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::config::ClientArgs;
use crate::domain::Symbol;

/// Where the v1 protocol lives; `/` speaks it too.
const V1_PATH: &str = "/api/v1/ws";
/// Where the v2 protocol lives.
const V2_PATH: &str = "/api/v2/ws";
/// The id of the client's one v2 request.
const SUBSCRIBE_ID: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
    #[error("server closed the connection{0}")]
    Closed(String),
    #[error("no asset '{0}' in the server's catalog")]
    UnknownAsset(String),
    #[error("server error: {0}")]
    Server(String),
    #[error("--key: not something an HTTP header can carry")]
    BadKey,
}

/// Runs until the server closes, `args.points` live points were printed,
/// or the caller drops the future.
pub async fn run(args: &ClientArgs, out: &mut impl Write) -> Result<(), ClientError> {
    if args.v2 {
        run_v2(args, out).await
    } else {
        run_v1(args, out).await
    }
}

async fn run_v1(args: &ClientArgs, out: &mut impl Write) -> Result<(), ClientError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(request(args.url.as_str(), args)?).await?;
    ws.send(Message::text(
        json!({"action": "assets", "message": {}}).to_string(),
    ))
    .await?;
    let mut printed = 0u64;
    while let Some(msg) = ws.next().await {
        let Some(frame) = json_frame(msg?)? else {
            continue;
        };
        let message = &frame["message"];
        match frame["action"].as_str() {
            Some("assets") => {
                let id = pick_asset(message, &args.asset)?;
                let subscribe = json!({"action": "subscribe", "message": {"assetId": id}});
                ws.send(Message::text(subscribe.to_string())).await?;
            }
            Some("asset_history") => {
                let points = message["points"].as_array().cloned().unwrap_or_default();
                match (points.first(), points.last()) {
                    (Some(first), Some(last)) => writeln!(
                        out,
                        "history: {} points from {} to {}",
                        points.len(),
                        first["time"],
                        last["time"]
                    )?,
                    _ => writeln!(out, "history: 0 points")?,
                }
            }
            Some("point") => {
                writeln!(
                    out,
                    "{} {} {}",
                    message["time"],
                    message["assetName"].as_str().unwrap_or("?"),
                    message["value"]
                )?;
                out.flush()?;
                printed += 1;
                if args.points.is_some_and(|n| printed >= n) {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            }
            Some("error") => {
                let text = message["error_text"].as_str().unwrap_or("unknown error");
                return Err(ClientError::Server(text.to_owned()));
            }
            _ => {}
        }
    }
    Err(ClientError::Closed(String::new()))
}

/// `--v2`: one subscribe for every stream, then a line per frame.
async fn run_v2(args: &ClientArgs, out: &mut impl Write) -> Result<(), ClientError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(request(&v2_url(&args.url), args)?).await?;
    let streams = if args.streams.is_empty() {
        vec![format!("{}@point", args.asset)]
    } else {
        args.streams.clone()
    };
    let mut params = json!({"streams": streams});
    if let Some(seconds) = args.history {
        params["history"] = json!(seconds);
    }
    let subscribe = json!({"id": SUBSCRIBE_ID, "method": "subscribe", "params": params});
    ws.send(Message::text(subscribe.to_string())).await?;
    let mut printed = 0u64;
    while let Some(msg) = ws.next().await {
        let Some(frame) = json_frame(msg?)? else {
            continue;
        };
        if let Some(error) = frame.get("error") {
            return Err(ClientError::Server(error_text(error)));
        }
        if let Some(result) = frame.get("result") {
            writeln!(out, "{}", result_line(result))?;
            continue;
        }
        let stream = frame["stream"].as_str().unwrap_or("?");
        if let Some(snapshot) = frame.get("snapshot") {
            writeln!(out, "{}", snapshot_line(stream, snapshot))?;
        } else if let Some(data) = frame.get("data") {
            writeln!(out, "{}", data_line(stream, data))?;
            out.flush()?;
            printed += 1;
            if args.points.is_some_and(|n| printed >= n) {
                let _ = ws.close(None).await;
                return Ok(());
            }
        }
    }
    Err(ClientError::Closed(String::new()))
}

/// A text frame's JSON (`None` for other frames and text that is not
/// JSON); a close frame ends the client.
fn json_frame(msg: Message) -> Result<Option<Value>, ClientError> {
    match msg {
        Message::Text(text) => Ok(serde_json::from_str(text.as_str()).ok()),
        Message::Close(frame) => {
            let why = frame
                .map(|f| format!(" ({} {})", f.code, f.reason))
                .unwrap_or_default();
            Err(ClientError::Closed(why))
        }
        _ => Ok(None),
    }
}

/// The v2 endpoint for the `--url` given: a URL on the v1 path
/// (`/api/v1/ws`, or `/` as old clients write it) moves to `/api/v2/ws`;
/// any other path is taken as the v2 endpoint itself (a proxy's path, or
/// `/api/v2/ws` already). A URL that does not parse is left to the connect
/// to refuse.
pub fn v2_url(url: &str) -> String {
    let Ok(uri) = url.parse::<Uri>() else {
        return url.to_owned();
    };
    if !matches!(uri.path(), "" | "/" | V1_PATH) {
        return url.to_owned();
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut parts = uri.into_parts();
    parts.path_and_query = format!("{V2_PATH}{query}").parse().ok();
    Uri::from_parts(parts).map_or_else(|_| url.to_owned(), |u| u.to_string())
}

/// A subscribe's answer: `subscribed: S1 S2 (epoch E)`.
fn result_line(result: &Value) -> String {
    let streams = result["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s.as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    match result["epoch"].as_str() {
        Some(epoch) => format!("subscribed: {streams} (epoch {epoch})"),
        None => format!("subscribed: {streams}"),
    }
}

/// A snapshot in one line: `STREAM snapshot: N points FIRST..LAST
/// recovered` (or `N candles`, with the candles' open times).
fn snapshot_line(stream: &str, snapshot: &Value) -> String {
    if let Some(ticker) = snapshot.get("ticker") {
        return match ticker {
            Value::Null => format!("{stream} snapshot: no ticker yet"),
            t => format!("{stream} snapshot: {}", ticker_text(t)),
        };
    }
    if let Some(tickers) = snapshot.get("tickers").and_then(Value::as_array) {
        return format!(
            "{stream} snapshot: {} tickers at {}",
            tickers.len(),
            snapshot["time"]
        );
    }
    let (kind, items, time) = match (snapshot.get("candles"), snapshot.get("frames")) {
        (Some(candles), _) => ("candles", candles, "openTime"),
        (None, Some(frames)) => ("seconds", frames, "time"),
        (None, None) => ("points", &snapshot["points"], "time"),
    };
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut line = format!("{stream} snapshot: {} {kind}", items.len());
    if let (Some(first), Some(last)) = (items.first(), items.last()) {
        line += &format!(" {}..{}", first[time], last[time]);
    }
    match snapshot["recovered"].as_bool() {
        Some(true) => line += " recovered",
        Some(false) => line += " NOT recovered (a hole before it)",
        None => {}
    }
    line
}

/// A live datum: `STREAM TIME VALUE` for a point, `STREAM OPEN_TIME o= h=
/// l= c= n= forming|closed` for a candle.
fn data_line(stream: &str, data: &Value) -> String {
    if let Some(points) = data.get("points").and_then(Value::as_array) {
        let values: Vec<String> = points
            .iter()
            .map(|p| format!("{}={}", p["assetName"].as_str().unwrap_or("?"), p["value"]))
            .collect();
        return format!("{stream} {} {}", data["time"], values.join(" "));
    }
    if let Some(tickers) = data.get("tickers").and_then(Value::as_array) {
        return format!("{stream} {} {} tickers", data["time"], tickers.len());
    }
    if data.get("changePercent").is_some() {
        return format!("{stream} {}", ticker_text(data));
    }
    if data.get("openTime").is_some() {
        let state = if data["closed"] == true {
            "closed"
        } else {
            "forming"
        };
        format!(
            "{stream} {} o={} h={} l={} c={} n={} {state}",
            data["openTime"], data["open"], data["high"], data["low"], data["close"], data["count"]
        )
    } else {
        format!("{stream} {} {}", data["time"], data["value"])
    }
}

/// A ticker: `CLOSE_TIME last=.. change=..% h=.. l=.. n=..`.
fn ticker_text(t: &Value) -> String {
    format!(
        "{} last={} change={}% h={} l={} n={}",
        t["closeTime"], t["last"], t["changePercent"], t["high"], t["low"], t["count"]
    )
}

/// An error answer's `CODE: MESSAGE`.
fn error_text(error: &Value) -> String {
    format!(
        "{}: {}",
        error["code"].as_str().unwrap_or("?"),
        error["message"].as_str().unwrap_or("unknown error")
    )
}

/// The id of the asset named (in any spelling) or numbered by `wanted`.
fn pick_asset(catalog: &Value, wanted: &str) -> Result<u64, ClientError> {
    let assets = catalog["assets"].as_array().cloned().unwrap_or_default();
    let by_id = wanted.trim().parse::<u64>().ok();
    let by_name = Symbol::parse(wanted).ok();
    assets
        .iter()
        .find(|a| {
            by_id.is_some_and(|id| a["id"].as_u64() == Some(id))
                || by_name
                    .as_ref()
                    .is_some_and(|s| a["name"].as_str() == Some(s.as_str()))
        })
        .and_then(|a| a["id"].as_u64())
        .ok_or_else(|| ClientError::UnknownAsset(wanted.to_owned()))
}

/// The upgrade request to `url`, with the key or token (`--key`) as
/// `Authorization: Bearer`.
fn request(
    url: &str,
    args: &ClientArgs,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, ClientError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut request = url.into_client_request()?;
    if let Some(key) = args.key.as_deref() {
        let value = HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| ClientError::BadKey)?;
        request.headers_mut().insert("authorization", value);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_goes_as_a_bearer_and_nowhere_else() {
        use clap::Parser;
        let args = |extra: &[&str]| {
            let argv = ["ratesd client"].iter().chain(extra).copied();
            crate::config::ClientCli::try_parse_from(argv).unwrap().args
        };
        let keyed = request("ws://127.0.0.1:1/api/v1/ws", &args(&["--key", "rk_abc"])).unwrap();
        assert_eq!(keyed.headers()["authorization"], "Bearer rk_abc");
        assert!(!keyed.uri().to_string().contains("rk_abc"));
        let plain = request("ws://127.0.0.1:1/api/v1/ws", &args(&[])).unwrap();
        assert!(plain.headers().get("authorization").is_none());
        assert!(matches!(
            request("ws://127.0.0.1:1/", &args(&["--key", "bad\nkey"])),
            Err(ClientError::BadKey)
        ));
    }

    #[test]
    fn assets_are_picked_by_any_spelling_or_id() {
        let catalog = json!({"assets": [{"id": 1, "name": "EURUSD"}, {"id": 2, "name": "USDJPY"}]});
        assert_eq!(pick_asset(&catalog, "usd-jpy").unwrap(), 2);
        assert_eq!(pick_asset(&catalog, "1").unwrap(), 1);
        assert!(matches!(
            pick_asset(&catalog, "GBPUSD"),
            Err(ClientError::UnknownAsset(_))
        ));
    }

    #[test]
    fn the_v1_path_moves_to_v2_and_other_paths_stay() {
        for (given, v2) in [
            (
                "ws://127.0.0.1:8080/api/v1/ws",
                "ws://127.0.0.1:8080/api/v2/ws",
            ),
            ("ws://host:8080/", "ws://host:8080/api/v2/ws"),
            ("ws://host:8080", "ws://host:8080/api/v2/ws"),
            (
                "wss://host/api/v1/ws?token=x",
                "wss://host/api/v2/ws?token=x",
            ),
            ("ws://host/api/v2/ws", "ws://host/api/v2/ws"),
            ("wss://proxy/rates/ws", "wss://proxy/rates/ws"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(v2_url(given), v2, "{given}");
        }
    }

    #[test]
    fn v2_frames_print_as_one_line_each() {
        let point =
            json!({"assetName": "EURUSD", "time": 1455883485, "assetId": 1, "value": 1.110948});
        assert_eq!(
            data_line("EURUSD@point", &point),
            "EURUSD@point 1455883485 1.110948"
        );
        let candle = json!({"openTime": 1455883440, "closeTime": 1455883499, "open": 151.2,
            "high": 151.31, "low": 151.105, "close": 151.3, "count": 45, "closed": false});
        assert_eq!(
            data_line("USDJPY@kline_1m", &candle),
            "USDJPY@kline_1m 1455883440 o=151.2 h=151.31 l=151.105 c=151.3 n=45 forming"
        );
        let mut closed = candle;
        closed["closed"] = json!(true);
        assert!(data_line("USDJPY@kline_1m", &closed).ends_with(" n=45 closed"));
    }

    #[test]
    fn v2_snapshots_are_summed_up() {
        let points = json!({"points": [
            {"assetName": "EURUSD", "time": 100, "assetId": 1, "value": 1.1},
            {"assetName": "EURUSD", "time": 101, "assetId": 1, "value": 1.2}],
            "recovered": true});
        assert_eq!(
            snapshot_line("EURUSD@point", &points),
            "EURUSD@point snapshot: 2 points 100..101 recovered"
        );
        assert_eq!(
            snapshot_line("EURUSD@point", &json!({"points": [], "recovered": false})),
            "EURUSD@point snapshot: 0 points NOT recovered (a hole before it)"
        );
        let candles =
            json!({"candles": [{"openTime": 60, "close": 1.0}, {"openTime": 120, "close": 1.1}]});
        assert_eq!(
            snapshot_line("EURUSD@kline_1m", &candles),
            "EURUSD@kline_1m snapshot: 2 candles 60..120"
        );
    }

    #[test]
    fn v2_answers_print_their_streams_and_errors_their_code() {
        let result = json!({"streams": ["EURUSD@point", "USDJPY@kline_1m"], "epoch": "e1"});
        assert_eq!(
            result_line(&result),
            "subscribed: EURUSD@point USDJPY@kline_1m (epoch e1)"
        );
        let error = json!({"code": "NotFound", "message": "unknown symbol 'XXXYYY' in stream 'XXXYYY@point'"});
        assert_eq!(
            error_text(&error),
            "NotFound: unknown symbol 'XXXYYY' in stream 'XXXYYY@point'"
        );
    }
}
