use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::model::{DispatchMode, RouteAuth, RouteMethod, ScriptKind};
use picloud_core::route_pattern::RoutePattern;
use picloud_core::RouteId;
use picloud_store::{NewRoute, Route};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::scripts::script_for;
use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, ListParams};
use crate::state::AppState;
use picloud_core::access::Capability;

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteDto {
    pub id: String,
    pub app_id: String,
    pub script_id: String,
    pub method: RouteMethod,
    pub path: String,
    pub dispatch_mode: DispatchMode,
    pub auth: RouteAuth,
    pub created_at: DateTime<Utc>,
}

impl From<Route> for RouteDto {
    fn from(r: Route) -> Self {
        Self {
            id: r.id.into_string(),
            app_id: r.app_id.into_string(),
            script_id: r.script_id.into_string(),
            method: r.method,
            path: r.path,
            dispatch_mode: r.dispatch_mode,
            auth: r.auth,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    /// An HTTP method or `ANY`.
    pub method: String,
    /// `/users/{id}`, `/files/{*rest}`.
    pub path: String,
    /// `sync` (default) or `async`.
    pub dispatch_mode: Option<DispatchMode>,
    /// `public` (default) or `required`.
    pub auth: Option<RouteAuth>,
}

/// Bind a script to a method and path of its app.
#[utoipa::path(post, path = "/api/v1/admin/scripts/{id}/routes", tag = "routes",
    request_body = CreateRoute, params(("id" = String, Path, description = "script id")),
    responses((status = 201, body = RouteDto),
        (status = 400, body = ErrorEnvelope, description = "the script is a module"),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("route.manage"))))]
pub async fn create_route(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateRoute>,
) -> ApiResult<(StatusCode, Json<RouteDto>)> {
    let script = script_for(&state, &caller, &id, None, Capability::RouteManage).await?;
    if script.kind == ScriptKind::Module {
        return Err(ApiError::bad_request(
            "a module cannot answer a route; bind an endpoint script",
        ));
    }
    let method = parse_method(&req.method)?;
    let pattern =
        RoutePattern::parse_new(&req.path).map_err(|e| ApiError::invalid("path", e.to_string()))?;
    let route = state
        .store
        .create_route(NewRoute {
            app_id: script.app_id.clone(),
            script_id: script.id,
            method,
            path: req.path,
            path_key: pattern.normalized(),
            dispatch_mode: req.dispatch_mode.unwrap_or(DispatchMode::Sync),
            auth: req.auth.unwrap_or(RouteAuth::Public),
        })
        .await
        .map_err(|e| ApiError::from_store(e, "script"))?;
    Ok((StatusCode::CREATED, Json(route.into())))
}

/// An HTTP method token (RFC 9110: no spaces, no line breaks, nothing to trim) naming
/// one of the route methods, in any case; or `ANY`.
fn parse_method(raw: &str) -> ApiResult<RouteMethod> {
    let is_token = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token {
        return Err(ApiError::invalid(
            "method",
            "method must be a single HTTP method token, without spaces or line breaks",
        ));
    }
    raw.to_ascii_uppercase()
        .parse()
        .map_err(|e| ApiError::invalid("method", format!("method {e}")))
}

/// List an app's routes.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/routes", tag = "routes",
    params(("app" = String, Path, description = "app id or slug"), ListParams),
    responses((status = 200, body = List<RouteDto>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn list_routes(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<RouteDto>>> {
    let app = caller.app(&state, &app, Capability::AppRead).await?;
    let page = state.store.list_routes(&app.id, &params.page()?).await?;
    Ok(Json(List::from_page(page, RouteDto::from)))
}

/// Delete a route.
#[utoipa::path(delete, path = "/api/v1/admin/routes/{id}", tag = "routes",
    params(("id" = String, Path, description = "route id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("route.manage"))))]
pub async fn delete_route(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = RouteId::parse(&id).map_err(|_| ApiError::not_found("route"))?;
    let route = state
        .store
        .get_route(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "route"))?;
    caller
        .require_on(&state, &route.app_id, Capability::RouteManage, "route")
        .await?;
    state
        .store
        .delete_route(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "route"))?;
    Ok(StatusCode::NO_CONTENT)
}
