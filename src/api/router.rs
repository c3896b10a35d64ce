//! The whole application: every resource's routes, each with its own
//! state, merged in one place behind one front door.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use super::edge::{Edge, EdgeLayer};
use super::front_door::{Access, FrontDoor, FrontDoorLayer, RouteLabels};
use super::health::{self, HealthState, WorkerRole};
use super::http_cache::Shortcut;
use super::limit::HttpLimiter;
use super::server::ConnectionSettings;
use super::shared_limit::SharedLimits;
use super::v1::{self, V1State};
use super::{error, metrics, page, problem_answers};
use crate::access::{AccessError, Gate};
use crate::config::Config;
use crate::store::{Archive, Engine};
use crate::stream::Streams;
use crate::stream::v1::docs;
use crate::stream::v2::docs as docs_v2;

/// Connections the admin listener holds at once (scrapers and probes): its
/// own budget, beside the public listener's.
const ADMIN_MAX_OPEN: usize = 64;

/// The API's state, built from the configuration and the stores.
#[derive(Clone)]
pub struct Api {
    v1: Arc<V1State>,
    health: Arc<HealthState>,
    /// Who is calling and their tier's limits; `None` on the admin
    /// listener.
    access: Option<Arc<Access>>,
    /// Deadlines and caps of the HTTP connections.
    connections: ConnectionSettings,
    /// `RATES_CORS_ORIGINS`.
    cors_origins: String,
    /// Only the probes and metrics (`ratesd worker`, the admin listener).
    probes_only: bool,
    /// `/metrics` is served here (not when an admin listener has it).
    metrics_here: bool,
}

impl Api {
    pub fn new(
        config: &Config,
        engine: Engine,
        archive: Option<Archive>,
        streams: Arc<Streams>,
        role: Option<WorkerRole>,
    ) -> Result<Self, AccessError> {
        let gate = Gate::new(config, streams.catalog.clone())?;
        // With Redis, one bucket per client for every node.
        let shared = match &engine {
            crate::store::Engine::Redis(store) => Some(SharedLimits::new(store.clone())),
            crate::store::Engine::Embedded(_) => None,
        };
        let limiter = Arc::new(HttpLimiter::new(gate.tiers(), shared));
        let access = Some(Arc::new(Access { gate, limiter }));
        let v1 = Arc::new(V1State::new(
            config,
            engine.clone(),
            archive.clone(),
            streams,
        ));
        let health = Arc::new(HealthState {
            catalog: v1.catalog.clone(),
            engine,
            archive,
            hub: v1.streams.hub.clone(),
            rates: v1.rates.clone(),
            stale_after_seconds: config.stale_after_seconds,
            role,
        });
        Ok(Self {
            v1,
            health,
            access,
            connections: ConnectionSettings::new(
                std::time::Duration::from_secs(config.http_idle_timeout_seconds),
                config.http_max_connections_per_ip,
            ),
            cors_origins: config.cors_origins.clone(),
            probes_only: false,
            metrics_here: true,
        })
    }

    /// What the admin listener (`RATES_ADMIN_ADDR`) serves: the probes and
    /// `/metrics`, for the operator's network, without the public
    /// listener's request limit and per-IP connection cap.
    pub fn admin(&self) -> Self {
        Self {
            access: None,
            connections: ConnectionSettings {
                max_per_ip: 0,
                max_open: ADMIN_MAX_OPEN,
                ..self.connections.clone()
            },
            probes_only: true,
            metrics_here: true,
            ..self.clone()
        }
    }

    /// Leaves `/metrics` to the admin listener: here it is a 404.
    pub fn without_metrics(mut self) -> Self {
        self.metrics_here = false;
        self
    }

    /// Serves only `/health/*` and `/metrics`: what a worker alone offers.
    pub fn probes_only(mut self) -> Self {
        self.probes_only = true;
        self
    }

