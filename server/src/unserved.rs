//! The RPCs no service here serves, answered as a tower layer around all of them: etcd's Auth
//! service (user and role authentication is out of scope) and whatever else a client asks for.
//!
//! - Authenticate is answered as etcd answers it while authentication is not enabled, with
//!   [`errors::auth_not_enabled`]: etcd's clients take that as "go on without a token", so a
//!   client configured with a user and password (`etcdctl --user`) works.
//! - Any other RPC tonic finds no method for is answered `Unimplemented` with a message naming
//!   it ([`errors::unsupported`]), where tonic's own answer has no message at all.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::BoxBody;
use tonic::codegen::http::{Request, Response};

use crate::errors;

/// etcd's Authenticate method, by its gRPC path.
pub const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";

/// The prefix of etcd's Auth service's methods.
const AUTH_SERVICE: &str = "/etcdserverpb.Auth/";

/// gRPC's `Unimplemented` code, as the `grpc-status` header carries it.
const UNIMPLEMENTED: &[u8] = b"12";

/// The layer that makes [`Unserved`] services.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnservedLayer;

impl<S> tower::Layer<S> for UnservedLayer {
    type Service = Unserved<S>;

    fn layer(&self, inner: S) -> Unserved<S> {
        Unserved { inner }
    }
}

/// The services' router, with the RPCs it does not serve answered as the module docs say.
#[derive(Clone, Debug)]
pub struct Unserved<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for Unserved<S>
where
    S: tower::Service<Request<B>, Response = Response<BoxBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        if path == AUTHENTICATE {
            return Box::pin(std::future::ready(Ok(
                errors::auth_not_enabled().into_http()
            )));
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            name_if_unimplemented(&mut response, &path);
            Ok(response)
        })
    }
}

/// Gives tonic's `Unimplemented` answer without a message (a service or method nothing here
/// serves) the message [`errors::unsupported`] makes of the method's `path`. A status a service
/// gave with its own message is left as it is.
fn name_if_unimplemented(response: &mut Response<BoxBody>, path: &str) {
    let headers = response.headers_mut();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(UNIMPLEMENTED) {
        return;
    }
    if headers.get("grpc-message").is_some_and(|m| !m.is_empty()) {
        return;
    }
    let method = path.trim_start_matches('/');
    let what = if path.starts_with(AUTH_SERVICE) {
        format!("{method} (etcd's user and role authentication)")
    } else {
        method.to_string()
    };
    headers.remove("grpc-message");
    if errors::unsupported(&what).add_header(headers).is_err() {
        crate::error!("cannot name the unsupported method {path} in its answer");
    }
}
