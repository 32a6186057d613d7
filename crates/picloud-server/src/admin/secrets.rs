//! An app's secrets: names and times in listings, values only through the explicit
//! reveal. Every call needs the app `admin` role (API.md). Writes and the reveal are
//! POST/DELETE, so the audit middleware records each (method, route, path, caller),
//! and never a body: a value reaches neither the audit log nor the server log.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::ApiJson;
use crate::state::AppState;

/// A secret as listings show it: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretDto {
    pub name: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// 1 to 128 letters, digits, `_`, `-` or `.`, starting with a letter or `_`.
    pub name: String,
    /// Any JSON value but null (a string, object, array, number or boolean); scripts
    /// read it back with the same type.
    pub value: serde_json::Value,
}

// No Debug derive: it would print the value.
impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// A revealed secret.
#[derive(Serialize, ToSchema)]
pub struct RevealedSecret {
    pub name: String,
    pub value: serde_json::Value,
}

/// The app's secrets, by name: names and `updated_at` only.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/secrets", tag = "secrets",
    params(("app" = String, Path, description = "app id or slug")),
    responses((status = 200, body = List<SecretDto>), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.admin"))))]
pub async fn list_secrets(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<List<SecretDto>>> {
    let app = caller.app(&state, &app, Capability::AppAdmin).await?;
    let items = state
        .services
        .secrets
        .list_meta(&app.id)
        .await?
        .into_iter()
        .map(|m| SecretDto {
            name: m.name,
            updated_at: m.updated_at,
        })
        .collect();
    Ok(Json(List {
        items,
        next_cursor: None,
    }))
}

/// Create (201) or replace (200) a secret. The answer names it; it never echoes the
/// value.
#[utoipa::path(post, path = "/api/v1/admin/apps/{app}/secrets", tag = "secrets",
    request_body = PutSecret,
    params(("app" = String, Path, description = "app id or slug")),
    responses((status = 201, body = SecretDto), (status = 200, body = SecretDto),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.admin"))))]
pub async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<PutSecret>,
) -> ApiResult<(StatusCode, Json<SecretDto>)> {
    let app = caller.app(&state, &app, Capability::AppAdmin).await?;
    let secrets = &state.services.secrets;
    let created = secrets.put(&app.id, &req.name, &req.value).await?;
    // Read back for its times; a delete racing in between is a 404 like any other.
    let meta = secrets
        .meta(&app.id, &req.name)
        .await?
        .ok_or_else(|| ApiError::not_found("secret"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SecretDto {
            name: meta.name,
            updated_at: meta.updated_at,
        }),
    ))
}

/// Delete a secret.
#[utoipa::path(delete, path = "/api/v1/admin/apps/{app}/secrets/{name}", tag = "secrets",
    params(("app" = String, Path, description = "app id or slug"),
        ("name" = String, Path, description = "secret name")),
    responses((status = 204), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.admin"))))]
pub async fn delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = caller.app(&state, &app, Capability::AppAdmin).await?;
    if state.services.secrets.remove(&app.id, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("secret"))
    }
}

/// Reveal a secret's value: an explicit, audited call (POST, so the audit log records
/// who asked for which secret, never the value). The answer is not to be cached.
#[utoipa::path(post, path = "/api/v1/admin/apps/{app}/secrets/{name}/reveal", tag = "secrets",
    params(("app" = String, Path, description = "app id or slug"),
        ("name" = String, Path, description = "secret name")),
    responses((status = 200, body = RevealedSecret), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.admin"))))]
pub async fn reveal_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let app = caller.app(&state, &app, Capability::AppAdmin).await?;
    let value = state
        .services
        .secrets
        .reveal(&app.id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("secret"))?;
    let mut response = Json(RevealedSecret { name, value }).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
