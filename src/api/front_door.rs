//! In front of the routes: who is calling ([`Gate::identify`]: a 401 for a
//! credential refused), their tier's request limit, then the request
//! metrics. The front door knows its connection's peer ([`ForPeer`]); a
//! request it passes to the router carries it, and the caller's identity,
//! as its [`Peer`].
//!
//! One route's common request is answered here, without the router: a
//! [`Shortcut`] (the latest rate of one asset, prepared once a tick). The
//! router's matching and path parameters, the handler's extractors and the
//! futures around them were a quarter of such an answer's instructions; the
//! shortcut declines every other request of its route (an error, a query,
//! a rebuild due), which the route itself answers.
//!
//! A plain tower layer around the whole router rather than a `from_fn`
//! middleware or a route layer: the cached rate routes answer in a few
//! microseconds, and a boxed `Next`, a boxed future and axum's boxed route
//! per request were a measurable part of that. The route's metric label is
//! the route template the path matches ([`RouteLabels`], from the same
//! templates the router is built from), looked up without allocating.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use tower::{Layer, Service};

use axum::http::{HeaderValue, Method, StatusCode, header};

use super::caller::{ForPeer, Peer};
use super::http_cache::Shortcut;
use super::limit::{Admission, HttpLimiter, Quota3};
use super::metrics;
use super::problem::{Kind, Problem};
use crate::access::{Client, Gate, Identity, Refusal};
use crate::stream::stall::SocketFd;

/// Who is calling and how much they may: the gate and the tiers' limits.
pub struct Access {
    pub gate: Gate,
    pub limiter: Arc<HttpLimiter>,
}

/// Puts [`FrontDoor`] in front of the router.
#[derive(Clone)]
pub struct FrontDoorLayer {
    shared: Arc<Shared>,
}

impl FrontDoorLayer {
    /// `access`: the gate and limits; `None` (the admin listener): every
    /// request passes as it is. `labels`: the routes' templates, and the
    /// paths served outside the front door. `shortcut`: a route's common
    /// answer, given here (with `access` only); one whose route is not
    /// among the templates is logged and left out.
    pub fn new(
        access: Option<Arc<Access>>,
        mut labels: RouteLabels,
        shortcut: Option<Arc<dyn Shortcut>>,
    ) -> Self {
        let shortcut = shortcut.and_then(|shortcut| {
            let route = shortcut.route();
            let label = match labels.templates.at(route) {
                Ok(m) if *m.value == route && m.params.len() == 1 => *m.value,
                _ => {
                    tracing::error!(
                        route,
                        "a shortcut's route is not among the routes, or has not one parameter"
                    );
                    return None;
                }
            };
            labels.favour(route);
            Some(Answers {
                label,
                shortcut,
                given: {
                    // The recorder is installed before the first request.
                    crate::telemetry::metrics();
                    ::metrics::counter!("ratesd_http_shortcut_answers_total")
                },
            })
        });
        Self {
            shared: Arc::new(Shared {
                access,
                labels,
                shortcut,
            }),
        }
    }
}

impl<S> Layer<S> for FrontDoorLayer {
    type Service = FrontDoor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FrontDoor {
            inner,
            shared: self.shared.clone(),
            peer: Peer::unknown(),
        }
    }
}

/// The front door of the router it wraps.
#[derive(Clone)]
pub struct FrontDoor<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Its connection's address and socket ([`Peer::unknown`] for a
    /// request that came by no connection); no identity.
    peer: Peer,
}

impl<S: Clone> ForPeer for FrontDoor<S> {
    fn for_peer(&self, addr: SocketAddr, fd: SocketFd) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            peer: Peer {
                addr,
                fd: Some(fd),
                identity: None,
            },
        }
    }
}

struct Shared {
    access: Option<Arc<Access>>,
    labels: RouteLabels,
    shortcut: Option<Answers>,
}

/// The shortcut with what the front door keeps of it.
struct Answers {
    /// Its route's label (interned: compared by address).
    label: &'static str,
    shortcut: Arc<dyn Shortcut>,
    /// How many answers it gave.
    given: ::metrics::Counter,
}

