//! Running a route's script: sync (the client waits) or async (202, via the outbox).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use picloud_core::model::ExecutionSource;
use picloud_core::{AbandonedId, EventId, ExecutionId};
use picloud_runtime::run::{execution_record, failed, run_script, RunIdentity};
use picloud_runtime::ExecError;
use picloud_script::{FailureKind, RouteResponse, RunInput, RunReport, ScriptFailure};
use picloud_store::{Abandoned, App, NewEvent, Script};

use super::EXECUTION_HEADER;
use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn run_sync(
    state: &AppState,
    app: &App,
    script: Arc<Script>,
    execution_id: ExecutionId,
    input: RunInput,
) -> Response {
    let started_at = picloud_core::now();
    let runner = &state.runner;
    let ran = match inline_attempt(state, &script, &input) {
        Some(report) => Ok(report),
        None => on_script_thread(state, app, &script, &execution_id, started_at, input).await,
    };
    let report = match ran {
        Ok(report) => report,
        Err(ExecError::Busy) => {
            let secs = runner.executor.queue_timeout().as_secs().max(1);
            return ApiError::unavailable(
                "the app is at its concurrency limit; retry shortly",
                secs,
            )
            .into_response();
        }
        Err(ExecError::ShutDown) => {
            return ApiError::unavailable("the server is shutting down", 1).into_response()
        }
        Err(ExecError::Panicked) => {
            failed(ScriptFailure::error("the run crashed inside the runtime"))
        }
    };
    let response = match &report.outcome {
        Ok(route_response) => build_response(route_response),
        Err(failure) => failure_response(failure, &execution_id),
    };
    let who = RunIdentity {
        app,
        script: &script,
        id: &execution_id,
        source: ExecutionSource::Http,
        started_at,
    };
    runner
        .record(execution_record(
            &who,
            &report,
            state.config.limits.max_log_lines,
        ))
        .await;
    with_execution_header(response, &execution_id)
}

/// Bodies up to this size are copied for an inline attempt (which may give way and
/// leave the run to a script thread); larger requests go to a script thread at once.
const INLINE_MAX_BODY_BYTES: usize = 16 << 10;

fn inline_attempt(
    state: &AppState,
    script: &Script,
    input: &RunInput,
) -> Option<RunReport<RouteResponse>> {
    let small = input
        .request
        .as_ref()
        .is_none_or(|r| r.body_raw.len() <= INLINE_MAX_BODY_BYTES);
    if !small {
        return None;
    }
    state
        .runner
        .try_inline(script, input, picloud_script::to_route_response)
}

async fn on_script_thread(
    state: &AppState,
    app: &App,
    script: &Arc<Script>,
    execution_id: &ExecutionId,
    started_at: chrono::DateTime<chrono::Utc>,
    input: RunInput,
) -> Result<RunReport<RouteResponse>, ExecError> {
    let runner = &state.runner;
    let timeout = state.config.limits.route_timeout;
    let wait = runner.executor.queue_timeout() + timeout + state.config.limits.abandon_grace;
    let job = {
        let engine = runner.engine.clone();
        let script = script.clone();
        move || {
            run_script(
                &engine,
                &script,
                input,
                timeout,
                picloud_script::to_route_response,
            )
        }
    };
    let executor = runner.executor.clone();
    let app_id = app.id.to_string();
    let mut run = Box::pin(async move { executor.run(&app_id, job).await });
    tokio::select! {
        ran = &mut run => ran,
        () = tokio::time::sleep(wait) => {
            abandon(state, app, script, execution_id, started_at, run);
            Ok(failed(ScriptFailure {
                kind: FailureKind::Timeout,
                message: format!("no answer within {} ms; the run was abandoned", wait.as_millis()),
                line: None,
            }))
        }
    }
}

/// The client got its 504; the run still holds its slot. Record that for forensics,
/// and record the run itself whenever it ends.
fn abandon<F>(
    state: &AppState,
    app: &App,
    script: &Arc<Script>,
    id: &ExecutionId,
    started_at: chrono::DateTime<chrono::Utc>,
    run: std::pin::Pin<Box<F>>,
) where
    F: std::future::Future<Output = Result<RunReport<RouteResponse>, ExecError>> + Send + 'static,
{
    let state = state.clone();
    let app = app.clone();
    let script = script.clone();
    let id = id.clone();
    tokio::spawn(async move {
        let entry = Abandoned {
            id: AbandonedId::new(),
            app_id: app.id.clone(),
            script_id: script.id.clone(),
            execution_id: id.clone(),
            started_at,
            abandoned_at: picloud_core::now(),
            reason: "the HTTP side stopped waiting before the run ended".into(),
        };
        if let Err(e) = state.store.record_abandoned(&entry).await {
            tracing::error!(error = %e, "recording an abandoned run failed");
        }
        if let Ok(report) = run.await {
            let who = RunIdentity {
                app: &app,
                script: &script,
                id: &id,
                source: ExecutionSource::Http,
                started_at,
            };
            state
                .runner
                .record(execution_record(
                    &who,
                    &report,
                    state.config.limits.max_log_lines,
                ))
                .await;
        }
    });
}

/// Async routes: 202 at once; the call is queued in the outbox and runs through the
/// dispatcher, with retries and dead letters.
pub(super) async fn run_async(
    state: &AppState,
    app: &App,
    script: &Script,
    input: RunInput,
) -> Response {
    let Some(request) = &input.request else {
        return ApiError::internal("async route without a request").into_response();
    };
    let event_id = EventId::new();
    let new = NewEvent {
        id: event_id.clone(),
        app_id: app.id.clone(),
        trigger_id: None,
        script_id: script.id.clone(),
        source: ExecutionSource::Http,
        payload: picloud_runtime::payload::http_payload(request, input.principal.as_ref()),
        retry: picloud_services::default_retry(&state.config.events),
        depth: 0,
        due_at: picloud_core::now(),
    };
    if let Err(e) = state.store.enqueue_event(new).await {
        return ApiError::from_store(e, "script").into_response();
    }
    let body = serde_json::json!({"accepted": true, "event_id": event_id.as_str()});
    (StatusCode::ACCEPTED, Json(body)).into_response()
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

fn failure_response(failure: &ScriptFailure, execution_id: &ExecutionId) -> Response {
    let (status, code) = match failure.kind {
        FailureKind::Error => (StatusCode::INTERNAL_SERVER_ERROR, "script_error"),
        FailureKind::LimitExceeded(_) => (StatusCode::INTERNAL_SERVER_ERROR, "limit_exceeded"),
        FailureKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        FailureKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
    };
    ApiError::new(status, code, failure.public_message())
        .with_execution(execution_id.as_str())
        .into_response()
}
