use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::model::{ExecutionSource, ExecutionStatus, LogLevel};
use picloud_core::ExecutionId;
use picloud_store::{Execution, ExecutionFilter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::scripts::load_script;
use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, ListParams};
use crate::state::AppState;
use picloud_core::access::Capability;

#[derive(Debug, Serialize, ToSchema)]
pub struct LogLineDto {
    pub level: LogLevel,
    pub message: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionDto {
    pub id: String,
    pub app_id: String,
    pub script_id: String,
    pub source: ExecutionSource,
    pub status: ExecutionStatus,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub logs: Vec<LogLineDto>,
    /// The full error message, with its position.
    pub error: Option<String>,
    pub error_line: Option<u32>,
}

impl From<Execution> for ExecutionDto {
    fn from(e: Execution) -> Self {
        Self {
            id: e.id.into_string(),
            app_id: e.app_id.into_string(),
            script_id: e.script_id.into_string(),
            source: e.source,
            status: e.status,
            started_at: e.started_at,
            duration_ms: e.duration_ms,
            logs: e
                .logs
                .into_iter()
                .map(|l| LogLineDto {
                    level: l.level,
                    message: l.message,
                    at: l.at,
                })
                .collect(),
            error: e.error,
            error_line: e.error_line,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    pub script_id: Option<String>,
    /// `ok`, `error`, `timeout` or `limit_exceeded`.
    pub status: Option<String>,
    /// `http` or an event source.
    pub source: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Runs of an app's scripts, newest first.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/executions", tag = "executions",
    params(("app" = String, Path, description = "app id or slug"), ExecutionQuery),
    responses((status = 200, body = List<ExecutionDto>), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn list_executions(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiQuery(q): ApiQuery<ExecutionQuery>,
) -> ApiResult<Json<List<ExecutionDto>>> {
    let app = caller.app(&state, &app, Capability::AppRead).await?;
    let script_id = match q.script_id.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => {
            let script = load_script(&state, id).await?;
            if script.app_id != app.id {
                return Err(ApiError::not_found("script"));
            }
            Some(script.id)
        }
        None => None,
    };
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<ExecutionStatus>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("status {e}")))?;
    let source = q
        .source
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<ExecutionSource>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("source {e}")))?;
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let filter = ExecutionFilter {
        script_id,
        status,
        source,
    };
    let runs = state.store.list_executions(&app.id, &filter, &page).await?;
    Ok(Json(List::from_page(runs, ExecutionDto::from)))
}

/// One run.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/executions/{id}", tag = "executions",
    params(("app" = String, Path, description = "app id or slug"),
        ("id" = String, Path, description = "execution id")),
    responses((status = 200, body = ExecutionDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn get_execution(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<ExecutionDto>> {
    let app = caller.app(&state, &app, Capability::AppRead).await?;
    let id = ExecutionId::parse(&id).map_err(|_| ApiError::not_found("execution"))?;
    let run = state
        .store
        .get_execution(&app.id, &id)
        .await
        .map_err(|e| ApiError::from_store(e, "execution"))?;
    Ok(Json(run.into()))
}