    /// The gate and limits: the limiter's memory of idle clients wants
    /// pruning now and then ([`super::limit::forget_idle_clients`]), the
    /// keys file watching ([`crate::access::keys::watch`]).
    pub fn access(&self) -> Option<Arc<Access>> {
        self.access.clone()
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
        (name = "websocket", description = "Live streams: GET /api/v1/ws (one asset a connection), GET /api/v2/ws (many streams a connection, resume, compression), GET /api/v2/events (the same streams as Server-Sent Events)"),
        (name = "health", description = "Liveness and readiness probes"),
    ),
    modifiers(&Credentials),
    components(schemas(
        docs::WsRequest,
        docs::WsAssetsFrame,
        docs::WsHistoryFrame,
        docs::WsPointFrame,
        docs::WsErrorFrame,
        docs_v2::WsV2Request,
        docs_v2::WsV2StreamsAnswer,
        docs_v2::WsV2AssetsAnswer,
        docs_v2::WsV2ErrorAnswer,
        docs_v2::WsV2PointSnapshot,
        docs_v2::WsV2KlineSnapshot,
        docs_v2::WsV2PointData,
        docs_v2::WsV2KlineData,
        docs_v2::WsV2TickerSnapshot,
        docs_v2::WsV2TickerData,
        docs_v2::WsV2AllPointsSnapshot,
        docs_v2::WsV2AllPointsData,
        docs_v2::WsV2AllTickersData,
    ))
)]
struct ApiDoc;

/// The credentials a deployment with `RATES_AUTH` set asks for: an API
/// key or token as a bearer, a key in `X-API-Key`, either as `?token=` on
/// a WebSocket or event stream. None of them is needed where `RATES_AUTH`
/// is `off` or `optional` (the empty requirement).
struct Credentials;

impl utoipa::Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`rk_...`) or a token (a JWT)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (`rk_...`)",
            ))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "A key or token, on WebSocket upgrades and event streams only",
            ))),
        );
        let none: [&str; 0] = [];
        openapi.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", none),
            SecurityRequirement::new("apiKey", none),
            SecurityRequirement::new("token", none),
        ]);
    }
}

/// The whole application as one service: the routes, and in front of them
/// the layers every answer passes (outside the router, so that a request
/// goes through each once, not through a boxed copy per layer and route).
pub type App = Edge<FrontDoor<Router>>;

/// Where the Swagger UI and the OpenAPI document are served (outside the
/// front door: a deployment that asks for keys shows its documentation
/// without one).
const DOCS: &str = "/docs";
const OPENAPI_DOCUMENT: &str = "/api-docs/openapi.json";

/// The whole application, ready to serve (or only its probes and metrics).
pub fn app(api: &Api) -> App {
    let with_metrics = |routes: OpenApiRouter| {
        if api.metrics_here {
            routes.merge(metrics::router().with_state(api.health.clone()))
        } else {
            routes
        }
    };
    let (routes, labels, shortcut) = if api.probes_only {
        let (routes, openapi) = with_metrics(
            OpenApiRouter::new().merge(health::router().with_state(api.health.clone())),
        )
        .split_for_parts();
        let labels = RouteLabels::new(openapi.paths.paths.keys().map(String::as_str), [], []);
        (routes.fallback(error::not_found), labels, None)
    } else {
        let (routes, openapi) = with_metrics(
            OpenApiRouter::with_openapi(ApiDoc::openapi())
                .merge(v1::router().with_state(api.v1.clone()))
                .merge(super::v2::router().with_state(api.v1.clone()))
                .merge(health::router().with_state(api.health.clone())),
        )
        .routes(utoipa_axum::routes!(problem_answers::problem_page))
        .split_for_parts();
        // Every route but the documentation's is in the document, and the
        // page's.
        let labels = RouteLabels::new(
            openapi
                .paths
                .paths
                .keys()
                .map(String::as_str)
                .chain([page::PATH]),
            [DOCS],
            [OPENAPI_DOCUMENT],
        );
        let openapi = inline_primitive_schemas(openapi);
        let routes = routes
            .merge(page::router().with_state(api.v1.clone()))
            // The OpenAPI document is large and compresses well.
            .merge(
                Router::from(SwaggerUi::new(DOCS).url(OPENAPI_DOCUMENT, openapi))
                    .layer(CompressionLayer::new()),
            )
            // Unmatched paths: a 404, limited and counted by the front door
            // around the router like every other request.
            .fallback(error::not_found);
        let shortcut = v1::LatestRate::new(api.v1.clone())
            .map(|shortcut| Arc::new(shortcut) as Arc<dyn Shortcut>);
        (routes, labels, shortcut)
    };
    // Request spans and events are at DEBUG: when the log filter would drop
    // them all, the layer is left out rather than paid for on every request.
    let tracing_requests = tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG);
    let routes = if tracing_requests {
        // The path, never the query: a `?token=` is a credential.
        routes.layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            },
        ))
    } else {
        routes
    };
    // With request spans on, every request goes through the router: each
    // has its span.
    let shortcut = shortcut.filter(|_| !tracing_requests);
    let routes = FrontDoorLayer::new(api.access.clone(), labels, shortcut).layer(routes);
    // CORS, and the 413 of a large body (no route reads one), up front.
    let (cors, always) = cors(&api.cors_origins);
    EdgeLayer::new(cors, always).layer(routes)
}

