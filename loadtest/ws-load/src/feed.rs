//! `--stream NAME`: every client takes one v2 stream named in the URL
//! (`/api/v2/ws?streams=NAME`), or with `--sse` the same stream as
//! Server-Sent Events (`/api/v2/events?streams=NAME`), and the arrival of
//! each second's frame is measured as in v1 (see the crate's docs). Any
//! stream whose data carry a `time` works: `EURUSD@point`, `!all@point`,
//! `!all@ticker`.
//!
//! The SSE client speaks HTTP/1.1 by hand over a [`StampedTcp`], chunked
//! transfer coding included, so that its arrivals are the kernel's receive
//! timestamps like the WebSocket's.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::{
    Args, Delivery, Ready, StampedTcp, Window, await_ready, connect_or_say, measure, point_time,
    ramp_pause, report, unix_nanos,
};

/// What a client does with each frame or event it reads.
enum Seen {
    /// The subscription is answered: the client is ready.
    Ready,
    /// A live frame of second `time`.
    Data(i64),
    Other,
}

/// A v2 frame's kind, without a full JSON parse (the generator shares the
/// machine with the server).
fn classify(text: &str) -> Seen {
    if text.starts_with(r#"{"stream":"#) {
        match text.find(r#","data":"#) {
            Some(at) if !text[..at].contains(r#""snapshot""#) => {
                Seen::Data(point_time(&text[at..]))
            }
            _ => Seen::Other,
        }
    } else if text.contains(r#""result""#) {
        Seen::Ready
    } else {
        Seen::Other
    }
}

async fn websocket(url: String, ready: Ready, window: Arc<Window>) -> Vec<Delivery> {
    let mut seen = Vec::new();
    let Some(mut ws) = connect_or_say(&url, &ready).await else {
        return seen;
    };
    let mut announced = false;
    while let Some(msg) = ws.next().await {
        let Ok(Message::Text(text)) = msg else {
            if msg.is_err() {
                break;
            }
            continue;
        };
        match classify(text.as_str()) {
            Seen::Ready if !announced => {
                announced = true;
                let _ = ready.send(Ok(0)).await;
            }
            Seen::Data(time)
                if !window.record(&mut seen, time, ws.get_ref().arrived_ns(), unix_nanos()) =>
            {
                break;
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    seen
}

/// Reads an HTTP/1.1 answer's body as it comes: the head, then chunks (or
/// the bytes as they are, without `Transfer-Encoding: chunked`).
struct Body {
    tcp: StampedTcp,
    raw: Vec<u8>,
    chunks: Chunks,
}

/// The chunked transfer coding's state between reads.
#[derive(Default)]
struct Chunks {
    chunked: bool,
    /// Bytes left in the current chunk.
    left: usize,
}

impl Body {
    /// Reads more from the socket into `raw`; false at its end.
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut buf = [0u8; 16 * 1024];
        let n = self.tcp.read(&mut buf).await?;
        self.raw.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }

    /// Reads the status line and headers.
    async fn head(&mut self) -> Result<(), String> {
        loop {
            if let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
                if !head.starts_with("http/1.1 200") {
                    return Err(head.lines().next().unwrap_or_default().to_owned());
                }
                self.chunks.chunked = head.contains("transfer-encoding: chunked");
                self.raw.drain(..end + 4);
                return Ok(());
            }
            if !self.fill().await.map_err(|e| e.to_string())? {
                return Err("closed before the answer's head".into());
            }
        }
    }

    /// Waits for more of the body and moves it into `out`; false at its end.
    async fn next(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        loop {
            let before = out.len();
            if !self.chunks.take(&mut self.raw, out)? {
                return Ok(false);
            }
            if out.len() > before {
                return Ok(true);
            }
            if !self.fill().await? {
                return Ok(false);
            }
        }
    }
}

impl Chunks {
    /// Moves the body bytes read so far into `out`; false after the last chunk.
    fn take(&mut self, raw: &mut Vec<u8>, out: &mut Vec<u8>) -> std::io::Result<bool> {
        if !self.chunked {
            out.append(raw);
            return Ok(true);
        }
        loop {
            if self.left > 0 {
                let take = self.left.min(raw.len());
                out.extend(raw.drain(..take));
                self.left -= take;
                if self.left > 0 {
                    return Ok(true);
                }
            }
            // A chunk's `\r\n` then the next one's size line (the first has
            // no `\r\n` before it).
            let start = usize::from(raw.starts_with(b"\r\n")) * 2;
            let Some(end) = raw[start..].windows(2).position(|w| w == b"\r\n") else {
                return Ok(true);
            };
            let line = String::from_utf8_lossy(&raw[start..start + end]).into_owned();
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                return Ok(false);
            }
            raw.drain(..start + end + 2);
            self.left = size;
        }
    }
}

