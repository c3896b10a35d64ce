//! The outermost layer of every answer, written as a plain tower service so
//! that the common answer pays nothing for it (no boxed middleware):
//!
//! - an error answer that something other than a route made (405, 413, a
//!   deadline's 503) gets a problem body ([`super::problem_answers::with_problem_body`]);
//! - a CORS preflight answered by the CORS layer gets 204, not 200.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::{Body, HttpBody};
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tower::{BoxError, Layer, Service};

use super::problem_answers::{needs_problem_body, with_problem_body};

#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeLayer;

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge(inner)
    }
}

#[derive(Debug, Clone)]
pub struct Edge<S>(S);

/// Any request body in, any response body out (made an axum [`Body`]), so
/// that the layers inside may wrap either.
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Edge<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = Infallible>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
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
        EdgeFuture::Inner {
            fut: self.0.call(request),
            method,
        }
    }
}

pin_project_lite::pin_project! {
    #[project = EdgeProj]
    pub enum EdgeFuture<F> {
        Inner { #[pin] fut: F, method: Method },
        Problem { fut: BoxFuture<'static, Response> },
    }
}

impl<F, ResBody> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, Infallible>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                EdgeProj::Inner { fut, method } => {
                    let Ok(resp) = ready!(fut.poll(cx));
                    let mut resp = resp.map(Body::new);
                    if resp.status() == StatusCode::OK
                        && resp
                            .headers()
                            .contains_key(header::ACCESS_CONTROL_ALLOW_METHODS)
                    {
                        *resp.status_mut() = StatusCode::NO_CONTENT;
                    }
                    if !needs_problem_body(&resp) {
                        return Poll::Ready(Ok(resp));
                    }
                    let method = method.clone();
                    let fut = Box::pin(with_problem_body(resp, method));
                    self.set(EdgeFuture::Problem { fut });
                }
                EdgeProj::Problem { fut } => return fut.as_mut().poll(cx).map(Ok),
            }
        }
    }
}