/// utoipa names the domain's integer aliases (`AssetId`, `UnixSeconds`) as
/// component schemas called `u32` and `i64`; clients' generators then make
/// types of those names. Each reference to them is replaced by the schema
/// itself, and the two components are dropped.
fn inline_primitive_schemas(openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use serde_json::Value;
    let Ok(mut doc) = serde_json::to_value(&openapi) else {
        return openapi;
    };
    let mut primitives = serde_json::Map::new();
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for name in ["i64", "u32"] {
            if let Some(schema) = schemas.remove(name) {
                primitives.insert(format!("#/components/schemas/{name}"), schema);
            }
        }
    }
    fn inline(v: &mut Value, primitives: &serde_json::Map<String, Value>) {
        match v {
            Value::Object(map) => {
                let target = map.get("$ref").and_then(Value::as_str).map(str::to_owned);
                if let Some(schema) = target.and_then(|r| primitives.get(&r)) {
                    map.remove("$ref");
                    if let Value::Object(s) = schema {
                        for (k, v) in s {
                            map.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
                map.values_mut().for_each(|v| inline(v, primitives));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| inline(v, primitives)),
            _ => {}
        }
    }
    inline(&mut doc, &primitives);
    serde_json::from_value(doc).unwrap_or(openapi)
}

/// What a browser on another origin may read of an answer.
const EXPOSED: [HeaderName; 8] = [
    header::ETAG,
    header::LINK,
    header::RETRY_AFTER,
    super::limit::LIMIT,
    super::limit::REMAINING,
    super::limit::RESET,
    super::limit::POLICY,
    header::WWW_AUTHENTICATE,
];

/// The CORS header of every answer when any origin is allowed, with an
/// `Origin` or without: a shared cache that ignores `Vary` may hand an
/// answer to a request without one to a browser, which can then read its
/// body. (The exposed list is left to answers to requests with an
/// `Origin`: it is the largest header of an answer, and the headers it
/// names, of an answer a cache kept, are not the reader's own.)
static ANY_ORIGIN: [(HeaderName, HeaderValue); 1] = [(
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    HeaderValue::from_static("*"),
)];

/// CORS for browser front ends on other origins: the read-only API may be
/// read from any listed origin (`*`: any); preflights are answered here,
/// and every answer to a request with an `Origin` (errors included)
/// carries the headers. With any origin allowed, the answers to requests
/// without one carry [`ANY_ORIGIN`] (the second value).
fn cors(origins: &str) -> (CorsLayer, &'static [(HeaderName, HeaderValue)]) {
    let origins = origins.trim();
    let (allow, always) = if origins == "*" {
        (AllowOrigin::any(), &ANY_ORIGIN[..])
    } else {
        let listed = AllowOrigin::list(
            origins
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        );
        (listed, &[][..])
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([
            header::IF_NONE_MATCH,
            header::ACCEPT,
            header::CACHE_CONTROL,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ])
        .expose_headers(EXPOSED)
        .max_age(std::time::Duration::from_secs(600));
    (layer, always)
}

/// Serves the API on `listener` until `shutdown` ([`super::server`]).
pub async fn serve(
    listener: TcpListener,
    api: Api,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let settings = api.connections.clone();
    super::server::serve(listener, app(&api), settings, shutdown).await
}