/// The `route` label of a request: the route template its path matches,
/// as the router matches it (`unmatched` for none); and the paths served
/// outside the front door (the API's documentation), which pass it by.
pub struct RouteLabels {
    templates: matchit::Router<&'static str>,
    /// The templates in the table.
    labels: Vec<&'static str>,
    /// One template matched before the table (see [`RouteLabels::favour`]).
    favoured: Option<Favoured>,
    /// Each serves itself and every path below it.
    trees: Vec<String>,
    /// Each serves itself only.
    pages: Vec<String>,
}

impl RouteLabels {
    /// `templates` in axum's syntax (`/api/v1/rates/{symbol}`). One that
    /// the table refuses (given twice, or conflicting: the router could
    /// not have been built with it either) is logged and left out (its
    /// requests are labelled `unmatched`). Outside the front door: `trees`
    /// (each path and every path below it) and `pages` (each path alone).
    pub fn new<'a>(
        templates: impl IntoIterator<Item = &'a str>,
        trees: impl IntoIterator<Item = &'a str>,
        pages: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut table = matchit::Router::new();
        let mut labels = Vec::new();
        for template in templates {
            let label = metrics::intern(template);
            match table.insert(template, label) {
                Ok(()) => labels.push(label),
                Err(e) => {
                    tracing::error!(template, error = %e, "a route template cannot label metrics")
                }
            }
        }
        Self {
            templates: table,
            labels,
            favoured: None,
            trees: trees.into_iter().map(str::to_owned).collect(),
            pages: pages.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Matches `template` before the table, by its prefix: the route of
    /// the front door's shortcut, whose requests are most of all, and for
    /// which the table's walk was a twentieth of an answer's instructions.
    /// Only a template in the table that ends in its one parameter
    /// (`/api/v1/rates/{symbol}`), and only while no other template could
    /// match a path that it matches (`/api/v1/rates/latest` would, which
    /// the table prefers; `/api/v1/rates/{symbol}/history` does not): then
    /// the prefix and one segment match exactly where the table would.
    /// Otherwise nothing changes, and that is logged.
    pub fn favour(&mut self, template: &str) {
        let prefix = template
            .strip_suffix('}')
            .and_then(|rest| rest.rsplit_once('{'))
            .map(|(prefix, _)| prefix)
            .filter(|prefix| prefix.ends_with('/') && !prefix.contains(['{', '}']));
        let label = self.labels.iter().find(|label| **label == template);
        let shadowed = |prefix: &str| {
            self.labels.iter().any(|other| {
                *other != template
                    && other
                        .strip_prefix(prefix)
                        .is_some_and(|rest| !rest.contains('/'))
            })
        };
        match (prefix, label) {
            (Some(prefix), Some(&label)) if !shadowed(prefix) => {
                self.favoured = Some(Favoured {
                    prefix: prefix.to_owned(),
                    label,
                });
            }
            _ => tracing::warn!(
                template,
                "a route is matched by the table only: it is not one the table has \
                 ending in its one parameter, or another route could match its paths"
            ),
        }
    }

    /// The label of `path`, and its path parameter when the template has
    /// exactly one.
    fn matching<'p>(&self, path: &'p str) -> (&'static str, Option<&'p str>) {
        if let Some(favoured) = &self.favoured
            && let Some(param) = path.strip_prefix(favoured.prefix.as_str())
            && !param.is_empty()
            && !param.contains('/')
        {
            debug_assert_eq!(
                self.in_table(path),
                (favoured.label, Some(param)),
                "the favoured template matched {path} where the table did not"
            );
            return (favoured.label, Some(param));
        }
        self.in_table(path)
    }

