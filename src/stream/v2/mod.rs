//! The many-stream protocol (docs/API.md, "WebSocket protocol v2") on
//! `/api/v2/ws`: requests with ids (`subscribe`, `unsubscribe`, `list`,
//! `assets`), point and kline streams, each opened by a snapshot, resumed
//! after a reconnect with `since` and `epoch`.
//!
//! Every stream of a connection is a feed of the same outbox: the hub
//! writes each one's frames, encoded once per tick, straight into the
//! socket, as for v1. A subscribe opens its streams one after the other,
//! each with v1's handoff (attach to the asset's channel, read the
//! snapshot, send it, go live under the outbox's lock); streams already
//! open go on meanwhile, written by the hub.

pub mod docs;
mod names;
mod open;
pub mod query;
pub mod request;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use self::names::{Kind, Stream, resolve};
use self::open::{Opening, Receiver, open};
use self::request::{Method, Refusal, Request, Subscribe, parse_request};
use super::frame::{ErrorType, Event, stream_wire};
use super::grant::Grant;
use super::outbox::{Feed, Live};
use super::session::{End, Link, Protocol, Socket, Writer, catch_up, catch_up_market};
use super::state::Streams;
use super::tickers::TickerData;
use crate::clock::unix_now;
use crate::domain::{AssetList, UnixSeconds};

/// A `since` this far past the server's clock is refused: the client's
/// clock, not its data, is wrong.
const MAX_SINCE_AHEAD: i64 = 60;

/// `{"id": ..., "result": ...}`
fn answer_json(id: &Value, result: impl Serialize) -> Bytes {
    #[derive(Serialize)]
    struct Answer<'a, T> {
        id: &'a Value,
        result: T,
    }
    serde_json::to_vec(&Answer { id, result })
        .unwrap_or_default()
        .into()
}

/// `{"id": ..., "error": {"code": ..., "message": ...}}` as a text message.
pub fn error_frame(id: &Value, code: ErrorType, message: &str) -> Utf8Bytes {
    Utf8Bytes::try_from(error_json(id, code, message)).unwrap_or_default()
}

/// `{"id": ..., "error": {"code": ..., "message": ...}}`
/// An error that answers no request (`"id":null`), as an event stream's
/// last event.
pub fn error_event(code: ErrorType, message: &str) -> Bytes {
    error_json(&Value::Null, code, message)
}

fn error_json(id: &Value, code: ErrorType, message: &str) -> Bytes {
    #[derive(Serialize)]
    struct Error<'a> {
        code: ErrorType,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Answer<'a> {
        id: &'a Value,
        error: Error<'a>,
    }
    serde_json::to_vec(&Answer {
        id,
        error: Error { code, message },
    })
    .unwrap_or_default()
    .into()
}

/// A v2 connection's state: its streams, in the order they were added.
#[derive(Debug, Default)]
pub struct V2 {
    streams: Vec<(String, Feed)>,
    /// Counts subscribes, so that the fan-out can tell a stream from an
    /// earlier subscription to it.
    generation: u64,
    /// The subscribe the URL named, done as the session begins.
    from_url: Option<Subscribe>,
    /// What the connection's credential allows.
    grant: Grant,
}

/// The id a subscribe named in the URL is answered under.
pub const URL_ID: &str = "url";

impl Protocol for V2 {
    async fn on_text<S: Socket>(&mut self, text: &str, link: &mut Link<'_, S>) -> Result<(), End> {
        let w = &mut link.writer();
        let Request { id, method } = match parse_request(text) {
            Ok(request) => request,
            Err(Refusal { id, kind, text }) => {
                return w.send(Event::Error, error_json(&id, kind, &text)).await;
            }
        };
        match method {
            Method::Assets => {
                let assets = AssetList::from_catalog(&w.streams.catalog);
                w.send(Event::Answer, answer_json(&id, assets)).await
            }
            Method::List => {
                w.send(Event::Answer, answer_json(&id, self.listing()))
                    .await
            }
            Method::Unsubscribe(names) => self.unsubscribe(&id, &names, w).await,
            Method::Subscribe(request) => self.subscribe(&id, request, w).await,
        }
    }

    fn error_frame(&self, kind: ErrorType, text: &str) -> Utf8Bytes {
        error_frame(&Value::Null, kind, text)
    }

    fn is_live(&self) -> bool {
        !self.streams.is_empty()
    }

    async fn start<S: Socket>(&mut self, link: &mut Link<'_, S>) -> Result<(), End> {
        match self.from_url.take() {
            Some(request) => self.open_url(request, &mut link.writer()).await,
            None => Ok(()),
        }
    }
}

