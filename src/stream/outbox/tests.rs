//! The outbox over an in-memory socket.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn frame(n: u8, len: usize) -> Encoded {
    Encoded::raw(Bytes::from(vec![n; len]))
}

fn events(outbox: &Outbox) -> u8 {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    match outbox.poll_events(&mut cx) {
        Poll::Ready(e) => e,
        Poll::Pending => 0,
    }
}

fn live(asset: AssetId, generation: u64, last: UnixSeconds) -> Live {
    Live {
        feed: Feed::V1(asset),
        generation,
        last,
    }
}

/// Offers one frame on the v1 feed of `asset`.
fn offer(
    outbox: &Arc<Outbox>,
    asset: AssetId,
    generation: u64,
    t: UnixSeconds,
    f: &Encoded,
) -> Offer {
    outbox.offer(Feed::V1(asset), generation, t, std::slice::from_ref(f))
}

fn go_live(outbox: &Arc<Outbox>, mode: Live) {
    outbox
        .go_live(mode, |_| Ok::<(), ()>(()))
        .expect("no catch-up error");
}

#[tokio::test]
async fn a_full_socket_queues_whole_frames_in_order_behind_it() {
    // Room for 100 bytes between the two ends.
    let (mut client, server) = tokio::io::duplex(100);
    let outbox = Outbox::new(server);
    let mut session = SharedIo(outbox.clone());
    go_live(&outbox, live(1, 1, 0));

    for t in 1..=4 {
        let n = u8::try_from(t).unwrap();
        assert_eq!(offer(&outbox, 1, 1, t, &frame(n, 40)), Offer::Written);
    }
    assert_eq!(events(&outbox), event::DRAIN, "the third frame did not fit");
    assert_eq!(offer(&outbox, 1, 1, 3, &frame(9, 40)), Offer::Skipped);
    assert_eq!(offer(&outbox, 2, 1, 5, &frame(9, 40)), Offer::Gone);
    assert_eq!(offer(&outbox, 1, 2, 5, &frame(9, 40)), Offer::Gone);
    // The session's own frame is taken whole and goes behind the queue.
    session.write_all(frame(7, 40).ws()).await.unwrap();

    let mut received = vec![0; 200];
    let (read, flushed) = tokio::join!(client.read_exact(&mut received), session.flush());
    read.unwrap();
    flushed.unwrap();
    let expected: Vec<u8> = [1, 2, 3, 4, 7]
        .iter()
        .flat_map(|&n| frame(n, 40).ws().to_vec())
        .collect();
    assert_eq!(
        received, expected,
        "whole frames, in order, nothing between"
    );
}

#[tokio::test]
async fn a_client_too_far_behind_is_reported() {
    let (_client, server) = tokio::io::duplex(10);
    let outbox = Outbox::new(server);
    let _session = SharedIo(outbox.clone());
    go_live(&outbox, live(1, 1, 0));
    for t in 1..=UnixSeconds::try_from(QUEUE_FRAMES).unwrap() {
        offer(&outbox, 1, 1, t, &frame(1, 20));
    }
    assert_eq!(events(&outbox) & event::LAGGED, 0, "not yet");
    offer(&outbox, 1, 1, 1000, &frame(1, 20));
    offer(&outbox, 1, 1, 1001, &frame(1, 20));
    assert_ne!(events(&outbox) & event::LAGGED, 0);
}

#[tokio::test]
async fn the_sessions_own_writes_wait_once_the_queue_is_full() {
    let (mut client, server) = tokio::io::duplex(10);
    let outbox = Outbox::new(server);
    let mut session = SharedIo(outbox.clone());
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let chunk = [5u8; 1024];
    let mut accepted = 0;
    while let Poll::Ready(done) = Pin::new(&mut session).poll_write(&mut cx, &chunk) {
        assert_eq!(done.unwrap(), chunk.len(), "taken whole or not at all");
        accepted += 1;
        assert!(
            accepted < 1000,
            "a client that reads nothing is not queued for without end"
        );
    }
    assert!(accepted * chunk.len() <= MAX_QUEUED_BYTES + 2 * chunk.len());
    // Once the client reads, everything it was sent arrives.
    let mut received = vec![0; accepted * chunk.len()];
    let (read, flushed) = tokio::join!(client.read_exact(&mut received), session.flush());
    read.unwrap();
    flushed.unwrap();
    assert!(received.iter().all(|&b| b == 5));
}

#[tokio::test]
async fn catching_up_skips_what_the_history_had_and_keeps_order() {
    let (mut client, server) = tokio::io::duplex(1024);
    let outbox = Outbox::new(server);
    let _session = SharedIo(outbox.clone());
    let written = outbox
        .go_live(live(1, 1, 10), |write| {
            for t in 9..=12 {
                write(t, &[frame(u8::try_from(t).unwrap(), 3)]);
            }
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(written, 2, "11 and 12; 9 and 10 were in the history");
    assert_eq!(offer(&outbox, 1, 1, 12, &frame(0, 3)), Offer::Skipped);
    assert_eq!(offer(&outbox, 1, 1, 13, &frame(13, 3)), Offer::Written);
    let mut got = vec![0; 9];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, [11, 11, 11, 12, 12, 12, 13, 13, 13]);
}

#[tokio::test]
async fn the_socket_closes_with_the_session_and_the_fan_out_lets_go() {
    let (mut client, server) = tokio::io::duplex(1024);
    let outbox = Outbox::new(server);
    let session = SharedIo(outbox.clone());
    go_live(&outbox, live(1, 1, 0));
    assert!(outbox.serves(Feed::V1(1), 1));
    assert!(
        !outbox.serves(Feed::V1(1), 2),
        "an earlier subscribe's entry"
    );
    drop(session);
    assert!(!outbox.serves(Feed::V1(1), 1));
    assert_eq!(offer(&outbox, 1, 1, 1, &frame(1, 3)), Offer::Gone);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "end of stream: the socket is closed");
}
