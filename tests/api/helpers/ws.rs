//! WebSocket clients' side of a test: frames read with a deadline, and a
//! proxy that cuts connections as a network drop would.

use std::time::Duration;

/// What the helpers here read from: a client WebSocket.
pub trait WsStream:
    futures_util::Stream<
        Item = Result<
            tokio_tungstenite::tungstenite::Message,
            tokio_tungstenite::tungstenite::Error,
        >,
    > + Unpin
{
}

impl<S> WsStream for S where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin
{
}

/// How long a test waits for the server's next WebSocket frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

/// The next text frame of a WebSocket as JSON, skipping pings; panics if
/// none comes within [`FRAME_WAIT`] or the connection closes.
pub async fn next_frame<S>(ws: &mut S) -> serde_json::Value
where
    S: WsStream,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("a frame within the deadline")
            .expect("connection open")
            .expect("no protocol error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Frames until one with `action`, skipping others (points in flight).
pub async fn until_action<S>(ws: &mut S, action: &str) -> serde_json::Value
where
    S: WsStream,
{
    loop {
        let f = next_frame(ws).await;
        if f["action"] == action {
            return f;
        }
    }
}

/// Reads a WebSocket until its close frame, skipping other messages;
/// panics if none comes within `timeout`, or if the connection ends
/// without one.
pub async fn close_frame<S>(
    ws: &mut S,
    timeout: Duration,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame
where
    S: WsStream,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let close = tokio::time::timeout(timeout, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(c) = msg {
                return c;
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("no close frame within {timeout:?}"));
    close.expect("the connection ended without a close frame")
}

/// A TCP proxy on a loopback port in front of `target`, whose live
/// connections a test can cut at once (a network drop, as a client sees it).
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut, task }
    }

    /// Closes every connection open now; new ones go through.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A v2 subscriber of `EURUSD@point` that reconnects (resuming with
/// `since` + `epoch`) whenever its connection ends: every second it got.
pub fn resuming_subscriber(
    ws_url: String,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    tokio::task::JoinHandle<()>,
) {
    let seconds = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seconds.clone();
    let task = tokio::spawn(async move {
        let mut epoch: Option<String> = None;
        loop {
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&ws_url).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let last = out.lock().unwrap().last().copied();
            let mut params = serde_json::json!({"streams": ["EURUSD@point"]});
            if let Some(last) = last {
                params["since"] = serde_json::json!(last);
                if let Some(e) = &epoch {
                    params["epoch"] = serde_json::json!(e);
                }
            }
            let request = serde_json::json!({"id": 1, "method": "subscribe", "params": params});
            if futures_util::SinkExt::send(
                &mut ws,
                tokio_tungstenite::tungstenite::Message::text(request.to_string()),
            )
            .await
            .is_err()
            {
                continue;
            }
            while let Some(Ok(msg)) = futures_util::StreamExt::next(&mut ws).await {
                let Ok(text) = msg.to_text() else { continue };
                let Ok(frame) = serde_json::from_str::<serde_json::Value>(text) else {
                    continue;
                };
                if let Some(e) = frame["result"]["epoch"].as_str() {
                    epoch = Some(e.to_owned());
                }
                // Refused for now (Redis away): subscribe again shortly.
                if frame["error"].is_object() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
                let points = if let Some(p) = frame["snapshot"]["points"].as_array() {
                    p.clone()
                } else if frame["data"].is_object() {
                    vec![frame["data"].clone()]
                } else {
                    continue;
                };
                let mut seen = out.lock().unwrap();
                for p in points {
                    if let Some(t) = p["time"].as_i64() {
                        seen.push(t);
                    }
                }
            }
        }
    });
    (seconds, task)
}
