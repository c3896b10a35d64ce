//! A bare axum hello-world on the same runtime: the baseline that
//! `loadtest/RESULTS.md` compares the rate routes against.
//!
//!   cargo run --release --example hello -- 127.0.0.1:18099
//!   wrk -t2 -c64 -d20s --latency http://127.0.0.1:18099/hello

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18099".to_owned());
    let app = Router::new().route("/hello", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}/hello");
    axum::serve(listener, app).await
}
