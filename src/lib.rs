//! ratesd streams currency and crypto rates to apps over REST and WebSocket.
//!
//! How the crate is laid out (each module is named after what it does; the
//! imports between them form no cycle):
//! - [`app`] — startup: composes the roles, stops them in order.
//! - [`config`] — every setting (environment, `.env`, flags) and the roles.
//! - [`telemetry`] — logs (text or JSON) and the Prometheus recorder.
//! - [`access`] — who is calling: keys, tokens, tiers.
//! - [`domain`] — assets and the catalog, symbols, quotes, points.
//! - [`sources`] — upstreams (FXCM, Binance, a recorded file, a simulation)
//!   behind one trait, with their payload parsers.
//! - [`worker`] — the once-a-second tick from sources to the engine: the
//!   election of one writer, schedule, source selection, circuit breakers,
//!   window refill.
//! - [`store`] — the engine (embedded, Redis or a Redis Cluster) and
//!   PostgreSQL, each the only owner of its key names or SQL; the archiver
//!   between them; history read across both.
//! - [`stream`] — the WebSocket side: upgrade, session, the v1 protocol,
//!   the live hub, the outbox, the history cache.
//! - [`api`] — the HTTP side: router and front door, REST v1, health,
//!   metrics, the test page, OpenAPI and Swagger UI.
//! - [`client`] — the demo WebSocket client, `ratesd client`.
//! - [`clock`], [`backoff`], [`hash`] — the wall clock, retry delays, FNV.

pub mod access;
pub mod api;
pub mod app;
pub mod backoff;
pub mod client;
pub mod clock;
pub mod config;
pub mod domain;
pub mod hash;
pub mod sources;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod worker;
