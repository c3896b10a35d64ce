//! The seed protocol (docs/API.md, "WebSocket protocol"): `assets`,
//! `subscribe`, the asset's history, then a live point each second, on
//! `/api/v1/ws` and `/`. Frames are `{"action": ..., "message": {...}}`.

pub mod docs;

use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frame::{ErrorType, Frame, error_frame};
use super::grant::Grant;
use super::outbox::{Feed, Live};
use super::session::{End, Link, Protocol, Socket, catch_up};
use crate::domain::{Asset, AssetId, AssetList, UnixSeconds};

/// What a client asked for, or why it cannot be done.
#[derive(Debug, PartialEq)]
pub enum Request {
    Assets,
    Subscribe(AssetId),
}

#[derive(Debug, PartialEq)]
pub struct Refusal(pub ErrorType, pub String);

const ACTIONS: &str = "expected one of: assets, subscribe";

/// Decodes a client's text frame: never panics, whatever the text.
pub fn parse_request(text: &str) -> Result<Request, Refusal> {
    let invalid = |t: String| Refusal(ErrorType::ValidationError, t);
    let value: Value = serde_json::from_str(text)
        .map_err(|e| invalid(format!("message is not valid JSON: {e}")))?;
    let Value::Object(frame) = value else {
        return Err(invalid(
            "message must be a JSON object {\"action\": ..., \"message\": {...}}".into(),
        ));
    };
    let action = match frame.get("action") {
        None => return Err(invalid(format!("missing 'action'; {ACTIONS}"))),
        Some(Value::String(a)) => a.as_str(),
        Some(other) => {
            return Err(invalid(format!(
                "'action' must be a string, got {other}; {ACTIONS}"
            )));
        }
    };
    match action {
        "assets" => Ok(Request::Assets),
        "subscribe" => {
            let asset_id = frame.get("message").and_then(|m| m.get("assetId"));
            match asset_id {
                None => Err(invalid(
                    "subscribe needs message.assetId, an integer asset id".into(),
                )),
                Some(v) => v
                    .as_u64()
                    .and_then(|id| AssetId::try_from(id).ok())
                    .map(Request::Subscribe)
                    .ok_or_else(|| {
                        invalid(format!(
                            "assetId must be a non-negative integer, got {}",
                            truncate(&v.to_string(), 40)
                        ))
                    }),
            }
        }
        other => Err(invalid(format!(
            "unknown action '{}'; {ACTIONS}",
            truncate(other, 40)
        ))),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A v1 connection's state: which subscribe it is on.
#[derive(Debug, Default)]
pub struct V1 {
    /// What the connection's credential allows.
    grant: Grant,
    /// In the live fan-out (it has its history).
    subscribed: bool,
    /// Counts subscribes, so that the fan-out can tell this one from an earlier.
    generation: u64,
}

impl Protocol for V1 {
    async fn on_text<S: Socket>(&mut self, text: &str, link: &mut Link<'_, S>) -> Result<(), End> {
        match parse_request(text) {
            Ok(Request::Assets) => {
                let frame = Frame {
                    action: "assets",
                    message: AssetList::from_catalog(&link.streams.catalog),
                };
                link.send_text(frame.to_text()).await
            }
            Ok(Request::Subscribe(id)) => match link.streams.catalog.by_id(id) {
                Some(asset) if !self.grant.scope.allows(asset.id) => {
                    let text = format!("this connection's token does not allow {}", asset.name);
                    link.send_text(error_frame(ErrorType::Forbidden, &text))
                        .await
                }
                Some(asset) => self.subscribe(asset.clone(), link).await,
                None => {
                    let text = format!("unknown assetId {id}; the assets action lists them");
                    link.send_text(error_frame(ErrorType::NotFound, &text))
                        .await
                }
            },
            Err(Refusal(kind, text)) => link.send_text(error_frame(kind, &text)).await,
        }
    }

    fn error_frame(&self, kind: ErrorType, text: &str) -> Utf8Bytes {
        error_frame(kind, text)
    }

    fn is_live(&self) -> bool {
        self.subscribed
    }
}

impl V1 {
    /// A connection that may do what `grant` allows.
    pub fn granted(grant: Grant) -> Self {
        Self {
            grant,
            ..Self::default()
        }
    }

    /// Attaches to the live feed first, then reads the history: every point
    /// is in one or the other (or both, and then dropped from the live side).
    async fn subscribe<S: Socket>(
        &mut self,
        asset: Asset,
        link: &mut Link<'_, S>,
    ) -> Result<(), End> {
        // Replace any earlier subscription before anything else is sent.
        link.outbox.leave();
        self.subscribed = false;
        let streams = link.streams;
        let Some(mut live) = streams.hub.subscribe(asset.id) else {
            let frame = error_frame(ErrorType::NotFound, "asset has no live feed");
            return link.send_text(frame).await;
        };
        // Read after attaching: every point of the asset up to this second
        // is in the engine, every later one on `live`.
        let newest = streams.hub.latest_of(asset.id);
        let history = streams.history_of(asset.id, newest).await;
        let history = match history {
            Ok(h) => h,
            Err(e) => {
                let frame = error_frame(ErrorType::Internal, &e.to_string());
                return link.send_text(frame).await;
            }
        };
        // Compressed once for every subscriber of this second, where agreed.
        if link.outbox.deflates() {
            link.send_fragmented(history.deflated().clone(), true)
                .await?;
        } else {
            link.send_fragmented(history.frame.clone(), false).await?;
        }
        self.generation += 1;
        let mode = Live {
            feed: Feed::V1(asset.id),
            generation: self.generation,
            last: history.last.unwrap_or(UnixSeconds::MIN),
        };
        link.go_live(mode, |write| {
            catch_up(&mut live, |p| write(p.time, std::slice::from_ref(&p.wire)))
        })?;
        self.subscribed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        match parse_request(text) {
            Err(Refusal(ErrorType::ValidationError, t)) => t,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(r#"{"action":"assets","message":{}}"#),
            Ok(Request::Assets)
        );
        assert_eq!(parse_request(r#"{"action":"assets"}"#), Ok(Request::Assets));
        assert_eq!(
            parse_request(r#"{"action":"subscribe","message":{"assetId":3}}"#),
            Ok(Request::Subscribe(3))
        );
    }

    #[test]
    fn every_bad_frame_is_refused_clearly() {
        assert!(refusal("hello").starts_with("message is not valid JSON"));
        assert!(refusal("[1,2]").contains("JSON object"));
        assert!(refusal("{}").contains("missing 'action'"));
        assert!(refusal(r#"{"action":5}"#).contains("must be a string"));
        assert_eq!(
            refusal(r#"{"action":"foo","message":{}}"#),
            "unknown action 'foo'; expected one of: assets, subscribe"
        );
        assert!(refusal(r#"{"action":"subscribe"}"#).contains("message.assetId"));
        assert!(refusal(r#"{"action":"subscribe","message":{}}"#).contains("message.assetId"));
        for bad in [r#""1""#, "1.5", "-1", "null", "99999999999", "[1]"] {
            let frame = format!(r#"{{"action":"subscribe","message":{{"assetId":{bad}}}}}"#);
            assert!(refusal(&frame).contains("assetId must be"), "{bad}");
        }
        let long = format!(r#"{{"action":"{}"}}"#, "x".repeat(10_000));
        assert!(refusal(&long).len() < 200, "echoes are truncated");
    }
}
