//! ratesd streams currency and crypto rates to apps over REST and WebSocket.
//!
//! How the crate is laid out:
//! - [`config`] — every setting (environment, `.env`, flags) and the roles.
//! - [`telemetry`] — the tracing subscriber.
//! - [`domain`] — assets and the catalog, symbols, quotes, points.
//! - [`sources`] — upstreams (FXCM, Binance, a recorded file, a simulation)
//!   behind one trait, with their payload parsers.
//! - [`worker`] — the once-a-second tick from sources to Redis.
//! - [`archiver`] — the archive buffer (a Redis stream) to PostgreSQL.
//! - [`store`] — Redis ([`store::redis`]) and PostgreSQL ([`store::archive`]),
//!   each the only place that knows its key names or SQL.
//! - [`history`] — reading a range across the Redis window and the archive.
//! - [`live`] — one Redis subscription per process, fanned out to WebSockets.
//! - [`outbox`] — a WebSocket's write side, shared by its session and the fan-out.
//! - [`client`] — the demo WebSocket client, `ratesd client`.
//! - [`api`] — the HTTP router: REST v1, the WebSocket, the test page,
//!   health, OpenAPI and Swagger UI.
//! - [`app`] — startup and shutdown of the parts a role runs.

pub mod api;
pub mod app;
pub mod archiver;
pub mod breaker;
pub mod client;
pub mod config;
pub mod domain;
pub mod history;
pub mod live;
pub mod outbox;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod worker;
