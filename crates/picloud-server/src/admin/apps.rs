use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use picloud_core::model::validate_slug;
use picloud_core::AppId;
use picloud_store::{App, AppPatch, NewApp, Page, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, ListParams};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AppDto {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<App> for AppDto {
    fn from(a: App) -> Self {
        Self {
            id: a.id.into_string(),
            slug: a.slug,
            name: a.name,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// `^[a-z][a-z0-9-]{1,62}$`; the app answers on `{slug}.{base_domain}`.
    pub slug: String,
    /// Defaults to the slug.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    pub name: Option<String>,
}

fn validate_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "name must be 1 to 200 characters, without control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Create an app (instance admins).
#[utoipa::path(post, path = "/api/v1/admin/apps", tag = "apps", request_body = CreateApp,
    responses((status = 201, body = AppDto), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.create"))))]
pub async fn create_app(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateApp>,
) -> ApiResult<(StatusCode, Json<AppDto>)> {
    caller.require(Capability::AppCreate)?;
    validate_slug(&req.slug).map_err(|m| ApiError::invalid("slug", m))?;
    let name = match req.name.as_deref() {
        Some(name) => validate_name(name)?,
        None => req.slug.clone(),
    };
    let app = state
        .store
        .create_app(NewApp {
            slug: req.slug,
            name,
        })
        .await?;
    if let Some(slot) = &caller.audit {
        slot.set_app(&app.id);
    }
    Ok((StatusCode::CREATED, Json(app.into())))
}

/// List the apps the caller may see.
#[utoipa::path(get, path = "/api/v1/admin/apps", tag = "apps", params(ListParams),
    responses((status = 200, body = List<AppDto>)),
    security(("bearer" = [])), extensions(("x-capability" = json!("signed_in"))))]
pub async fn list_apps(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<AppDto>>> {
    let page = params.page()?;
    let key_app = caller.principal.key.as_ref().and_then(|k| k.app_id.clone());
    if caller.principal.is_instance_admin && key_app.is_none() {
        let apps = state.store.list_apps(&page).await?;
        return Ok(Json(List::from_page(apps, AppDto::from)));
    }
    // A member's apps are few: read their ids, page here.
    let mut ids: Vec<AppId> = match key_app {
        Some(only) => vec![only],
        None => state
            .store
            .memberships_of(&caller.user.id)
            .await?
            .into_iter()
            .map(|m| m.app_id)
            .collect(),
    };
    ids.sort();
    ids.retain(|id| {
        page.after
            .as_deref()
            .is_none_or(|after| id.as_str() > after)
    });
    let mut apps = Vec::new();
    for id in ids {
        if apps.len() > page.limit as usize {
            break;
        }
        if !caller.sees(&state, &id).await? {
            continue;
        }
        match state.store.get_app(&id).await {
            Ok(app) => apps.push(app),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let page = Page::from_rows(apps, &page, |a| a.id.as_str());
    Ok(Json(List::from_page(page, AppDto::from)))
}

/// Read an app.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "app id or slug")),
    responses((status = 200, body = AppDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn get_app(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<AppDto>> {
    Ok(Json(
        caller.app(&state, &app, Capability::AppRead).await?.into(),
    ))
}

/// Rename an app.
#[utoipa::path(patch, path = "/api/v1/admin/apps/{app}", tag = "apps", request_body = UpdateApp,
    params(("app" = String, Path, description = "app id or slug")),
    responses((status = 200, body = AppDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.admin"))))]
pub async fn update_app(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<UpdateApp>,
) -> ApiResult<Json<AppDto>> {
    let app = caller.app(&state, &app, Capability::AppAdmin).await?;
    let name = req.name.as_deref().map(validate_name).transpose()?;
    let updated = state
        .store
        .update_app(&app.id, AppPatch { name })
        .await
        .map_err(|e| ApiError::from_store(e, "app"))?;
    Ok(Json(updated.into()))
}

/// Delete an app and everything it owns.
#[utoipa::path(delete, path = "/api/v1/admin/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "app id or slug")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.admin"))))]
pub async fn delete_app(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<StatusCode> {
    let app = caller.app(&state, &app, Capability::AppAdmin).await?;
    state
        .store
        .delete_app(&app.id)
        .await
        .map_err(|e| ApiError::from_store(e, "app"))?;
    Ok(StatusCode::NO_CONTENT)
}
