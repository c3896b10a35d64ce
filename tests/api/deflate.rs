//! WebSocket compression (RFC 7692) on both routes, on every engine:
//! agreed when a client offers it (and not otherwise, nor when turned
//! off), histories and snapshots sent compressed, a client's compressed
//! frames understood. A raw client, since tungstenite has no deflate.

use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Engine, TestApp};
use crate::websocket_v2::service;

const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A WebSocket client on a bare socket, which inflates what the server
/// compressed and can compress what it sends.
struct RawClient {
    tcp: TcpStream,
    buffer: Vec<u8>,
    /// The answer's `Sec-WebSocket-Extensions`.
    extensions: Option<String>,
    /// Bytes read off the socket (headers and frames, as sent).
    pub wire_bytes: usize,
}

/// One message as the client reads it.
struct Read {
    text: String,
    compressed: bool,
}

impl RawClient {
    async fn connect(app: &TestApp, path: &str, offer: Option<&str>) -> Self {
        let mut tcp = TcpStream::connect(app.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let extensions = offer
            .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extensions}\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            tcp.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("sec-websocket-extensions: ")
                .map(str::to_owned)
        });
        Self {
            tcp,
            buffer: Vec::new(),
            extensions,
            wire_bytes: 0,
        }
    }

    async fn fill(&mut self, n: usize) {
        while self.buffer.len() < n {
            let mut chunk = vec![0u8; 64 * 1024];
            let got = tokio::time::timeout(Duration::from_secs(10), self.tcp.read(&mut chunk))
                .await
                .expect("a frame within 10 s")
                .unwrap();
            assert!(got > 0, "the server closed");
            self.wire_bytes += got;
            self.buffer.extend_from_slice(&chunk[..got]);
        }
    }

    /// The next text message (its frames joined, inflated where compressed).
    async fn read(&mut self) -> Read {
        let mut payload = Vec::new();
        let mut compressed = None;
        loop {
            self.fill(2).await;
            let (b0, b1) = (self.buffer[0], self.buffer[1]);
            let (len, at) = match b1 & 0x7f {
                126 => {
                    self.fill(4).await;
                    (
                        usize::from(u16::from_be_bytes([self.buffer[2], self.buffer[3]])),
                        4,
                    )
                }
                127 => {
                    self.fill(10).await;
                    (
                        u64::from_be_bytes(self.buffer[2..10].try_into().unwrap()) as usize,
                        10,
                    )
                }
                n => (usize::from(n), 2),
            };
            self.fill(at + len).await;
            let frame: Vec<u8> = self.buffer.drain(..at + len).collect();
            let opcode = b0 & 0x0f;
            if opcode >= 0x8 {
                continue; // pings
            }
            if compressed.is_none() {
                compressed = Some(b0 & 0x40 != 0);
            }
            payload.extend_from_slice(&frame[at..]);
            if b0 & 0x80 != 0 {
                break;
            }
        }
        let compressed = compressed.unwrap();
        if compressed {
            payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut d = Decompress::new(false);
            let mut out = Vec::with_capacity(payload.len() * 20);
            d.decompress_vec(&payload, &mut out, FlushDecompress::Sync)
                .unwrap();
            payload = out;
        }
        Read {
            text: String::from_utf8(payload).unwrap(),
            compressed,
        }
    }

    /// Sends a text message, compressed or not.
    async fn send(&mut self, text: &str, compress: bool) {
        let mut payload = text.as_bytes().to_vec();
        let mut b0 = 0x81u8;
        if compress {
            let mut c = Compress::new(Compression::default(), false);
            let mut out = Vec::with_capacity(payload.len() + 64);
            c.compress_vec(&payload, &mut out, FlushCompress::Sync)
                .unwrap();
            out.truncate(out.len() - 4);
            payload = out;
            b0 |= 0x40;
        }
        let mask = [7u8, 1, 3, 9];
        let mut frame = vec![b0];
        assert!(payload.len() < 126);
        frame.push(0x80 | payload.len() as u8);
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }
}

