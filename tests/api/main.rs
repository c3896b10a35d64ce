//! The integration suite, one test binary: the real service on port 0
//! against the real Redis and PostgreSQL (`helpers`), one module per area.
//! Upstreams are faked only as loopback HTTP servers serving the recorded
//! payloads of `tests/fixtures/`.

mod helpers;

mod access;
mod admin;
mod archive_reads;
mod bare_machine;
mod browser;
mod candles;
mod cluster;
mod cluster_failover;
mod connections;
mod deflate;
mod events;
mod export;
mod front_door;
mod fuzz;
mod hostile;
mod hostile_ws;
mod http_edges;
mod logs;
mod monitoring;
mod outages;
mod partitions;
mod pipeline;
mod redis_cluster;
mod rest_api;
mod scale_out;
mod sentinel;
mod shared_limits;
mod shutdown;
mod streams_v2;
mod tickers;
mod upstreams;
mod websocket;
mod websocket_v2;
