//! What goes over the wire: the v1 protocol's `{"action", "message"}`
//! envelope of every frame, the error kinds both protocols share, the close
//! codes, the frames the hub and the history cache prepare once for every
//! subscriber (a live point; an asset's history), and the v2 stream frames
//! the hub prepares (`{"stream": ..., "data": ...}`).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WireFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use utoipa::ToSchema;

use super::deflate::{MIN_COMPRESSED, compress};
use crate::domain::{Interval, Point};

/// Close codes (RFC 6455 section 7.4.1).
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
    /// The connection's token expired (ratesd's own, in the 4000s).
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The connection's API key was revoked.
    pub const KEY_REVOKED: u16 = 4003;
}

/// The kinds of error a client is told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorType {
    ValidationError,
    NotFound,
    /// The connection's token does not allow the asset.
    Forbidden,
    /// The connection's token expired (an event stream's last event).
    Unauthorized,
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

/// A server frame encoded once for every subscriber and every transport:
/// its WebSocket frame at once, its event-stream event when an
/// event-stream subscriber first asks for it (the same JSON, sliced out of
/// the WebSocket frame).
#[derive(Debug, Clone)]
pub struct Encoded(Arc<EncodedInner>);

#[derive(Debug)]
struct EncodedInner {
    /// The whole WebSocket text frame.
    ws: Bytes,
    /// The JSON, a slice of `ws`.
    json: Bytes,
    /// `event: data\ndata: <json>\n\n`, made once, on first use.
    sse: OnceLock<Bytes>,
    /// The WebSocket frame compressed (a large frame, for connections that
    /// agreed to `permessage-deflate`), made once, on first use.
    deflated: OnceLock<Bytes>,
}

impl Encoded {
    /// The frame of `json` (one line of JSON text).
    pub fn json(json: Bytes) -> Self {
        let ws = text_wire(json);
        let json = ws.slice(ws.len() - json_len(&ws)..);
        Self(Arc::new(EncodedInner {
            ws,
            json,
            sse: OnceLock::new(),
            deflated: OnceLock::new(),
        }))
    }

    /// Arbitrary bytes as both encodings (tests of the outbox).
    #[cfg(test)]
    pub fn raw(bytes: Bytes) -> Self {
        Self(Arc::new(EncodedInner {
            ws: bytes.clone(),
            json: bytes,
            sse: OnceLock::new(),
            deflated: OnceLock::new(),
        }))
    }

    /// The WebSocket frame.
    pub fn ws(&self) -> &Bytes {
        &self.0.ws
    }

    /// The WebSocket frame for a connection that agreed to compression
    /// (`deflate`) or not: a large frame compressed, once for all.
    pub fn ws_for(&self, deflate: bool) -> &Bytes {
        if !compresses(deflate, self.0.json.len()) {
            return &self.0.ws;
        }
        self.0.deflated.get_or_init(|| deflated_text(&self.0.json))
    }

    /// The event-stream event (`event: data`), with no `id` (a
    /// connection's own: it goes before it).
    pub fn sse(&self) -> &Bytes {
        self.0
            .sse
            .get_or_init(|| sse_event(Event::Data, &self.0.json))
    }
}

/// The payload length of a server's (unmasked) WebSocket frame.
fn json_len(ws: &[u8]) -> usize {
    let len = match ws.get(1).map(|b| b & 0x7f) {
        Some(126) => ws
            .get(2..4)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
        Some(127) => ws
            .get(2..10)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| usize::try_from(u64::from_be_bytes(b)).unwrap_or(0)),
        Some(n) => usize::from(n),
        None => 0,
    };
    len.min(ws.len())
}

/// What a v2 message is, which an event stream names in its `event:`
/// field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A request's answer (`{"id":..,"result":..}`); an event stream's
    /// only one is its subscribe's.
    Answer,
    /// A request's refusal (`{"id":..,"error":..}`).
    Error,
    /// A stream's snapshot.
    Snapshot,
    /// A stream's live data.
    Data,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Self::Answer => "subscribed",
            Self::Error => "error",
            Self::Snapshot => "snapshot",
            Self::Data => "data",
        }
    }
}

/// A whole event-stream event of `json` (one line: serde_json writes no
/// newline).
pub fn sse_event(event: Event, json: &[u8]) -> Bytes {
    let name = event.name();
    let mut out = Vec::with_capacity(json.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// The frame of `{"action":"point","message":{...}}`, encoded once for
/// every subscriber.
pub fn point_wire(point: &Point) -> Encoded {
    let text = Frame {
        action: "point",
        message: point,
    }
    .to_text();
    Encoded::json(Bytes::from(text))
}

/// The whole WebSocket frame (header and payload) of one final text frame.
pub fn text_wire(payload: Bytes) -> Bytes {
    wire(payload, Data::Text, true)
}

/// The whole WebSocket frame (header and payload) of a data frame: the
/// session writes its large messages as such, past tungstenite, whose
/// write buffer would otherwise keep the largest message's size for the
/// connection's life.
pub fn wire(payload: Bytes, opcode: Data, fin: bool) -> Bytes {
    wire_with(payload, opcode, fin, false)
}

/// Whether a message of `len` bytes goes compressed to a connection that
/// agreed to `permessage-deflate` (`deflate`): small ones never do.
pub fn compresses(deflate: bool, len: usize) -> bool {
    deflate && len >= MIN_COMPRESSED
}

/// A text message `json` as one compressed frame (RSV1 set).
pub fn deflated_text(json: &[u8]) -> Bytes {
    wire_with(compress(json), Data::Text, true, true)
}

/// As [`wire`]; `compressed` marks the first frame of a message whose
/// payload is deflated (RSV1, `permessage-deflate`).
pub fn wire_with(payload: Bytes, opcode: Data, fin: bool, compressed: bool) -> Bytes {
    let mut frame = WireFrame::message(payload, OpCode::Data(opcode), fin);
    frame.header_mut().rsv1 = compressed;
    let mut wire = Vec::with_capacity(frame.len());
    // Writing into a Vec cannot fail.
    let _ = frame.format(&mut wire);
    wire.into()
}

/// The whole WebSocket close frame of `code` and `reason` (cut to the 123
/// bytes a close frame's reason may have).
pub fn close_wire(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = WireFrame::close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_owned().into(),
    }));
    let mut wire = Vec::with_capacity(frame.len());
    // Writing into a Vec cannot fail.
    let _ = frame.format(&mut wire);
    wire.into()
}

