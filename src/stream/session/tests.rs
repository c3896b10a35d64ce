//! The session over an in-memory stream: a tokio duplex pipe, the server's
//! end behind the connection's outbox as in production, a tungstenite
//! client on the other end, and a protocol that echoes. Time is tokio's
//! paused clock, so the ping and idle deadlines pass at once.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::domain::Catalog;
use crate::store::{Embedded, Engine};
use crate::stream::hub::LiveHub;
use crate::stream::outbox::SharedIo;
use crate::stream::state::WsSettings;

/// Answers `echo:<text>`; its error frames are `error:<kind>:<text>`.
struct Echo;

impl Protocol for Echo {
    async fn on_text<S: Socket>(&mut self, text: &str, link: &mut Link<'_, S>) -> Result<(), End> {
        if text == "bye" {
            return Err(End::Close(close::POLICY, "asked to".into()));
        }
        link.send_text(format!("echo:{text}").into()).await
    }

    fn error_frame(&self, kind: ErrorType, text: &str) -> Utf8Bytes {
        format!("error:{kind:?}:{text}").into()
    }

    fn is_live(&self) -> bool {
        false
    }
}

type Client = WebSocketStream<DuplexStream>;

/// A session on one end of a pipe; the other end, raw. The engine is an
/// embedded one the echo protocol never asks.
async fn connect_raw(
    settings: WsSettings,
) -> (DuplexStream, CancellationToken, tokio::task::JoinHandle<()>) {
    let catalog = Arc::new(Catalog::with_extra("").unwrap());
    let engine = Engine::Embedded(Arc::new(Embedded::new(catalog.clone())));
    let hub = LiveHub::new(&catalog, None, 1, 10);
    let shutdown = CancellationToken::new();
    let max = settings.max_frame_bytes;
    let streams = Arc::new(Streams::new(
        catalog,
        engine,
        None,
        hub,
        1800,
        settings,
        shutdown.clone(),
    ));
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let outbox = Outbox::new(server_io);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let server =
        WebSocketStream::from_raw_socket(SharedIo(outbox.clone()), Role::Server, Some(config))
            .await;
    let session = tokio::spawn(Session::new(streams, outbox, Echo).run(server));
    (client_io, shutdown, session)
}

/// A session and a tungstenite client talking to it.
async fn connect(settings: WsSettings) -> (Client, CancellationToken, tokio::task::JoinHandle<()>) {
    let (io, shutdown, session) = connect_raw(settings).await;
    let client = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
    (client, shutdown, session)
}