    /// [`RouteLabels::matching`] by the table.
    fn in_table<'p>(&self, path: &'p str) -> (&'static str, Option<&'p str>) {
        match self.templates.at(path) {
            Ok(m) => {
                let param = (m.params.len() == 1)
                    .then(|| m.params.iter().next().map(|(_, value)| value))
                    .flatten();
                (*m.value, param)
            }
            Err(_) => ("unmatched", None),
        }
    }

    /// Whether `path` is served outside the front door.
    pub fn passes_by(&self, path: &str) -> bool {
        self.pages.iter().any(|page| page == path)
            || self.trees.iter().any(|tree| {
                path.strip_prefix(tree.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }
}

/// A template matched by its prefix and one more segment.
struct Favoured {
    prefix: String,
    label: &'static str,
}

/// Any request body (hyper's, as the connection hands it over).
impl<S, B> Service<Request<B>> for FrontDoor<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FrontDoorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        if self.shared.labels.passes_by(path) {
            self.introduce(&mut request, None);
            return FrontDoorFuture::PassedBy {
                fut: self.inner.call(request),
            };
        }
        let (route, param) = self.shared.labels.matching(path);
        let started = Instant::now();
        let method = metrics::method_label(request.method());
        let mut private = false;
        let quota = match &self.shared.access {
            // No one is identified here (the admin listener).
            None => {
                self.introduce(&mut request, None);
                None
            }
            Some(access) => {
                let peer = self.peer.addr.ip();
                let upgrade = || crate::stream::upgrade::asks_for_websocket(request.headers());
                let who =
                    match access
                        .gate
                        .identify(peer, request.headers(), request.uri(), upgrade)
                    {
                        Ok(who) => who,
                        Err(refusal) => {
                            // Counted against the address's anonymous limit:
                            // guessing costs what asking does.
                            let anonymous = access.gate.anonymous_at(peer, request.headers());
                            let refused = unauthorized(&refusal);
                            return match access.limiter.admit(request.uri().path(), &anonymous) {
                                Admission::Now(Err(limited)) => {
                                    self.answered(*limited, route, method, started)
                                }
                                Admission::Now(Ok(_)) => {
                                    self.answered(refused, route, method, started)
                                }
                                Admission::Later(check) => FrontDoorFuture::Waiting {
                                    fut: Box::pin(async move {
                                        match check.await {
                                            Err(limited) => *limited,
                                            Ok(_) => refused,
                                        }
                                    }),
                                    started,
                                    route,
                                    method,
                                },
                            };
                        }
                    };
                let admission = access.limiter.admit(request.uri().path(), &who);
                // A caller's answers are its own: no shared cache may keep them.
                private = !matches!(who.client, Client::Ip(_));
                match admission {
                    Admission::Now(Ok(quota)) => {
                        if let Some(mut response) = self.shortcut(&request, route, param, &who) {
                            finish(&mut response, quota, private);
                            return self.answered(response, route, method, started);
                        }
                        self.introduce(&mut request, Some(who));
                        quota
                    }
                    Admission::Now(Err(refused)) => {
                        return self.answered(*refused, route, method, started);
                    }
                    // Redis decides (once per lease): the route is called
                    // when it has.
                    Admission::Later(check) => {
                        self.introduce(&mut request, Some(who));
                        let inner = self.inner.clone();
                        let inner = std::mem::replace(&mut self.inner, inner);
                        return FrontDoorFuture::Waiting {
                            fut: Box::pin(async move {
                                match check.await {
                                    Ok(quota) => {
                                        let Ok(mut response) =
                                            tower::ServiceExt::oneshot(inner, request).await;
                                        finish(&mut response, quota, private);
                                        response
                                    }
                                    Err(refused) => *refused,
                                }
                            }),
                            started,
                            route,
                            method,
                        };
                    }
                }
            }
        };
        FrontDoorFuture::Inner {
            fut: self.inner.call(request),
            started,
            route,
            method,
            quota,
            private,
        }
    }
}

impl<S> FrontDoor<S> {
    /// Gives a request the router is to answer its [`Peer`]: the
    /// connection's, and `who` it was found to be.
    fn introduce<B>(&self, request: &mut Request<B>, who: Option<Identity>) {
        request.extensions_mut().insert(Peer {
            addr: self.peer.addr,
            fd: self.peer.fd,
            identity: who,
        });
    }

    /// An answer given here, without the router (a refusal, a shortcut's).
    fn answered<F>(
        &self,
        response: Response,
        route: &'static str,
        method: &'static str,
        started: Instant,
    ) -> FrontDoorFuture<F> {
        metrics::record(route, method, response.status(), started.elapsed());
        FrontDoorFuture::Answered {
            response: Some(response),
        }
    }

    /// The shortcut's answer, when `request` is a GET with no query of the
    /// shortcut's route and the shortcut has one.
    fn shortcut<B>(
        &self,
        request: &Request<B>,
        route: &'static str,
        param: Option<&str>,
        who: &Identity,
    ) -> Option<Response> {
        let answers = self.shared.shortcut.as_ref()?;
        if !std::ptr::eq(route, answers.label)
            || request.method() != Method::GET
            || request.uri().query().is_some()
        {
            return None;
        }
        let answer = answers.shortcut.answer(param?, request.headers(), who)?;
        answers.given.increment(1);
        Some(answer)
    }
}