impl V2 {
    /// A connection that begins with the subscribe its URL named.
    pub fn from_url(request: Subscribe) -> Self {
        Self {
            from_url: Some(request),
            ..Self::default()
        }
    }

    /// A connection that may do what `grant` allows.
    pub fn granted(mut self, grant: Grant) -> Self {
        self.grant = grant;
        self
    }

    /// Checks a subscribe named in a URL before anything is upgraded or
    /// streamed: every stream resolved, not too many, each allowed by
    /// `grant`, `since` not ahead. The error: its kind, the parameter, the
    /// text.
    pub fn check(
        streams: &Streams,
        request: &Subscribe,
        grant: &Grant,
    ) -> Result<(), (ErrorType, &'static str, String)> {
        let max = Self::max_streams(streams, grant);
        let resolved = Self::resolve_all(streams, &request.streams, max)
            .map_err(|(kind, text)| (kind, "streams", text))?;
        if let Some(text) = forbidden(grant, &resolved) {
            return Err((ErrorType::Forbidden, "streams", text));
        }
        Self::check_since("since", request.since)
            .map_err(|text| (ErrorType::ValidationError, "since", text))
    }

    fn max_streams(streams: &Streams, grant: &Grant) -> usize {
        grant.max_streams.unwrap_or(streams.settings.max_streams)
    }

    /// A resume point (`since`, or an event stream's `Last-Event-ID`) is
    /// not ahead of the server's clock; the error names it as `name`.
    pub fn check_since(name: &str, since: Option<UnixSeconds>) -> Result<(), String> {
        match since {
            Some(since) if since > unix_now() + MAX_SINCE_AHEAD => Err(format!(
                "{name} {since} is in the future; pass the last second you saw"
            )),
            _ => Ok(()),
        }
    }

    /// Does the subscribe a URL named (answered under id `"url"`); on an
    /// event stream, the only one it has.
    pub async fn open_url(&mut self, request: Subscribe, w: &mut Writer<'_>) -> Result<(), End> {
        self.subscribe(&Value::String(URL_ID.into()), request, w)
            .await
    }
}

/// Why `grant` does not allow one of `streams`, if it does not.
fn forbidden(grant: &Grant, streams: &[Stream]) -> Option<String> {
    streams.iter().find_map(|s| {
        let allowed = match &s.kind {
            Kind::Point(a) | Kind::Kline(a, _) | Kind::Ticker(a) => grant.scope.allows(a.id),
            Kind::AllPoints | Kind::AllTickers => grant.scope.is_all(),
        };
        (!allowed).then(|| {
            format!(
                "this connection's token does not allow the stream '{}'",
                s.name
            )
        })
    })
}

#[derive(Serialize)]
struct Listing<'a> {
    streams: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
}

