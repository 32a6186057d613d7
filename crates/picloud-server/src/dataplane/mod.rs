//! The data plane: app routes, reached by host (`{slug}.{base_domain}`) or by path
//! (`/apps/{slug}/…`), answered by running the route's script on the executor.

pub mod request;
pub mod routing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use picloud_core::access::Scope;
use picloud_core::model::{DispatchMode, ExecutionSource, ExecutionStatus, LogLevel, RouteAuth};
use picloud_core::{EventId, ExecutionId};
use picloud_runtime::ExecError;
use picloud_script::{
    AppRef, CacheKey, FailureKind, PrincipalInput, RequestInput, RouteResponse, RunInput,
    RunReport, ScriptFailure, ScriptRef,
};
use picloud_store::{App, Execution, LogLine, Script};

use crate::auth::{authenticate_token, bearer, is_picloud_token, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const EXECUTION_HEADER: &str = "x-picloud-execution-id";

/// Responses under `/apps/{slug}/` share the dashboard's origin: HTML a script serves
/// there runs sandboxed in an opaque origin.
const PREFIX_CSP: &str = "sandbox allow-scripts allow-forms allow-popups allow-downloads";

/// Extra wait, beyond the run's own limit, before the HTTP side gives up on a run.
const ABANDON_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addressing {
    Host,
    Prefix,
}

/// The app slug a Host header names, if it is an app host.
fn app_host<'a>(host: &'a str, base_domain: &str) -> Option<&'a str> {
    let host = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    let host = host.strip_suffix('.').unwrap_or(host);
    let slug = host.strip_suffix(base_domain)?.strip_suffix('.')?;
    (!slug.is_empty() && !slug.contains('.')).then_some(slug)
}

/// Middleware before every route: requests for an app host go to the data plane,
/// whatever their path.
pub async fn host_dispatch(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(str::to_ascii_lowercase);
    if let Some(slug) = host
        .as_deref()
        .and_then(|h| app_host(h, &state.config.base_domain))
    {
        let slug = slug.to_owned();
        let path = req.uri().path().to_owned();
        return serve(state, &slug, path, Addressing::Host, req).await;
    }
    next.run(req).await
}

/// `/apps/{slug}` and everything below it.
pub async fn by_prefix(State(state): State<AppState>, req: Request) -> Response {
    let raw = req.uri().path().to_owned();
    let rest = raw.strip_prefix("/apps/").unwrap_or_default();
    let (slug, path) = match rest.split_once('/') {
        Some((slug, path)) => (slug.to_owned(), format!("/{path}")),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let slug = slug.to_ascii_lowercase();
    serve(state, &slug, path, Addressing::Prefix, req).await
}

async fn serve(
    state: AppState,
    slug: &str,
    path: String,
    addressing: Addressing,
    req: Request,
) -> Response {
    let started = Instant::now();
    let (app, mut response) = match route_request(&state, slug, path, req).await {
        Ok((app, response)) => (Some(app), response),
        Err((app, e)) => (app, e.into_response()),
    };
    if addressing == Addressing::Prefix {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PREFIX_CSP),
        );
    }
    let label = app.as_ref().map_or("_unknown", |a| a.slug.as_str());
    state.metrics.observe_request(
        label,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

type Routed = Result<(Arc<App>, Response), (Option<Arc<App>>, ApiError)>;

async fn route_request(state: &AppState, slug: &str, path: String, req: Request) -> Routed {
    let app = match state.routing.app_by_slug(state.store.as_ref(), slug).await {
        Ok(Some(app)) => app,
        Ok(None) => return Err((None, ApiError::not_found("app"))),
        Err(e) => return Err((None, ApiError::internal(e))),
    };
    let with_app = |e: ApiError| (Some(app.clone()), e);
    let table = state
        .routing
        .table(state.store.as_ref(), &app.id)
        .await
        .map_err(|e| with_app(ApiError::internal(e)))?;
    let method = req.method().as_str().to_owned();
    let Some(matched) = table.lookup(&method, &path) else {
        return Err(with_app(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route matches {method} {path}"),
        )));
    };
    let route = matched.entry.route.clone();
    let script = matched.entry.script.clone();
    let params = matched.params;
    drop(table);

    let caller = caller(state, req.headers()).await.map_err(with_app)?;
    let scopes = match &caller {
        Some(c) => {
            let role = c.role_on(state, &app.id).await.map_err(with_app)?;
            c.principal.scopes_on_app(&app.id, role)
        }
        None => Vec::new(),
    };
    if route.auth == RouteAuth::Required {
        if caller.is_none() {
            return Err(with_app(ApiError::unauthorized()));
        }
        if !scopes.contains(&Scope::ScriptInvoke) {
            return Err(with_app(ApiError::forbidden(
                "this route needs script:invoke on the app",
            )));
        }
    }
    let request = read_request(state, req, path, params)
        .await
        .map_err(with_app)?;
    let execution_id = ExecutionId::new();
    let input = RunInput {
        app: AppRef {
            id: app.id.to_string(),
            slug: app.slug.clone(),
        },
        script: ScriptRef {
            id: script.id.to_string(),
            name: script.name.clone(),
        },
        principal: caller.map(|c| PrincipalInput {
            kind: c.principal.kind().as_str(),
            user_id: c.principal.user_id.to_string(),
            key_id: c.principal.key.as_ref().map(|k| k.key_id.to_string()),
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        }),
        request: Some(request),
        event: None,
        execution_id: execution_id.to_string(),
        attempt: 1,
    };
    let response = match route.dispatch_mode {
        DispatchMode::Sync => run_sync(state, &app, script, execution_id, input).await,
        DispatchMode::Async => run_async(state, &app, script, execution_id, input),
    };
    Ok((app, response))
}

