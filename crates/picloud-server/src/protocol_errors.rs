//! Errors the router, the connection and axum's own extractors produce, not a
//! handler: a method a path does not take (405, which axum answers with an empty
//! body), a request target longer than the server reads (414), a path parameter
//! that is not UTF-8, a body over the limit. All get the error envelope, with the
//! code (and so the status) of their kind, like every other answer.

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

/// Middleware around the control plane's router: an error answer that is not ours
/// yet (axum's plain-text rejections, its bare 405) gets the envelope, its status
/// mapped to the code of that kind of mistake. (axum adds the `Allow` header of a
/// 405 outside this layer, so it is still there.) The data plane is not inside this
/// layer: a script's own 4xx answers are its business.
pub async fn envelope(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let code = code_for(status);
    let (parts, body) = response.into_parts();
    let message = if code == ErrorCode::MethodNotAllowed {
        format!("{method} is not allowed here; the Allow header lists the methods that are")
    } else {
        // The library's own words (say, "Invalid URL: …"), bounded; a body too long
        // or not text is replaced by the status's name.
        match axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await {
            Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
            _ => status
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_owned(),
        }
    };
    let mut answer = ApiError::new(code, message).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    if let Some(retry) = parts.headers.get(header::RETRY_AFTER) {
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, retry.clone());
    }
    answer
}

/// The longest refusal text of a library passed on as the message.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The code of a refusal that did not come with one: the status names its kind; a
/// status outside our table becomes the nearest kind (a client error we have no
/// code for is a bad request, a server error an internal one).
fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::URI_TOO_LONG => ErrorCode::UriTooLong,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::Invalid,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

fn is_json(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == HeaderValue::from_static("application/json"))
}
