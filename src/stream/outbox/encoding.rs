//! How a connection's frames are written: WebSocket frames (large ones
//! compressed where agreed) or event-stream events, and an event stream's
//! resume points.

use std::sync::Arc;

use bytes::Bytes;

use super::{Inner, Outbox};
use crate::domain::UnixSeconds;
use crate::stream::frame::{Encoded, Event, compresses, deflated_text, sse_event, text_wire};

/// How a connection's frames are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    /// Server-sent events: once every frame of a second the fan-out has is
    /// written, an event with only `id: <second>@<epoch>` (which sets the
    /// client's `Last-Event-ID` without an event of its own).
    EventStream {
        epoch: String,
        /// The newest second an id was written for.
        marked: UnixSeconds,
    },
}

impl Transport {
    /// An event stream whose ids carry `epoch`.
    pub fn event_stream(epoch: String) -> Self {
        Self::EventStream {
            epoch,
            marked: UnixSeconds::MIN,
        }
    }
}

impl Outbox {
    /// Queues one second's frames in this connection's encoding.
    pub(super) fn push_frames(self: &Arc<Self>, inner: &mut Inner, frames: &[Encoded]) {
        match &inner.transport {
            Transport::WebSocket => {
                for frame in frames {
                    self.push(inner, frame.ws_for(self.deflate).clone());
                }
            }
            Transport::EventStream { .. } => {
                for frame in frames {
                    self.push(inner, frame.sse().clone());
                }
            }
        }
    }

    /// Whether the client agreed to `permessage-deflate`.
    pub fn deflates(&self) -> bool {
        self.deflate
    }

    /// Whether frames go out as server-sent events.
    pub fn is_event_stream(&self) -> bool {
        self.event_stream
    }

    /// An event stream's resume point: every frame the fan-out had for
    /// second `time` (and before) is written; written as an event with only
    /// an id, so that a client that reconnects resumes after it.
    pub fn mark(self: &Arc<Self>, time: UnixSeconds) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Transport::EventStream { epoch, marked } = &mut inner.transport else {
            return;
        };
        if time <= *marked {
            return;
        }
        *marked = time;
        let id = Bytes::from(format!("id: {time}@{epoch}\n\n"));
        self.push(inner, id);
    }

    /// Writes one whole message the session made (an answer, a snapshot),
    /// in this connection's encoding. True when it waits in the queue
    /// behind a full socket: flush before writing more.
    pub fn write_event(self: &Arc<Self>, event: Event, json: Bytes) -> bool {
        // Encoded (and compressed) before the lock is taken: the hub's
        // fan-out writes to this outbox under the same lock.
        let bytes = if self.event_stream {
            sse_event(event, &json)
        } else if compresses(self.deflate, json.len()) {
            deflated_text(&json)
        } else {
            text_wire(json)
        };
        let mut inner = self.lock();
        self.push(&mut inner, bytes);
        !inner.queue.is_empty()
    }
}