/// The PiCloud principal behind the request's bearer token. Tokens that are not
/// ours are left to the script; ours must be valid.
async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Caller>> {
    match bearer(headers) {
        Some(token) if is_picloud_token(token) => authenticate_token(state, token)
            .await?
            .map(Some)
            .ok_or_else(ApiError::unauthorized),
        _ => Ok(None),
    }
}

async fn read_request(
    state: &AppState,
    req: Request,
    path: String,
    params: Vec<(String, String)>,
) -> ApiResult<RequestInput> {
    let limit = state.config.max_request_body_bytes;
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::payload_too_large(limit))?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let body = request::parse_body(content_type, &bytes)?;
    Ok(RequestInput {
        method: parts.method.as_str().to_owned(),
        path,
        params,
        query: request::query_pairs(parts.uri.query()),
        headers: request::script_headers(&parts.headers),
        body,
        body_raw: bytes.to_vec(),
    })
}

fn execute(
    state: &AppState,
    script: Arc<Script>,
    input: RunInput,
) -> impl FnOnce() -> RunReport<RouteResponse> + Send + 'static {
    let engine = state.engine.clone();
    let timeout = state.config.limits.route_timeout;
    move || {
        let key = CacheKey {
            script_id: script.id.as_str(),
            updated_at: script.updated_at,
        };
        match engine.compiled(key, &script.source) {
            Ok(ast) => engine.run_route(&ast, input, timeout),
            Err(e) => RunReport {
                outcome: Err(ScriptFailure {
                    kind: FailureKind::Error,
                    message: format!("compile error: {}", e.message),
                    line: e.line,
                }),
                logs: Vec::new(),
                dropped_logs: 0,
                duration: Duration::ZERO,
            },
        }
    }
}