impl V2 {
    fn listing(&self) -> Listing<'_> {
        Listing {
            streams: self.streams.iter().map(|(n, _)| n.as_str()).collect(),
            epoch: None,
        }
    }

    fn has(&self, feed: Feed) -> bool {
        self.streams.iter().any(|(_, f)| *f == feed)
    }

    /// Resolves every name, or refuses the lot. A request naming more
    /// streams than a connection may hold is refused before any is read.
    fn resolve_all(
        streams: &Streams,
        names: &[String],
        max: usize,
    ) -> Result<Vec<Stream>, (ErrorType, String)> {
        if names.len() > max {
            return Err((
                ErrorType::ValidationError,
                format!(
                    "too many streams: at most {max} a connection; this request names {}",
                    names.len()
                ),
            ));
        }
        names.iter().map(|n| resolve(streams, n)).collect()
    }

    async fn unsubscribe(
        &mut self,
        id: &Value,
        names: &[String],
        w: &mut Writer<'_>,
    ) -> Result<(), End> {
        let gone = match Self::resolve_all(w.streams, names, usize::MAX) {
            Ok(gone) => gone,
            Err((kind, text)) => return w.send(Event::Error, error_json(id, kind, &text)).await,
        };
        for stream in gone {
            let feed = stream.feed();
            w.outbox.leave_feed(feed);
            self.streams.retain(|(_, f)| *f != feed);
        }
        w.send(Event::Answer, answer_json(id, self.listing())).await
    }

    /// Opens the new streams of a subscribe, all or none: every name is
    /// resolved and every snapshot read before the answer; then each
    /// stream's snapshot is sent and the stream goes live.
    async fn subscribe(
        &mut self,
        id: &Value,
        request: Subscribe,
        w: &mut Writer<'_>,
    ) -> Result<(), End> {
        let streams = w.streams;
        let max = Self::max_streams(streams, &self.grant);
        let mut new = match Self::resolve_all(streams, &request.streams, max) {
            Ok(new) => new,
            Err((kind, text)) => return w.send(Event::Error, error_json(id, kind, &text)).await,
        };
        if let Some(text) = forbidden(&self.grant, &new) {
            return w
                .send(Event::Error, error_json(id, ErrorType::Forbidden, &text))
                .await;
        }
        // Streams the connection has, or that a request names twice, are
        // opened once.
        let mut seen = std::collections::HashSet::new();
        new.retain(|s| {
            let feed = s.feed();
            !self.has(feed) && seen.insert(feed)
        });
        if self.streams.len() + new.len() > max {
            let text = format!(
                "too many streams: at most {max} a connection; it has {} and this subscribe adds {}",
                self.streams.len(),
                new.len()
            );
            return w
                .send(
                    Event::Error,
                    error_json(id, ErrorType::ValidationError, &text),
                )
                .await;
        }
        if let Err(text) = Self::check_since("params.since", request.since) {
            return w
                .send(
                    Event::Error,
                    error_json(id, ErrorType::ValidationError, &text),
                )
                .await;
        }
        let epoch = match streams.epoch().await {
            Ok(epoch) => epoch,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the data epoch for a subscribe");
                let text = "the rates store is unavailable right now; subscribe again shortly";
                return w
                    .send(Event::Error, error_json(id, ErrorType::Internal, text))
                    .await;
            }
        };
        let same_epoch = request.epoch.as_deref().is_none_or(|e| e == epoch);
        let mut opening = Vec::with_capacity(new.len());
        for stream in new {
            match open(streams, stream, &request, same_epoch).await {
                Ok(o) => opening.push(o),
                Err(text) => {
                    return w
                        .send(Event::Error, error_json(id, ErrorType::Internal, &text))
                        .await;
                }
            }
        }
        for o in &opening {
            self.streams.push((o.stream.name.clone(), o.stream.feed()));
        }
        let mut answer = self.listing();
        answer.epoch = Some(&epoch);
        w.send(Event::Answer, answer_json(id, answer)).await?;
        self.generation += 1;
        for o in opening {
            self.go_live(o, w).await?;
        }
        Ok(())
    }

    /// Sends a stream's snapshot, then hands it to the live fan-out.
    async fn go_live(&mut self, o: Opening, w: &mut Writer<'_>) -> Result<(), End> {
        let Opening {
            stream,
            receiver,
            snapshot,
            last,
            kline,
        } = o;
        // One frame, never fragmented: the hub's frames of the connection's
        // other streams may come between any two frames.
        w.send(Event::Snapshot, snapshot).await?;
        let live = Live {
            feed: stream.feed(),
            generation: self.generation,
            last,
        };
        let hub = &w.streams.hub;
        match (&stream.kind, receiver, kline) {
            (Kind::Kline(asset, _), Receiver::Asset(mut receiver), Some(mut state)) => {
                let klines = hub.klines();
                w.go_live(live, |write| {
                    klines.seed(asset.id, &mut state, |state| {
                        catch_up(&mut receiver, |p| {
                            if let Some(update) = state.push(p.time, p.value) {
                                let frames: Vec<_> = update
                                    .closed
                                    .iter()
                                    .chain([&update.forming])
                                    .map(|c| stream_wire(&stream.name, c))
                                    .collect();
                                write(p.time, &frames);
                            }
                        })
                    })
                })
            }
            // A ticker is state: after the points taken meanwhile, the
            // ticker as it is now stands for all of them.
            (Kind::Ticker(asset), Receiver::Asset(mut receiver), _) => w.go_live(live, |write| {
                let mut newest = None;
                catch_up(&mut receiver, |p| newest = Some(p.time))?;
                if let (Some(time), Some(t)) = (newest, hub.tickers().current(asset.id)) {
                    let data = TickerData::new(&asset.name, asset.id, &t, false);
                    write(time, &[stream_wire(&stream.name, data)]);
                }
                Ok(())
            }),
            (Kind::AllPoints, Receiver::Market(mut receiver), _) => w.go_live(live, |write| {
                catch_up_market(&mut receiver, |s| {
                    write(s.time, std::slice::from_ref(&s.points));
                })
            }),
            (Kind::AllTickers, Receiver::Market(mut receiver), _) => w.go_live(live, |write| {
                catch_up_market(&mut receiver, |s| {
                    write(s.time, std::slice::from_ref(&s.tickers));
                })
            }),
            (_, Receiver::Asset(mut receiver), _) => w.go_live(live, |write| {
                catch_up(&mut receiver, |p| {
                    write(p.time, std::slice::from_ref(&p.stream));
                })
            }),
            (_, Receiver::Market(_), _) => Err(End::Close(
                crate::stream::frame::close::INTERNAL,
                "a stream opened on the wrong channel".into(),
            )),
        }
    }
}