/// What an admitted request's answer carries from the front door: the
/// caller's quota, and for a caller with a credential, its privacy. A 304
/// carries no `Content-Length` (axum gives one of 0 for its empty body,
/// which HTTP/2 would pass on; the 200's length is what one would mean).
fn finish(response: &mut Response, quota: Option<Quota3>, private: bool) {
    if response.status() == StatusCode::NOT_MODIFIED {
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    if let Some(quota) = quota {
        quota.set(response.headers_mut());
    }
    if private {
        keep_private(response);
    }
}

/// Marks an answer to a caller with a credential as its own: `private`
/// where it said `public`, and varying by the credential headers, so that
/// no shared cache hands it to another caller.
fn keep_private(response: &mut Response) {
    let headers = response.headers_mut();
    let private = match headers
        .get(header::CACHE_CONTROL)
        .map(HeaderValue::as_bytes)
    {
        // The usual ones without building a string.
        Some(b"public, max-age=1") => Some(HeaderValue::from_static("private, max-age=1")),
        Some(b"public, max-age=60") => Some(HeaderValue::from_static("private, max-age=60")),
        Some(b"public, max-age=300") => Some(HeaderValue::from_static("private, max-age=300")),
        Some(other) => other
            .strip_prefix(b"public")
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|rest| HeaderValue::from_str(&format!("private{rest}")).ok()),
        None => None,
    };
    if let Some(private) = private {
        headers.insert(header::CACHE_CONTROL, private);
    }
    headers.append(
        header::VARY,
        HeaderValue::from_static("Authorization, X-API-Key"),
    );
}