/// A v2 stream's name: `EURUSD@point`, or `EURUSD@kline_1m` for `kline`.
pub fn stream_name(asset_name: &str, kline: Option<Interval>) -> String {
    match kline {
        None => format!("{asset_name}@point"),
        Some(interval) => format!("{asset_name}@kline_{interval}"),
    }
}

/// An asset's ticker stream: `EURUSD@ticker`.
pub fn ticker_name(asset_name: &str) -> String {
    format!("{asset_name}@ticker")
}

/// The whole market's point stream.
pub const ALL_POINTS: &str = "!all@point";
/// The whole market's ticker stream.
pub const ALL_TICKERS: &str = "!all@ticker";

/// `{"stream": ..., "data": ...}`, a v2 stream's live frame.
#[derive(Serialize)]
struct StreamData<'a, T: Serialize> {
    stream: &'a str,
    data: T,
}

/// A v2 stream's live `data` frame, encoded once for every subscriber.
pub fn stream_wire<T: Serialize>(stream: &str, data: T) -> Encoded {
    // Serialising our own plain structs into a Vec cannot fail.
    let text = serde_json::to_vec(&StreamData { stream, data }).unwrap_or_default();
    Encoded::json(Bytes::from(text))
}

/// `{"action":"asset_history","message":{"points":[...]}}`.
pub fn history_frame(points: &[Point]) -> Bytes {
    #[derive(Serialize)]
    struct History<'a> {
        points: &'a [Point],
    }
    let frame = Frame {
        action: "asset_history",
        message: History { points },
    };
    // Serialising our own plain structs into a Vec cannot fail.
    serde_json::to_vec(&frame)
        .map(Bytes::from)
        .unwrap_or_default()
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
    fn history_frame_wraps_points() {
        let point = |time, value| Point {
            asset_name: "EURUSD".into(),
            time,
            asset_id: 1,
            value,
        };
        let frame = history_frame(&[point(1, 1.1), point(2, 1.2)]);
        let v: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(v["action"], "asset_history");
        assert_eq!(
            v["message"]["points"][1],
            serde_json::json!({"assetName":"EURUSD","time":2,"assetId":1,"value":1.2})
        );
        let empty: Value = serde_json::from_slice(&history_frame(&[])).unwrap();
        assert_eq!(empty["message"]["points"], serde_json::json!([]));
    }

    #[test]
    fn a_stream_frame_is_one_final_text_frame() {
        let point = Point {
            asset_name: "EURUSD".into(),
            time: 5,
            asset_id: 1,
            value: 1.5,
        };
        let encoded = stream_wire(&stream_name("EURUSD", None), &point);
        let wire = encoded.ws();
        assert_eq!(wire[0], 0x81, "FIN and the text opcode");
        let json = r#"{"stream":"EURUSD@point","data":{"assetName":"EURUSD","time":5,"assetId":1,"value":1.5}}"#;
        assert_eq!(std::str::from_utf8(&wire[2..]).unwrap(), json);
        assert_eq!(
            std::str::from_utf8(encoded.sse()).unwrap(),
            format!("event: data\ndata: {json}\n\n")
        );
        assert_eq!(stream_name("USDJPY", Some(Interval::H4)), "USDJPY@kline_4h");
    }

    #[test]
    fn long_frames_are_sliced_to_their_json_for_event_streams() {
        for len in [125, 126, 300, 65_535, 65_536, 200_000] {
            let json = format!("\"{}\"", "x".repeat(len - 2));
            let encoded = Encoded::json(Bytes::from(json.clone()));
            let sse = std::str::from_utf8(encoded.sse()).unwrap();
            assert_eq!(sse, format!("event: data\ndata: {json}\n\n"), "{len}");
        }
    }

    #[test]
    fn a_point_frame_is_one_final_text_frame() {
        let point = Point {
            asset_name: "EURUSD".into(),
            time: 5,
            asset_id: 1,
            value: 1.5,
        };
        let wire = point_wire(&point).ws().clone();
        assert_eq!(wire[0], 0x81, "FIN and the text opcode");
        let payload = std::str::from_utf8(&wire[2..]).unwrap();
        assert_eq!(
            payload,
            r#"{"action":"point","message":{"assetName":"EURUSD","time":5,"assetId":1,"value":1.5}}"#
        );
    }
}