async fn events(url: String, ready: Ready, window: Arc<Window>) -> Vec<Delivery> {
    let mut seen = Vec::new();
    let opened = async {
        let request = url
            .strip_prefix("http://")
            .ok_or("the SSE url must be http://")?;
        let (host, path) = request.split_once('/').unwrap_or((request, ""));
        let tcp = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut tcp = StampedTcp::new(tcp).map_err(|e| e.to_string())?;
        let head =
            format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
        tcp.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut body = Body {
            tcp,
            raw: Vec::new(),
            chunks: Chunks::default(),
        };
        body.head().await?;
        Ok::<_, String>(body)
    };
    let mut body = match opened.await {
        Ok(body) => body,
        Err(e) => {
            let _ = ready.send(Err(e)).await;
            return seen;
        }
    };
    let (mut text, mut announced) = (Vec::new(), false);
    while let Ok(true) = body.next(&mut text).await {
        let arrived = body.tcp.arrived_ns();
        // Whole events only: each ends with a blank line.
        let Some(end) = text.windows(2).rposition(|w| w == b"\n\n") else {
            continue;
        };
        let mut past = false;
        for line in text[..end].split(|b| *b == b'\n') {
            let Some(data) = line.strip_prefix(b"data: ") else {
                continue;
            };
            match classify(&String::from_utf8_lossy(data)) {
                Seen::Ready if !announced => {
                    announced = true;
                    let _ = ready.send(Ok(0)).await;
                }
                Seen::Data(time) => past |= !window.record(&mut seen, time, arrived, unix_nanos()),
                _ => {}
            }
        }
        text.drain(..end + 2);
        if past {
            break;
        }
    }
    seen
}

pub async fn run(args: Args, stream: String) {
    let base = args
        .url
        .split("/api/")
        .next()
        .unwrap_or(&args.url)
        .to_owned();
    let url = if args.sse {
        format!(
            "{}/api/v2/events?streams={stream}",
            base.replacen("ws://", "http://", 1)
        )
    } else {
        format!("{base}/api/v2/ws?streams={stream}")
    };
    println!(
        "ws-load: {} {} clients on {url} ({} per second), measuring {} s",
        args.clients,
        if args.sse { "SSE" } else { "WebSocket" },
        args.ramp,
        args.seconds
    );
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.clients.max(1));
    let window = Window::unbounded();
    let ramp_started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        ramp_pause(i, args.ramp).await;
        let (url, ready, window) = (url.clone(), ready_tx.clone(), window.clone());
        tasks.push(if args.sse {
            tokio::spawn(events(url, ready, window))
        } else {
            tokio::spawn(websocket(url, ready, window))
        });
    }
    drop(ready_tx);
    let (ok, failed, _) = await_ready(&mut ready_rx, args.clients).await;
    let rss = measure(&args, &window, (ok, &failed), ramp_started, &stream).await;
    report(tasks, ok, rss, "second", "seconds").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_told_apart_and_their_second_read() {
        let data = r#"{"stream":"EURUSD@point","data":{"assetName":"EURUSD","time":1455883485,"value":1.1}}"#;
        assert!(matches!(classify(data), Seen::Data(1455883485)));
        let all = r#"{"stream":"!all@ticker","data":{"time":7,"tickers":[{"openTime":1}]}}"#;
        assert!(matches!(classify(all), Seen::Data(7)));
        let snapshot = r#"{"stream":"EURUSD@point","snapshot":{"points":[{"time":3}]}}"#;
        assert!(matches!(classify(snapshot), Seen::Other));
        assert!(matches!(
            classify(r#"{"id":"url","result":{"streams":[]}}"#),
            Seen::Ready
        ));
    }

    #[test]
    fn chunks_are_joined_across_reads() {
        let mut chunks = Chunks {
            chunked: true,
            left: 0,
        };
        let (mut raw, mut out) = (Vec::new(), Vec::new());
        // A chunk split inside its data, its `\r\n` and the next size line.
        for piece in [&b"5\r\nhel"[..], b"lo\r", b"\n4;x=y\r", b"\n abc\r\n"] {
            raw.extend_from_slice(piece);
            assert!(chunks.take(&mut raw, &mut out).unwrap());
        }
        assert_eq!(out, b"hello abc");
        raw.extend_from_slice(b"0\r\n\r\n");
        assert!(!chunks.take(&mut raw, &mut out).unwrap());
        let mut raw = b"zz\r\n".to_vec();
        let mut bad = Chunks {
            chunked: true,
            left: 0,
        };
        assert!(bad.take(&mut raw, &mut out).is_err());
    }
}
