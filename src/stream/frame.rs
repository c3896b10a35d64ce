//! What goes over the wire of the v1 protocol: the `{"action", "message"}`
//! envelope of every frame, the error frame and its kinds, the close
//! codes, and the frames the hub and the history cache prepare once for
//! every subscriber (a live point; an asset's history).

use bytes::Bytes;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WireFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use utoipa::ToSchema;

use crate::domain::Point;

/// Close codes (RFC 6455 section 7.4.1).
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
}

/// The kinds of error a client is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorType {
    ValidationError,
    NotFound,
    RateLimited,
    Internal,
}

/// `{"action": ..., "message": ...}`, the frame of every WebSocket message.
#[derive(Serialize)]
pub struct Frame<'a, T: Serialize> {
    pub action: &'a str,
    pub message: T,
}

impl<T: Serialize> Frame<'_, T> {
    pub fn to_text(&self) -> Utf8Bytes {
        serde_json::to_string(self).unwrap_or_default().into()
    }
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    error_type: ErrorType,
    error_text: &'a str,
}

/// `{"action":"error","message":{"error_type":...,"error_text":...}}`
pub fn error_frame(error_type: ErrorType, text: &str) -> Utf8Bytes {
    Frame {
        action: "error",
        message: ErrorMessage {
            error_type,
            error_text: text,
        },
    }
    .to_text()
}

/// The whole WebSocket frame (header and payload) of
/// `{"action":"point","message":{...}}`, encoded once for every subscriber.
pub fn point_wire(point: &Point) -> Bytes {
    let text = Frame {
        action: "point",
        message: point,
    }
    .to_text();
    let frame = WireFrame::message(Bytes::from(text), OpCode::Data(Data::Text), true);
    let mut wire = Vec::with_capacity(frame.len());
    // Writing into a Vec cannot fail.
    let _ = frame.format(&mut wire);
    wire.into()
}

/// `{"action":"asset_history","message":{"points":[...]}}` from the stored
/// point JSON, checked but not parsed into points (a window of 1800 points
/// is 130 KB); an error when a stored point is not JSON.
pub fn history_frame(members: &[String]) -> Result<Bytes, serde_json::Error> {
    /// A run of JSON texts that serialises as an array of them, verbatim.
    struct Verbatim<'a>(&'a [String]);
    impl Serialize for Verbatim<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for m in self.0 {
                // Stored points are our own JSON, written by the tick script.
                let raw: &serde_json::value::RawValue =
                    serde_json::from_str(m).map_err(serde::ser::Error::custom)?;
                seq.serialize_element(raw)?;
            }
            seq.end()
        }
    }
    #[derive(Serialize)]
    struct History<'a> {
        points: Verbatim<'a>,
    }
    let frame = Frame {
        action: "asset_history",
        message: History {
            points: Verbatim(members),
        },
    };
    serde_json::to_vec(&frame).map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn error_frames_follow_the_contract() {
        let f = error_frame(ErrorType::NotFound, "unknown assetId 9");
        let v: Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"action":"error","message":{"error_type":"NotFound","error_text":"unknown assetId 9"}})
        );
    }

    #[test]
    fn history_frame_wraps_stored_points() {
        let members = vec![
            r#"{"assetName":"EURUSD","time":1,"assetId":1,"value":1.1}"#.to_owned(),
            r#"{"assetName":"EURUSD","time":2,"assetId":1,"value":1.2}"#.to_owned(),
        ];
        let frame = history_frame(&members).unwrap();
        let v: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(v["action"], "asset_history");
        assert_eq!(v["message"]["points"][1]["time"], 2);
        assert!(
            std::str::from_utf8(&frame).unwrap().contains(&members[0]),
            "stored points go out verbatim"
        );
        let empty: Value = serde_json::from_slice(&history_frame(&[]).unwrap()).unwrap();
        assert!(history_frame(&["{oops".to_owned()]).is_err());
        assert_eq!(empty["message"]["points"], serde_json::json!([]));
    }

    #[test]
    fn a_point_frame_is_one_final_text_frame() {
        let point = Point {
            asset_name: "EURUSD".into(),
            time: 5,
            asset_id: 1,
            value: 1.5,
        };
        let wire = point_wire(&point);
        assert_eq!(wire[0], 0x81, "FIN and the text opcode");
        let payload = std::str::from_utf8(&wire[2..]).unwrap();
        assert_eq!(
            payload,
            r#"{"action":"point","message":{"assetName":"EURUSD","time":5,"assetId":1,"value":1.5}}"#
        );
    }
}
