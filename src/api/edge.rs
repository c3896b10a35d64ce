//! The outermost layer of every answer, written as a plain tower service so
//! that the common answer pays nothing for it (no boxed middleware):
//!
//! - a request announcing a body over [`MAX_REQUEST_BODY`] is refused (413)
//!   before routing ([`BodyCheck`]);
//! - an error answer that something other than a route made (405, 413, a
//!   deadline's 503) gets a problem body ([`super::problem_answers::with_problem_body`]);
//! - CORS (tower-http's layer, held here): a request with an `Origin` goes
//!   through it (a preflight answered there gets 204, not 200); one without
//!   passes it by, so that the common answer pays nothing for headers
//!   built per request, nor for a copy of the CORS service: it gets the
//!   policy's constant header (`Access-Control-Allow-Origin: *` when any
//!   origin is allowed, none otherwise). Every answer says `Vary: Origin`,
//!   as its CORS headers depend on it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::{Body, HttpBody};
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tower::{BoxError, Layer, Service};
use tower_http::cors::{self, CorsLayer};

use super::caller::ForPeer;
use super::problem_answers::{needs_problem_body, with_problem_body};
use crate::stream::stall::SocketFd;

/// The edge, with the CORS policy its requests with an `Origin` pass.
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    cors: Arc<Policy>,
}

/// The CORS layer, and the headers an answer to a request without an
/// `Origin` carries whatever it is (none but with any origin allowed).
#[derive(Debug)]
struct Policy {
    layer: CorsLayer,
    always: &'static [(HeaderName, HeaderValue)],
}

impl EdgeLayer {
    /// `always`: made once for the process (an answer copies them without
    /// touching a reference count).
    pub fn new(cors: CorsLayer, always: &'static [(HeaderName, HeaderValue)]) -> Self {
        Self {
            cors: Arc::new(Policy {
                layer: cors.vary([header::ORIGIN]),
                always,
            }),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner: BodyCheck(inner),
            cors: self.cors.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: BodyCheck<S>,
    cors: Arc<Policy>,
}

impl<S: ForPeer> ForPeer for Edge<S> {
    fn for_peer(&self, addr: SocketAddr, fd: SocketFd) -> Self {
        Self {
            inner: BodyCheck(self.inner.0.for_peer(addr, fd)),
            cors: self.cors.clone(),
        }
    }
}

/// The largest request body taken: no route reads one, so a larger body
/// announced by `Content-Length` is refused (413) before routing. (A body
/// without a length is never read at all.)
pub const MAX_REQUEST_BODY: u64 = 16 * 1024;

/// Refuses a request whose announced body is over [`MAX_REQUEST_BODY`];
/// passes the others on untouched (their bodies are not wrapped).
#[derive(Debug, Clone)]
pub struct BodyCheck<S>(S);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyCheck<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = Infallible>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Checked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let too_large = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > MAX_REQUEST_BODY);
        if too_large {
            Checked::TooLarge
        } else {
            Checked::Inner {
                fut: self.0.call(request),
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = CheckedProj]
    pub enum Checked<F> {
        TooLarge,
        Inner { #[pin] fut: F },
    }
}

impl<F, ResBody> Future for Checked<F>
where
    F: Future<Output = Result<Response<ResBody>, Infallible>>,
    ResBody: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CheckedProj::TooLarge => {
                let mut resp = Response::new(ResBody::default());
                *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                Poll::Ready(Ok(resp))
            }
            CheckedProj::Inner { fut } => fut.poll(cx),
        }
    }
}

/// Any request body in, any response body out (made an axum [`Body`]), so
/// that the layers inside may wrap either.
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Edge<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = Infallible> + Clone,
    ResBody: HttpBody<Data = Bytes> + Default + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<Checked<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.method().clone();
        if request.headers().contains_key(header::ORIGIN) {
            // The service made ready goes into the CORS service; a copy
            // stays for the next request.
            let copy = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, copy);
            EdgeFuture::Cors {
                fut: self.cors.layer.layer(ready).call(request),
                method,
            }
        } else {
            EdgeFuture::Plain {
                fut: self.inner.call(request),
                method,
                always: self.cors.always,
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = EdgeProj]
    pub enum EdgeFuture<F> {
        Cors { #[pin] fut: cors::ResponseFuture<F>, method: Method },
        Plain { #[pin] fut: F, method: Method, always: &'static [(HeaderName, HeaderValue)] },
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
                EdgeProj::Plain {
                    fut,
                    method,
                    always,
                } => {
                    let Ok(resp) = ready!(fut.poll(cx));
                    let mut resp = resp.map(Body::new);
                    let headers = resp.headers_mut();
                    headers.append(header::VARY, HeaderValue::from_static("origin"));
                    for (name, value) in always.iter() {
                        headers.insert(name.clone(), value.clone());
                    }
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
