//! The HTTP side: REST v1, health, OpenAPI and Swagger UI.

pub mod cache;
pub mod error;
pub mod health;
pub mod limit;
pub mod metrics;
pub mod page;
pub mod rest;
pub mod upgrade;
pub mod ws;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::domain::Catalog;
use crate::live::LiveHub;
use crate::store::{Archive, RedisStore};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub catalog: Arc<Catalog>,
    pub redis: RedisStore,
    pub archive: Option<Archive>,
    pub stale_after_seconds: u32,
    pub window_seconds: u32,
    pub hub: LiveHub,
    /// The latest rates, prepared once per tick.
    pub rates: Arc<cache::RatesCache>,
    /// Each asset's WebSocket history, read once per tick.
    pub history: Arc<cache::HistoryCache>,
    /// The catalog's JSON, prepared once.
    pub catalog_json: cache::Prepared,
    pub ws: ws::WsSettings,
    pub enable_ui: bool,
    /// Per-IP request limit; `None` when off.
    pub http_limiter: Option<Arc<limit::HttpLimiter>>,
    pub ws_connections: Arc<limit::ConnectionLimiter>,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Cancelled at shutdown: WebSocket sessions close with 1001.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ratesd",
        description = "Currency and crypto rates: the latest quote of every asset, \
            paginated per-second history, and a WebSocket stream.\n\n\
            Errors are RFC 9457 problem details (`application/problem+json`). \
            A point is one asset's mid price `(bid + ask) / 2`, rounded to 6 \
            decimals, at one whole Unix second.",
        license(name = "MIT")
    ),
    tags(
        (name = "rates", description = "Versioned REST API under /api/v1"),
        (name = "websocket", description = "Live points over a WebSocket: GET /api/v1/ws"),
        (name = "health", description = "Liveness and readiness probes"),
    ),
    components(schemas(
        ws::frames::WsRequest,
        ws::frames::WsAssetsFrame,
        ws::frames::WsHistoryFrame,
        ws::frames::WsPointFrame,
        ws::frames::WsErrorFrame,
    ))
)]
struct ApiDoc;

/// The OpenAPI document and the routes it describes.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    // The v1 routes carry their full paths: one flat router, no nested
    // prefix to strip on every request.
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(rest::router())
        .merge(ws::router())
        .merge(health::router())
        .merge(metrics::router())
        .split_for_parts()
}

/// The whole application, ready to serve.
pub fn app(state: AppState) -> Router {
    let (api, openapi) = routes();
    let app = api
        .route("/", axum::routing::get(page::root))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            front_door,
        ))
        .merge(SwaggerUi::new("/docs").url("/api-docs/openapi.json", openapi))
        .fallback(error::not_found)
        // No route reads a body: a large one is refused (413) up front.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(16 * 1024))
        .with_state(state);
    // Request spans and events are at DEBUG: when the log filter would drop
    // them all, the layer is left out rather than paid for on every request.
    if tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG) {
        app.layer(TraceLayer::new_for_http())
    } else {
        app
    }
}

/// In front of every route: the per-IP limit, then the request metrics,
/// in one middleware (each layer costs on the hot, cached rate routes).
async fn front_door(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = metrics::intern(
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str),
    );
    let quota = match &state.http_limiter {
        None => None,
        Some(limiter) => {
            let ip = limit::client_ip(limiter.trusted(), peer.ip(), request.headers());
            match limiter.admit(request.uri().path(), ip) {
                Ok(quota) => quota,
                Err(refused) => {
                    metrics::record(route, &method, 429, started.elapsed());
                    return *refused;
                }
            }
        }
    };
    let mut response = next.run(request).await;
    if let Some(quota) = quota {
        quota.set(response.headers_mut());
    }
    metrics::record(
        route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Serves `app` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = app(state);
    // Points are small and latency-bound: no Nagle delay on any socket.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
