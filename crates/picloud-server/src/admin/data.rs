//! An app's data and event history: KV browsing, dead letters, abandoned runs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use picloud_core::model::Resolution;
use picloud_core::DeadLetterId;
use picloud_services::CallContext;
use picloud_store::{Abandoned, DeadLetter, DeadLetterFilter, KvEntry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, ListParams};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct KvEntryDto {
    pub key: String,
    pub value: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KvQuery {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Browse a KV collection, in key order.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/kv/{collection}", tag = "data",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name"), KvQuery),
    responses((status = 200, body = List<KvEntryDto>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.read"))))]
pub async fn browse_kv(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<KvQuery>,
) -> ApiResult<Json<List<KvEntryDto>>> {
    let app = caller.app(&state, &app, Capability::DataRead).await?;
    picloud_services::KvService::validate_collection_name(&collection)
        .map_err(|e| ApiError::invalid("collection", e.to_string()))?;
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let entries = state
        .store
        .kv_list(
            &app.id,
            &collection,
            q.prefix.as_deref().filter(|p| !p.is_empty()),
            &page,
        )
        .await?;
    Ok(Json(List::from_page(entries, |e: KvEntry| KvEntryDto {
        key: e.key,
        value: e.value,
        updated_at: e.updated_at,
    })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterDto {
    pub id: String,
    pub event_id: String,
    pub trigger_id: Option<String>,
    pub script_id: String,
    /// The event's source (`kv`, `http`, …).
    pub source_kind: String,
    pub event: serde_json::Value,
    pub error: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// `null` (open), `resolved`, `replayed` or `handler_failed`.
    pub resolution: Option<Resolution>,
    pub replay_of: Option<String>,
}

impl From<DeadLetter> for DeadLetterDto {
    fn from(d: DeadLetter) -> Self {
        let event = d.event();
        Self {
            id: d.id.into_string(),
            event_id: d.event_id.into_string(),
            trigger_id: d.trigger_id.map(|t| t.into_string()),
            script_id: d.script_id.into_string(),
            source_kind: d.source.as_str().to_owned(),
            event,
            error: d.error,
            attempts: d.attempts,
            created_at: d.created_at,
            resolution: d.resolution,
            replay_of: d.replay_of.map(|r| r.into_string()),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// `unresolved` (default: open and `handler_failed`), `resolved` or `all`.
    pub status: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Dead letters, newest first.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/dead-letters", tag = "data",
    params(("app" = String, Path, description = "app id or slug"), DeadLetterQuery),
    responses((status = 200, body = List<DeadLetterDto>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
) -> ApiResult<Json<List<DeadLetterDto>>> {
    let app = caller.app(&state, &app, Capability::AppRead).await?;
    let filter = match q.status.as_deref().unwrap_or("unresolved") {
        "unresolved" | "" => DeadLetterFilter::Unresolved,
        "resolved" => DeadLetterFilter::Resolved,
        "all" => DeadLetterFilter::All,
        other => {
            return Err(ApiError::bad_request(format!(
                "status {other:?} is not one of unresolved, resolved, all"
            )))
        }
    };
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let items = state
        .store
        .list_dead_letters(&app.id, filter, &page)
        .await?;
    Ok(Json(List::from_page(items, DeadLetterDto::from)))
}

fn admin_ctx(app: &picloud_store::App) -> CallContext {
    // The handler has checked the caller's rights; the service acts for the app.
    CallContext {
        app_id: app.id.clone(),
        caller_scopes: None,
        depth: 0,
        script_id: None,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub accepted: bool,
    pub event_id: String,
}

/// Deliver the dead letter's event again: same event id, attempt 1, the full retry
/// policy. The dead letter becomes `replayed`.
#[utoipa::path(post, path = "/api/v1/admin/apps/{app}/dead-letters/{id}/replay", tag = "data",
    params(("app" = String, Path, description = "app id or slug"),
        ("id" = String, Path, description = "dead letter id")),
    responses((status = 202, body = Replayed), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("trigger.manage"))))]
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    let app = caller.app(&state, &app, Capability::TriggerManage).await?;
    let event = state
        .services
        .dead_letters
        .replay(&admin_ctx(&app), &id)
        .await
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Replayed {
            accepted: true,
            event_id: event.into_string(),
        }),
    ))
}

/// Mark a dead letter resolved.
#[utoipa::path(post, path = "/api/v1/admin/apps/{app}/dead-letters/{id}/resolve", tag = "data",
    params(("app" = String, Path, description = "app id or slug"),
        ("id" = String, Path, description = "dead letter id")),
    responses((status = 200, body = DeadLetterDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("trigger.manage"))))]
pub async fn resolve_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<DeadLetterDto>> {
    let app = caller.app(&state, &app, Capability::TriggerManage).await?;
    let dl = state
        .services
        .dead_letters
        .resolve(&admin_ctx(&app), &id)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(dl.into()))
}

/// One dead letter.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/dead-letters/{id}", tag = "data",
    params(("app" = String, Path, description = "app id or slug"),
        ("id" = String, Path, description = "dead letter id")),
    responses((status = 200, body = DeadLetterDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn get_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<DeadLetterDto>> {
    let app = caller.app(&state, &app, Capability::AppRead).await?;
    let id = DeadLetterId::parse(&id).map_err(|_| ApiError::not_found("dead letter"))?;
    let dl = state
        .store
        .get_dead_letter(&app.id, &id)
        .await
        .map_err(|e| ApiError::from_store(e, "dead letter"))?;
    Ok(Json(dl.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AbandonedDto {
    pub id: String,
    pub script_id: String,
    pub execution_id: String,
    pub started_at: DateTime<Utc>,
    pub abandoned_at: DateTime<Utc>,
    pub reason: String,
}

/// Route runs the HTTP side gave up waiting for (forensics).
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/abandoned-executions", tag = "data",
    params(("app" = String, Path, description = "app id or slug"), ListParams),
    responses((status = 200, body = List<AbandonedDto>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn list_abandoned(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<AbandonedDto>>> {
    let app = caller.app(&state, &app, Capability::AppRead).await?;
    let page = state.store.list_abandoned(&app.id, &params.page()?).await?;
    Ok(Json(List::from_page(page, |a: Abandoned| AbandonedDto {
        id: a.id.into_string(),
        script_id: a.script_id.into_string(),
        execution_id: a.execution_id.into_string(),
        started_at: a.started_at,
        abandoned_at: a.abandoned_at,
        reason: a.reason,
    })))
}

#[cfg(test)]
mod tests {
    use picloud_services::ServiceError;
    use picloud_store::{Outage, StoreError};

    use super::*;

    #[test]
    fn a_store_outage_in_a_service_call_is_a_503() {
        let e = ServiceError::Store(StoreError::unavailable(
            Outage::DiskFull,
            std::io::Error::other("database or disk is full"),
        ));
        let mapped = ApiError::from(e);
        assert_eq!(mapped.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(mapped.code(), picloud_core::ErrorCode::Unavailable);
        assert!(!mapped.body.message.contains("database or disk is full"));
    }
}
