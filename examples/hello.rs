//! A bare axum route on the same runtime: the baseline that
//! `loadtest/RESULTS.md` compares the rate routes against.
//!
//!   cargo run --release --example hello -- 127.0.0.1:18099 [BODY]
//!   wrk -t1 -c64 -d5s http://127.0.0.1:18099/hello
//!
//! `BODY` (default `hello`) is what `/hello` answers, as
//! `application/json`: `loadtest/rest-ratio.sh` passes the rate route's own
//! answer, so that both write a body of the same size.
//!
//! `/hello/{symbol}` answers the same, shaped as the rate route is in axum:
//! a path parameter taken as a `String`, under a route layer (one that
//! passes every request on): what axum itself costs for that shape.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18099".to_owned());
    let body: &'static str = args.next().unwrap_or_else(|| "hello".to_owned()).leak();
    let shaped = Router::new()
        .route(
            "/hello/{symbol}",
            get(move |Path(symbol): Path<String>| async move {
                std::hint::black_box(symbol);
                ([(header::CONTENT_TYPE, "application/json")], body)
            }),
        )
        .route_layer(tower::layer::util::Identity::new());
    let app = Router::new()
        .route(
            "/hello",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) }),
        )
        .merge(shaped);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}/hello");
    axum::serve(listener, app).await
}