async fn run_sync(
    state: &AppState,
    app: &App,
    script: Arc<Script>,
    execution_id: ExecutionId,
    input: RunInput,
) -> Response {
    let started_at = picloud_core::now();
    let wait = state.executor.queue_timeout() + state.config.limits.route_timeout + ABANDON_GRACE;
    let job = execute(state, script.clone(), input);
    let ran = tokio::time::timeout(wait, state.executor.run(app.id.as_str(), job)).await;
    let report = match ran {
        Ok(Ok(report)) => report,
        Ok(Err(ExecError::Busy)) => {
            let secs = state.executor.queue_timeout().as_secs().max(1);
            return ApiError::unavailable(
                "the app is at its concurrency limit; retry shortly",
                secs,
            )
            .into_response();
        }
        Ok(Err(ExecError::ShutDown)) => {
            return ApiError::unavailable("the server is shutting down", 1).into_response()
        }
        Ok(Err(ExecError::Panicked)) => RunReport {
            outcome: Err(ScriptFailure::error("the run crashed inside the runtime")),
            logs: Vec::new(),
            dropped_logs: 0,
            duration: Duration::ZERO,
        },
        Err(_) => RunReport {
            outcome: Err(ScriptFailure {
                kind: FailureKind::Timeout,
                message: "the run did not finish in time and was abandoned".into(),
                line: None,
            }),
            logs: Vec::new(),
            dropped_logs: 0,
            duration: wait,
        },
    };
    let response = match &report.outcome {
        Ok(route_response) => build_response(route_response),
        Err(failure) => failure_response(failure, &execution_id),
    };
    record(state, app, &script, &execution_id, started_at, report).await;
    with_execution_header(response, &execution_id)
}

/// Async routes: 202 at once, the script runs in the background. Not yet durable:
/// the transactional outbox (retries, dead letters) replaces this spawn.
fn run_async(
    state: &AppState,
    app: &App,
    script: Arc<Script>,
    execution_id: ExecutionId,
    input: RunInput,
) -> Response {
    let event_id = EventId::new();
    let state = state.clone();
    let app = app.clone();
    let exec = execution_id.clone();
    tokio::spawn(async move {
        let started_at = picloud_core::now();
        let job = execute(&state, script.clone(), input);
        match state.executor.run(app.id.as_str(), job).await {
            Ok(report) => record(&state, &app, &script, &exec, started_at, report).await,
            Err(e) => tracing::warn!(app = %app.slug, error = %e, "async route run not started"),
        }
    });
    let body = serde_json::json!({"accepted": true, "event_id": event_id.as_str()});
    with_execution_header(
        (StatusCode::ACCEPTED, Json(body)).into_response(),
        &execution_id,
    )
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

fn status_of(outcome: &Result<RouteResponse, ScriptFailure>) -> ExecutionStatus {
    match outcome {
        Ok(_) => ExecutionStatus::Ok,
        Err(f) => match f.kind {
            FailureKind::Error | FailureKind::Forbidden => ExecutionStatus::Error,
            FailureKind::Timeout => ExecutionStatus::Timeout,
            FailureKind::LimitExceeded(_) => ExecutionStatus::LimitExceeded,
        },
    }
}

async fn record(
    state: &AppState,
    app: &App,
    script: &Script,
    id: &ExecutionId,
    started_at: chrono::DateTime<chrono::Utc>,
    report: RunReport<RouteResponse>,
) {
    let status = status_of(&report.outcome);
    state.metrics.observe_execution(status.as_str());
    let mut logs: Vec<LogLine> = report
        .logs
        .into_iter()
        .map(|l| LogLine {
            level: l.level,
            message: l.message,
            at: l.at,
        })
        .collect();
    if report.dropped_logs > 0 {
        logs.push(LogLine {
            level: LogLevel::Warn,
            message: format!(
                "{} more log lines dropped (at most {} are kept per run)",
                report.dropped_logs, state.config.limits.max_log_lines
            ),
            at: picloud_core::now(),
        });
    }
    let (error, error_line) = match report.outcome {
        Ok(_) => (None, None),
        Err(f) => (Some(f.message), f.line),
    };
    state
        .recorder
        .record(Execution {
            id: id.clone(),
            app_id: app.id.clone(),
            script_id: script.id.clone(),
            source: ExecutionSource::Http,
            status,
            started_at,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            logs,
            error,
            error_line,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::app_host;

    #[test]
    fn app_hosts() {
        assert_eq!(app_host("shop.localhost", "localhost"), Some("shop"));
        assert_eq!(app_host("shop.localhost:8080", "localhost"), Some("shop"));
        assert_eq!(app_host("shop.example.com.", "example.com"), Some("shop"));
        assert_eq!(app_host("localhost:8080", "localhost"), None);
        assert_eq!(app_host("127.0.0.1:8080", "localhost"), None);
        assert_eq!(app_host("a.b.localhost", "localhost"), None);
        assert_eq!(app_host("evillocalhost", "localhost"), None);
    }
}
