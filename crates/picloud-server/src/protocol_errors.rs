//! Errors the router and the connection produce, not a handler: a method a path does
//! not take (405, which axum answers with an empty body) and a request target longer
//! than the server reads (414). Both get the error envelope like every other answer.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use picloud_core::ErrorCode;

use crate::error::ApiError;

/// The longest request target (path and query) served, as in common proxies. hyper
/// itself refuses targets from 64 KiB on, with a bare 414, before any of our code runs.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Middleware before everything (the data plane included): 414 for an overlong target.
pub async fn limit_uri(req: Request, next: Next) -> Response {
    let len = req
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if len > MAX_URI_BYTES {
        return ApiError::new(
            ErrorCode::UriTooLong,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Middleware around the control plane's router: a 405 it produced gets the envelope.
/// (axum adds the `Allow` header outside this layer, so it is still there.)
pub async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || is_json(&response) {
        return response;
    }
    let mut answer = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed here; the Allow header lists the methods that are"),
    )
    .into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

fn is_json(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == HeaderValue::from_static("application/json"))
}