/// The 401 of a refused credential, with its challenge. Nothing of the
/// credential is in it.
fn unauthorized(refusal: &Refusal) -> Response {
    ::metrics::counter!("ratesd_http_unauthorized_total", "reason" => refusal.reason())
        .increment(1);
    let mut response = Problem::new(
        Kind::Unauthorized,
        StatusCode::UNAUTHORIZED,
        refusal.to_string(),
    )
    .respond();
    if let Ok(challenge) = HeaderValue::from_str(&refusal.challenge()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

pin_project_lite::pin_project! {
    #[project = FrontDoorProj]
    pub enum FrontDoorFuture<F> {
        PassedBy { #[pin] fut: F },
        Answered { response: Option<Response> },
        Waiting {
            fut: Pin<Box<dyn Future<Output = Response> + Send>>,
            started: Instant,
            route: &'static str,
            method: &'static str,
        },
        Inner {
            #[pin]
            fut: F,
            started: Instant,
            route: &'static str,
            method: &'static str,
            quota: Option<Quota3>,
            private: bool,
        },
    }
}

impl<F> Future for FrontDoorFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FrontDoorProj::PassedBy { fut } => fut.poll(cx),
            FrontDoorProj::Answered { response } => {
                // Polled once: the answer is ready at once.
                Poll::Ready(Ok(response.take().unwrap_or_default()))
            }
            FrontDoorProj::Waiting {
                fut,
                started,
                route,
                method,
            } => {
                let response = ready!(fut.as_mut().poll(cx));
                metrics::record(route, method, response.status(), started.elapsed());
                Poll::Ready(Ok(response))
            }
            FrontDoorProj::Inner {
                fut,
                started,
                route,
                method,
                quota,
                private,
            } => {
                let Ok(mut response) = ready!(fut.poll(cx));
                finish(&mut response, quota.take(), *private);
                metrics::record(route, method, response.status(), started.elapsed());
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::{HeaderMap, Method};
    use axum::response::Response;
    use tower::{Layer, ServiceExt};

    use super::{Access, FrontDoorLayer, RouteLabels};
    use crate::access::{Gate, Identity};
    use crate::api::http_cache::Shortcut;
    use crate::api::limit::HttpLimiter;
    use crate::config::Config;
    use crate::domain::Catalog;

    /// Answers `/r/{x}` with its parameter, but not `decline`.
    struct Echo(&'static str);

    impl Shortcut for Echo {
        fn route(&self) -> &'static str {
            self.0
        }

        fn answer(&self, param: &str, _: &HeaderMap, _: &Identity) -> Option<Response> {
            (param != "decline").then(|| Response::new(Body::from(format!("shortcut {param}"))))
        }
    }

    /// What the front door answers `method path`, with `shortcut` given
    /// for the route `/r/{x}` and a router that answers `route`.
    async fn answer(shortcut: &'static str, method: Method, path: &str) -> String {
        let config = Config::from_args(["ratesd"]).unwrap();
        let gate = Gate::new(&config, Arc::new(Catalog::with_extra("").unwrap())).unwrap();
        let limiter = Arc::new(HttpLimiter::new(gate.tiers(), None));
        let access = Arc::new(Access { gate, limiter });
        let labels = RouteLabels::new(["/r/{x}", "/s/{x}/{y}"], [], []);
        let echo: Arc<dyn Shortcut> = Arc::new(Echo(shortcut));
        let router = tower::service_fn(|_: Request| async {
            Ok::<_, Infallible>(Response::new(Body::from("route")))
        });
        let front_door = FrontDoorLayer::new(Some(access), labels, Some(echo)).layer(router);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let Ok(response) = front_door.oneshot(request).await;
        let body = axum::body::to_bytes(response.into_body(), 1024).await;
        String::from_utf8(body.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_shortcut_answers_a_get_of_its_route_without_a_query_and_the_route_the_rest() {
        assert_eq!(
            answer("/r/{x}", Method::GET, "/r/abc").await,
            "shortcut abc"
        );
        // Not percent-decoded: the shortcut sees the path's own spelling.
        assert_eq!(
            answer("/r/{x}", Method::GET, "/r/a%2Fb").await,
            "shortcut a%2Fb"
        );
        for (method, path) in [
            (Method::GET, "/r/abc?at=1"),
            (Method::GET, "/r/abc?"),
            (Method::HEAD, "/r/abc"),
            (Method::POST, "/r/abc"),
            (Method::GET, "/r/decline"),
            (Method::GET, "/r/abc/more"),
            (Method::GET, "/s/a/b"),
            (Method::GET, "/elsewhere"),
        ] {
            assert_eq!(
                answer("/r/{x}", method.clone(), path).await,
                "route",
                "{method} {path}"
            );
        }
        // A shortcut for a route the labels do not have, or with not one
        // parameter, is left out.
        assert_eq!(answer("/q/{x}", Method::GET, "/r/abc").await, "route");
        assert_eq!(answer("/r/{y}", Method::GET, "/r/abc").await, "route");
        assert_eq!(answer("/s/{x}/{y}", Method::GET, "/s/a/b").await, "route");
    }

    #[tokio::test]
    async fn a_request_the_router_answers_carries_the_connections_peer_and_who_it_is() {
        use crate::api::caller::{ForPeer, Peer};
        use crate::stream::stall::SocketFd;

        let config = Config::from_args(["ratesd"]).unwrap();
        let gate = Gate::new(&config, Arc::new(Catalog::with_extra("").unwrap())).unwrap();
        let limiter = Arc::new(HttpLimiter::new(gate.tiers(), None));
        let access = Some(Arc::new(Access { gate, limiter }));
        // The route tells what the request carries.
        let router = tower::service_fn(|request: Request| async move {
            let peer = request.extensions().get::<Peer>();
            let seen = peer.map_or("no peer".to_owned(), |peer| {
                let who = peer.identity.as_ref().map(|who| &who.client);
                format!("{} {:?} {who:?}", peer.addr, peer.fd.map(|fd| fd.0))
            });
            Ok::<_, Infallible>(Response::new(Body::from(seen)))
        });
        let addr = "192.0.2.7:4100".parse().unwrap();
        let seen = |access: Option<Arc<Access>>, path: &'static str| {
            let labels = RouteLabels::new(["/r/{x}"], ["/docs"], []);
            let front_door = FrontDoorLayer::new(access, labels, None)
                .layer(router)
                .for_peer(addr, SocketFd(9));
            async move {
                let request = Request::builder().uri(path).body(Body::empty()).unwrap();
                let Ok(response) = front_door.oneshot(request).await;
                let body = axum::body::to_bytes(response.into_body(), 1024).await;
                String::from_utf8(body.unwrap().to_vec()).unwrap()
            }
        };
        assert_eq!(
            seen(access.clone(), "/r/abc").await,
            "192.0.2.7:4100 Some(9) Some(Ip(192.0.2.7))"
        );
        // Outside the front door, and the admin listener's (no one is
        // identified): the connection's peer all the same.
        assert_eq!(seen(access, "/docs").await, "192.0.2.7:4100 Some(9) None");
        assert_eq!(seen(None, "/r/abc").await, "192.0.2.7:4100 Some(9) None");
    }

    #[test]
    fn a_path_is_labelled_by_the_template_it_matches_and_the_docs_pass_by() {
        let labels = RouteLabels::new(
            [
                "/api/v1/rates",
                "/api/v1/rates/{symbol}",
                "/api/v1/rates/{symbol}/history",
                "/",
            ],
            ["/docs"],
            ["/api-docs/openapi.json"],
        );
        assert_eq!(labels.matching("/api/v1/rates"), ("/api/v1/rates", None));
        assert_eq!(
            labels.matching("/api/v1/rates/EURUSD"),
            ("/api/v1/rates/{symbol}", Some("EURUSD"))
        );
        assert_eq!(
            labels.matching("/api/v1/rates/EUR%2FUSD/history"),
            ("/api/v1/rates/{symbol}/history", Some("EUR%2FUSD"))
        );
        assert_eq!(labels.matching("/"), ("/", None));
        for unmatched in ["/api/v1/rates/", "/api/v1/rates/EURUSD/x", "/nothing", ""] {
            assert_eq!(
                labels.matching(unmatched),
                ("unmatched", None),
                "{unmatched}"
            );
        }
        for outside in [
            "/docs",
            "/docs/",
            "/docs/index.html",
            "/api-docs/openapi.json",
        ] {
            assert!(labels.passes_by(outside), "{outside}");
        }
        for inside in [
            "/docsx",
            "/api-docs/openapi.jsonx",
            "/api-docs/openapi.json/x",
            "/",
            "/api/v1/rates",
        ] {
            assert!(!labels.passes_by(inside), "{inside}");
        }
    }

    #[test]
    fn a_favoured_template_matches_where_the_table_does_and_only_when_nothing_shadows_it() {
        let templates = [
            "/api/v1/rates",
            "/api/v1/rates/{symbol}",
            "/api/v1/rates/{symbol}/history",
            "/api/v1/tickers",
            "/",
        ];
        let mut labels = RouteLabels::new(templates, [], []);
        labels.favour("/api/v1/rates/{symbol}");
        assert!(labels.favoured.is_some());
        for path in [
            "/api/v1/rates/EURUSD",
            "/api/v1/rates/EUR%2FUSD",
            "/api/v1/rates/EURUSD/history",
            "/api/v1/rates/EURUSD/",
            "/api/v1/rates/",
            "/api/v1/rates",
            "/api/v1/rates/EURUSD/history/x",
            "/api/v1/ratesEURUSD",
            "/api/v1/tickers",
            "/",
            "",
        ] {
            assert_eq!(labels.matching(path), labels.in_table(path), "{path}");
        }
        assert_eq!(
            labels.matching("/api/v1/rates/EURUSD"),
            ("/api/v1/rates/{symbol}", Some("EURUSD"))
        );
        // Another template could match its paths; it does not end in its
        // one parameter; it is not in the table: not favoured.
        for (others, favoured) in [
            (&["/a/{x}", "/a/latest"][..], "/a/{x}"),
            (&["/a/{x}/b"], "/a/{x}/b"),
            (&["/a/{x}/{y}"], "/a/{x}/{y}"),
            (&["/a/{x}"], "/b/{x}"),
        ] {
            let mut labels = RouteLabels::new(others.iter().copied(), [], []);
            labels.favour(favoured);
            assert!(labels.favoured.is_none(), "{favoured} among {others:?}");
        }
    }

    #[test]
    fn a_template_the_table_refuses_is_left_out_not_a_panic() {
        let labels = RouteLabels::new(["/a/{x}", "/a/{y}"], [], []);
        assert_eq!(labels.matching("/a/1").0, "/a/{x}");
    }
}