/// The next text or close frame the client gets (pings are answered by
/// the client library as it reads).
async fn next(client: &mut Client) -> Message {
    loop {
        match client.next().await {
            Some(Ok(m @ (Message::Text(_) | Message::Close(_)))) => return m,
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

fn text(m: &Message) -> &str {
    match m {
        Message::Text(t) => t.as_str(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn close_code(m: &Message) -> u16 {
    match m {
        Message::Close(Some(f)) => u16::from(f.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn text_frames_reach_the_protocol_and_its_answers_come_back() {
    let (mut client, _shutdown, _session) = connect(WsSettings::default()).await;
    client.send(Message::text("hello")).await.unwrap();
    assert_eq!(text(&next(&mut client).await), "echo:hello");
    client.send(Message::text("again")).await.unwrap();
    assert_eq!(text(&next(&mut client).await), "echo:again");
}

#[tokio::test(start_paused = true)]
async fn a_binary_frame_gets_an_error_and_the_connection_survives() {
    let (mut client, _shutdown, _session) = connect(WsSettings::default()).await;
    client
        .send(Message::Binary(Bytes::from_static(b"\x00\x01")))
        .await
        .unwrap();
    let answer = next(&mut client).await;
    assert!(
        text(&answer).starts_with("error:ValidationError:binary frames are not supported"),
        "{answer:?}"
    );
    client.send(Message::text("still here")).await.unwrap();
    assert_eq!(text(&next(&mut client).await), "echo:still here");
}

#[tokio::test(start_paused = true)]
async fn a_frame_over_the_limit_is_closed_with_1009() {
    let settings = WsSettings {
        max_frame_bytes: 1024,
        ..WsSettings::default()
    };
    let (mut client, _shutdown, session) = connect(settings).await;
    client.send(Message::text("x".repeat(2048))).await.unwrap();
    assert_eq!(close_code(&next(&mut client).await), close::TOO_BIG);
    session.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_flood_gets_rate_limited_errors_then_1008() {
    let settings = WsSettings {
        frames_per_second: 2,
        ..WsSettings::default()
    };
    let (mut client, _shutdown, session) = connect(settings).await;
    // A burst of twice the rate is let through, then each frame is refused,
    // and past MAX_RATE_VIOLATIONS refusals in a row the session closes.
    let burst = 4;
    let total = burst + MAX_RATE_VIOLATIONS as usize + 1;
    for i in 0..total {
        client.send(Message::text(format!("{i}"))).await.unwrap();
    }
    let mut echoed = 0;
    let mut refused = 0;
    let code = loop {
        let m = next(&mut client).await;
        match &m {
            Message::Text(t) if t.starts_with("echo:") => echoed += 1,
            Message::Text(t) if t.starts_with("error:RateLimited:") => refused += 1,
            Message::Close(_) => break close_code(&m),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(echoed, burst, "the burst is served");
    assert_eq!(refused, MAX_RATE_VIOLATIONS as usize, "then refused");
    assert_eq!(code, close::POLICY);
    session.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_answers_pings_is_closed_with_1008() {
    use tokio::io::AsyncReadExt;
    let settings = WsSettings {
        ping_every: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(60),
        ..WsSettings::default()
    };
    // A raw client that reads nothing, so it answers no ping.
    let (mut raw, _shutdown, session) = connect_raw(settings).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(300), session)
        .await
        .expect("closed within five minutes")
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(60) && waited <= Duration::from_secs(81),
        "closed after {waited:?}"
    );
    // What the server wrote: unmasked frames, each short (length < 126).
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes).await.unwrap();
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while let [head, len, tail @ ..] = rest {
        let len = usize::from(*len);
        assert!(len < 126 && tail.len() >= len, "a short frame: {bytes:?}");
        frames.push((head & 0x0f, &tail[..len]));
        rest = &tail[len..];
    }
    let pings = frames.iter().filter(|(op, _)| *op == 0x9).count();
    assert!(pings >= 3, "pinged every 20 s before giving up: {frames:?}");
    let (op, payload) = frames.last().expect("a close frame");
    assert_eq!(*op, 0x8, "the last frame is a close: {frames:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), close::POLICY);
    assert_eq!(&payload[2..], b"no answer to pings");
}

/// The close code the server sends after `bytes` from a raw client.
async fn close_after(bytes: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut raw, _shutdown, session) = connect_raw(WsSettings::default()).await;
    raw.write_all(bytes).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .expect("the session ends")
        .unwrap();
    let mut out = Vec::new();
    raw.read_to_end(&mut out).await.unwrap();
    // The last frame the server wrote: unmasked, short.
    let mut rest = &out[..];
    let mut last = None;
    while let [head, len, tail @ ..] = rest {
        let len = usize::from(*len);
        assert!(len < 126 && tail.len() >= len, "{out:?}");
        last = Some((head & 0x0f, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    let (op, payload) = last.expect("a frame");
    assert_eq!(op, 0x8, "a close frame");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}

#[tokio::test(start_paused = true)]
async fn protocol_violations_are_closed_with_1002() {
    let masked = |head: u8, payload: &[u8]| {
        let mut f = vec![head, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", vec![0x81, 0x02, b'h', b'i']),
        ("reserved opcode 3", masked(0x83, b"")),
        ("RSV1 set", masked(0xC1, b"hi")),
        ("continuation without a start", masked(0x80, b"hi")),
        ("a 126-byte ping", {
            let mut f = vec![0x89, 0x80 | 126, 0, 126, 0, 0, 0, 0];
            f.extend(std::iter::repeat_n(0u8, 126));
            f
        }),
    ];
    for (what, bytes) in cases {
        let (code, reason) = close_after(&bytes).await;
        assert_eq!(code, close::PROTOCOL, "{what}: {reason}");
    }
}

#[tokio::test(start_paused = true)]
async fn text_that_is_not_utf8_is_closed_with_1007() {
    let frame = [0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe];
    let (code, reason) = close_after(&frame).await;
    assert_eq!(code, close::INVALID_DATA, "{reason}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays() {
    let (mut client, _shutdown, session) = connect(WsSettings::default()).await;
    // Reading answers each ping; five minutes pass without a close.
    let read = tokio::time::timeout(Duration::from_secs(300), next(&mut client)).await;
    assert!(read.is_err(), "nothing but pings arrived: {read:?}");
    assert!(!session.is_finished());
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_with_1001() {
    let (mut client, shutdown, session) = connect(WsSettings::default()).await;
    client.send(Message::text("hi")).await.unwrap();
    assert_eq!(text(&next(&mut client).await), "echo:hi");
    shutdown.cancel();
    assert_eq!(close_code(&next(&mut client).await), close::GOING_AWAY);
    session.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_protocol_ends_the_session_with_its_own_close() {
    let (mut client, _shutdown, session) = connect(WsSettings::default()).await;
    client.send(Message::text("bye")).await.unwrap();
    let close = next(&mut client).await;
    assert_eq!(close_code(&close), close::POLICY);
    let Message::Close(Some(frame)) = close else {
        unreachable!()
    };
    assert_eq!(frame.reason.as_str(), "asked to");
    session.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_vanishes_ends_the_session() {
    let (client, _shutdown, session) = connect(WsSettings::default()).await;
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .expect("the session ends once its client is gone")
        .unwrap();
}