/// Agreed only with a client that offers it; the v1 history then arrives
/// compressed, several times smaller, and reads the same.
async fn deflate_is_agreed_with_a_client_that_offers_it(engine: Engine) {
    let Some(app) = service(engine, 1800, &[]).await else {
        return;
    };
    let subscribe = r#"{"action":"subscribe","message":{"assetId":1}}"#;
    let mut plain = RawClient::connect(&app, "/api/v1/ws", None).await;
    assert_eq!(plain.extensions, None);
    plain.send(subscribe, false).await;
    let history = plain.read().await;
    assert!(!history.compressed);
    let plain_bytes = plain.wire_bytes;
    let mut deflating = RawClient::connect(&app, "/api/v1/ws", Some(OFFER)).await;
    let agreed = deflating.extensions.clone().expect("agreed");
    assert!(agreed.contains("permessage-deflate"), "{agreed}");
    assert!(agreed.contains("server_no_context_takeover"), "{agreed}");
    deflating.send(subscribe, false).await;
    let compressed = deflating.read().await;
    assert!(compressed.compressed, "the history is compressed");
    let a: Value = serde_json::from_str(&history.text).unwrap();
    let b: Value = serde_json::from_str(&compressed.text).unwrap();
    assert_eq!(b["action"], "asset_history");
    let n = |v: &Value| v["message"]["points"].as_array().unwrap().len();
    assert!(n(&b) + 5 >= n(&a) && n(&b) > 1000, "{} {}", n(&a), n(&b));
    assert!(
        deflating.wire_bytes * 4 < plain_bytes,
        "{} bytes compressed against {plain_bytes}",
        deflating.wire_bytes
    );
    // Live points go as they are.
    let point = deflating.read().await;
    assert!(!point.compressed);
    assert!(point.text.contains(r#""action":"point""#));
    app.cleanup().await;
}

/// A client's compressed frames are understood (v2 here), and a v2
/// snapshot goes compressed.
async fn a_compressed_client_frame_is_understood(engine: Engine) {
    let Some(app) = service(engine, 1800, &[]).await else {
        return;
    };
    let mut c = RawClient::connect(&app, "/api/v2/ws", Some(OFFER)).await;
    assert!(c.extensions.is_some());
    c.send(r#"{"id":1,"method":"list"}"#, true).await;
    let answer: Value = serde_json::from_str(&c.read().await.text).unwrap();
    assert_eq!(answer["id"], 1, "{answer}");
    c.send(
        r#"{"id":2,"method":"subscribe","params":{"streams":["EURUSD@point"],"history":600}}"#,
        true,
    )
    .await;
    let answer: Value = serde_json::from_str(&c.read().await.text).unwrap();
    assert_eq!(answer["result"]["streams"][0], "EURUSD@point", "{answer}");
    let snapshot = c.read().await;
    assert!(snapshot.compressed, "a large snapshot goes compressed");
    let snapshot: Value = serde_json::from_str(&snapshot.text).unwrap();
    assert_eq!(
        snapshot["snapshot"]["points"].as_array().unwrap().len(),
        600
    );
    app.cleanup().await;
}

/// `RATES_WS_DEFLATE=false`: never agreed.
async fn deflate_can_be_turned_off(engine: Engine) {
    let Some(app) = service(engine, 300, &["--ws-deflate", "false"]).await else {
        return;
    };
    for path in ["/api/v1/ws", "/api/v2/ws"] {
        let c = RawClient::connect(&app, path, Some(OFFER)).await;
        assert_eq!(c.extensions, None, "{path}");
    }
    app.cleanup().await;
}

crate::helpers::on_both_engines!(
    deflate_is_agreed_with_a_client_that_offers_it,
    a_compressed_client_frame_is_understood,
    deflate_can_be_turned_off,
);
