//! Everything a WebSocket connection is, apart from HTTP routing.
//!
//! - [`upgrade`]: the HTTP upgrade and the start of a session.
//! - [`session`]: a connection's life whatever its protocol: limits,
//!   pings, closes, the outbox's reports; [`session::Protocol`] is what a
//!   protocol adds.
//! - [`v1`]: the seed protocol (`assets`, `subscribe`, history, points).
//! - [`v2`]: many streams a connection (points and klines), request ids,
//!   resume with `since` and `epoch`.
//! - [`klines`]: the kline streams' candles, built once per process.
//! - [`tickers`]: the 24-hour tickers, one per asset per process, kept as
//!   points are published and seeded from the store.
//! - [`deflate`]: WebSocket compression (`permessage-deflate`), over the
//!   outbox's prepared frames.
//! - [`frame`]: what goes over the wire: the envelope, errors, close codes,
//!   the frames prepared once for every subscriber.
//! - [`hub`]: one engine subscription per process, fanned out to every
//!   subscriber's socket, each feed's frames encoded once per tick.
//! - [`outbox`]: a connection's write side, shared by its session and the hub.
//! - [`history`]: each asset's history, read once per tick.
//! - [`state`]: what every connection shares.
//! - [`stall`]: a client that keeps its connection but reads nothing.
//! - [`sse`]: the v2 streams as server-sent events, a third transport of
//!   the hub and outbox.
//!
//! The rule that keeps the handoff from history to live gapless: a
//! subscriber attaches to the asset's broadcast channel before it reads the
//! history, and joins the fan-out under its outbox's lock
//! ([`session::Link::go_live`]).

pub mod deflate;
pub mod frame;
pub mod grant;
pub mod history;
pub mod hub;
pub mod klines;
pub mod outbox;
pub mod session;
pub mod sse;
pub mod stall;
pub mod state;
pub mod ticker_seeding;
pub mod tickers;
pub mod upgrade;
pub mod v1;
pub mod v2;

pub use self::grant::Grant;
pub use self::hub::LiveHub;
pub use self::state::{Streams, WsSettings};
pub use self::upgrade::{UpgradeRejection, WsUpgrade, accept};
