//! The outermost layer of every answer, written as a plain tower service so
//! that the common answer pays nothing for it (no boxed middleware):
//!
//! - an error answer that something other than a route made (405, 413, a
//!   deadline's 503) gets a problem body ([`super::problem_answers::with_problem_body`]);
//! - CORS (tower-http's layer, held here): a request with an `Origin` goes
//!   through it (a preflight answered there gets 204, not 200); one without
//!   passes it by, so that the common answer pays nothing for headers no
//!   browser asked for. Every answer says `Vary: Origin`, as its CORS
//!   headers depend on it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::{Body, HttpBody};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tower::{BoxError, Layer, Service};
use tower_http::cors::{self, Cors, CorsLayer};

use super::problem_answers::{needs_problem_body, with_problem_body};

/// The edge, with the CORS policy its requests with an `Origin` pass.
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    cors: CorsLayer,
}

impl EdgeLayer {
    pub fn new(cors: CorsLayer) -> Self {
        Self {
            cors: cors.vary([header::ORIGIN]),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge(self.cors.layer(inner))
    }
}

#[derive(Debug, Clone)]
pub struct Edge<S>(Cors<S>);

/// Any request body in, any response body out (made an axum [`Body`]), so
/// that the layers inside may wrap either.
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Edge<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = Infallible>,
    ResBody: HttpBody<Data = Bytes> + Default + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.method().clone();
        if request.headers().contains_key(header::ORIGIN) {
            EdgeFuture::Cors {
                fut: self.0.call(request),
                method,
            }
        } else {
            // Ready: the CORS service is ready when what it wraps is.
            EdgeFuture::Plain {
                fut: self.0.get_mut().call(request),
                method,
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = EdgeProj]
    pub enum EdgeFuture<F> {
        Cors { #[pin] fut: cors::ResponseFuture<F>, method: Method },
        Plain { #[pin] fut: F, method: Method },
        Problem { fut: BoxFuture<'static, Response> },
    }
}

impl<F, ResBody> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, Infallible>>,
    ResBody: HttpBody<Data = Bytes> + Default + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let (resp, method) = match self.as_mut().project() {
                EdgeProj::Cors { fut, method } => {
                    let Ok(resp) = ready!(fut.poll(cx));
                    let mut resp = resp.map(Body::new);
                    if resp.status() == StatusCode::OK
                        && resp
                            .headers()
                            .contains_key(header::ACCESS_CONTROL_ALLOW_METHODS)
                    {
                        *resp.status_mut() = StatusCode::NO_CONTENT;
                    }
                    (resp, method.clone())
                }
                EdgeProj::Plain { fut, method } => {
                    let Ok(resp) = ready!(fut.poll(cx));
                    let mut resp = resp.map(Body::new);
                    resp.headers_mut()
                        .append(header::VARY, HeaderValue::from_static("origin"));
                    (resp, method.clone())
                }
                EdgeProj::Problem { fut } => return fut.as_mut().poll(cx).map(Ok),
            };
            if !needs_problem_body(&resp) {
                return Poll::Ready(Ok(resp));
            }
            let fut = Box::pin(with_problem_body(resp, method));
            self.set(EdgeFuture::Problem { fut });
        }
    }
}
