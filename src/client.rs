//! `ratesd client`: a demo WebSocket client. It asks for the catalog,
//! subscribes to one asset, prints the history's size and span, then one
//! line per live point: `TIME NAME VALUE`.

use std::io::Write;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::config::ClientArgs;
use crate::domain::Symbol;

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
}

/// Runs until the server closes, `args.points` live points were printed,
/// or the caller drops the future.
pub async fn run(args: &ClientArgs, out: &mut impl Write) -> Result<(), ClientError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(args.url.as_str()).await?;
    ws.send(Message::text(
        json!({"action": "assets", "message": {}}).to_string(),
    ))
    .await?;
    let mut printed = 0u64;
    while let Some(msg) = ws.next().await {
        let text = match msg? {
            Message::Text(t) => t,
            Message::Close(frame) => {
                let why = frame
                    .map(|f| format!(" ({} {})", f.code, f.reason))
                    .unwrap_or_default();
                return Err(ClientError::Closed(why));
            }
            _ => continue,
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
