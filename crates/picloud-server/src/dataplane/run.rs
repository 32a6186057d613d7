//! A route run's outcome as HTTP: sync (the script's answer) or async (202, queued).

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use picloud_core::{EventId, ExecutionId};
use picloud_runtime::{RouteOutcome, Saturated};
use picloud_script::{RouteResponse, ScriptFailure};
use picloud_store::StoreResult;

use super::EXECUTION_HEADER;
use crate::error::ApiError;

/// A sync route's answer: the script's, or its failure's, naming the run's record.
pub(super) fn sync_response(outcome: RouteOutcome) -> Response {
    match outcome {
        RouteOutcome::Ran {
            execution_id,
            result,
        } => {
            let response = match &result {
                Ok(route_response) => build_response(route_response),
                Err(failure) => failure_response(failure, &execution_id),
            };
            with_execution_header(response, &execution_id)
        }
        RouteOutcome::Busy {
            saturated,
            retry_after,
        } => {
            let secs = retry_after.as_secs().max(1);
            ApiError::unavailable(busy_message(saturated, secs), secs).into_response()
        }
        RouteOutcome::ShuttingDown => {
            ApiError::unavailable("the server is shutting down", 1).into_response()
        }
    }
}

/// An async route's answer: 202 once the call is queued; it runs through the
/// dispatcher, with retries and dead letters.
pub(super) fn async_response(queued: StoreResult<EventId>) -> Response {
    match queued {
        Ok(event_id) => {
            let body = serde_json::json!({"accepted": true, "event_id": event_id.as_str()});
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(e) => ApiError::from_store(e, "script").into_response(),
    }
}

fn with_execution_header(mut response: Response, id: &ExecutionId) -> Response {
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(EXECUTION_HEADER), value);
    }
    response
}

fn build_response(r: &RouteResponse) -> Response {
    let mut response = Response::new(Body::from(r.body.clone()));
    *response.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in &r.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            continue;
        };
        // Framing is the server's business.
        if matches!(
            name,
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION
        ) {
            continue;
        }
        headers.insert(name, value);
    }
    response
}

/// What a refused request is told: whose limit was full, and when to come back
/// (also in `Retry-After`).
fn busy_message(saturated: Saturated, retry_secs: u64) -> String {
    match saturated {
        Saturated::App => {
            format!("this app is running as many scripts at once as it may; retry in {retry_secs}s")
        }
        Saturated::Server => format!(
            "the server is at capacity: every script thread is busy; retry in {retry_secs}s"
        ),
    }
}

fn failure_response(failure: &ScriptFailure, execution_id: &ExecutionId) -> Response {
    ApiError::new(failure.kind.code(), failure.public_message())
        .with_execution(execution_id.as_str())
        .into_response()
}
