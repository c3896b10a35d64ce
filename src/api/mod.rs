//! The HTTP side: the router and its front door (per-IP limit, request
//! metrics), REST v1, health, metrics, the test page, OpenAPI and Swagger
//! UI. The WebSocket sessions themselves are [`crate::stream`]'s.
//!
//! - [`router`]: the whole application, built from the configuration and
//!   the stores ([`Api::new`]), and [`serve`].
//! - [`v1`]: the versioned REST routes and the v1 WebSocket route.
//! - [`v2`]: the v2 (many-stream) WebSocket route.
//! - [`error`]: one error type for every route, answered as a problem.
//! - [`problem`]: RFC 9457 problem details: their kinds and bodies.
//! - [`problem_answers`]: each kind's page, problem bodies for bare error answers.
//! - [`responses`]: the error answers the OpenAPI document names.
//! - [`caller`]: the caller the front door identified, as routes read it.
//! - [`edge`]: the outermost layer: problem bodies for every error, 204 preflights.
//! - [`front_door`]: in front of every route: the caller, its tier's limit, request metrics.
//! - [`http_cache`]: `ETag`, `If-None-Match`, `Cache-Control`.
//! - [`limit`]: per-tier request limits and connection caps.
//! - [`shared_limit`]: request limits shared by the nodes on one Redis (leases).
//! - [`server`]: accepting connections, their caps and shutdown.
//! - [`connection`]: one connection below hyper: its socket, idle deadline,
//!   and problem bodies for hyper's own error answers.
//! - [`bare_errors`]: problems written below hyper (refusals, parse errors).
//! - [`query`]: query strings, each bad parameter named.
//! - [`health`], [`metrics`], [`page`].

pub mod bare_errors;
pub mod caller;
pub mod connection;
pub mod edge;
pub mod error;
pub mod front_door;
pub mod health;
pub mod http_cache;
pub mod limit;
pub mod metrics;
pub mod page;
pub mod problem;
pub mod problem_answers;
pub mod query;
pub mod responses;
pub mod router;
pub mod server;
pub mod shared_limit;
pub mod v1;
pub mod v2;

pub use self::router::{Api, App, app, serve};
