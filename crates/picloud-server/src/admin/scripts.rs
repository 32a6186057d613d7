use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use picloud_core::model::{validate_module_name, ScriptKind};
use picloud_core::ScriptId;
use picloud_script::ScriptImport;
use picloud_store::{NewScript, Script, ScriptPatch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::imports::check_imports;
use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, ListParams};
use crate::state::AppState;

/// Largest script source accepted.
const MAX_SOURCE_BYTES: usize = 1 << 20;

#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptDto {
    pub id: String,
    pub app_id: String,
    pub name: String,
    pub kind: ScriptKind,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Script> for ScriptDto {
    fn from(s: Script) -> Self {
        Self {
            id: s.id.into_string(),
            app_id: s.app_id.into_string(),
            name: s.name,
            kind: s.kind,
            source: s.source,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScript {
    pub name: String,
    /// `endpoint` (default) or `module`.
    pub kind: Option<ScriptKind>,
    pub source: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateScript {
    pub source: Option<String>,
    pub name: Option<String>,
}

fn validate_name(name: &str, kind: ScriptKind) -> ApiResult<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    match kind {
        ScriptKind::Module => {
            validate_module_name(name).map_err(|m| ApiError::invalid("name", m))?;
        }
        ScriptKind::Endpoint => {
            let ok = first_ok
                && name.len() <= 128
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                return Err(ApiError::invalid(
                    "name",
                    "a script name must start with a letter or '_' and use only letters, digits, '_', '-' and '.' (at most 128)",
                ));
            }
        }
    }
    Ok(())
}

/// Compiles on a thread with a script-sized stack (the parser recurses on nesting) and
/// returns what the script imports; a module must have a module's shape.
async fn compile_check(
    state: &AppState,
    source: String,
    kind: ScriptKind,
) -> ApiResult<Vec<ScriptImport>> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(ApiError::invalid(
            "source",
            format!("source is larger than {MAX_SOURCE_BYTES} bytes"),
        ));
    }
    let compiled = state
        .runner
        .check_script(source, kind)
        .await
        .map_err(ApiError::internal)?;
    compiled.map_err(|e| {
        let mut err = ApiError::invalid(
            "source",
            format!("the script does not compile: {}", e.message),
        );
        err.body.line = e.line;
        err.body.column = e.column;
        err
    })
}

/// Loads a script by id (404 when there is none).
pub async fn load_script(state: &AppState, id: &str) -> ApiResult<Script> {
    let id = ScriptId::parse(id).map_err(|_| ApiError::not_found("script"))?;
    state
        .store
        .get_script(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "script"))
}

/// A script the caller holds `capability` on; with `app`, only if it belongs to that
/// app. Scripts of apps the caller cannot see are reported missing.
pub async fn script_for(
    state: &AppState,
    caller: &Caller,
    id: &str,
    app: Option<&str>,
    capability: Capability,
) -> ApiResult<Script> {
    let script = match app {
        Some(app) => {
            let app = caller.app(state, app, capability).await?;
            let script = load_script(state, id).await?;
            if script.app_id != app.id {
                return Err(ApiError::not_found("script"));
            }
            script
        }
        None => {
            let script = load_script(state, id).await?;
            caller
                .require_on(state, &script.app_id, capability, "script")
                .await?;
            script
        }
    };
    Ok(script)
}

/// Create a script; it is compiled first and refused (422, with line and column) if
/// it does not compile.
#[utoipa::path(post, path = "/api/v1/admin/apps/{app}/scripts", tag = "scripts",
    request_body = CreateScript, params(("app" = String, Path, description = "app id or slug")),
    responses((status = 201, body = ScriptDto), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("script.write"))))]
pub async fn create_script(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiJson(req): ApiJson<CreateScript>,
) -> ApiResult<(StatusCode, Json<ScriptDto>)> {
    let app = caller.app(&state, &app, Capability::ScriptWrite).await?;
    let kind = req.kind.unwrap_or(ScriptKind::Endpoint);
    validate_name(&req.name, kind)?;
    let imports = compile_check(&state, req.source.clone(), kind).await?;
    check_imports(&state, &app.id, &req.name, kind, &imports).await?;
    let script = state
        .store
        .create_script(NewScript {
            app_id: app.id,
            name: req.name,
            kind,
            source: req.source,
            imports: imports.into_iter().map(|i| i.name).collect(),
        })
        .await
        .map_err(|e| ApiError::from_store(e, "app"))?;
    Ok((StatusCode::CREATED, Json(script.into())))
}

/// List an app's scripts.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/scripts", tag = "scripts",
    params(("app" = String, Path, description = "app id or slug"), ListParams),
    responses((status = 200, body = List<ScriptDto>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("script.read"))))]
pub async fn list_scripts(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<ScriptDto>>> {
    let app = caller.app(&state, &app, Capability::ScriptRead).await?;
    let page = state.store.list_scripts(&app.id, &params.page()?).await?;
    Ok(Json(List::from_page(page, ScriptDto::from)))
}

/// Read a script.
#[utoipa::path(get, path = "/api/v1/admin/scripts/{id}", tag = "scripts",
    params(("id" = String, Path, description = "script id")),
    responses((status = 200, body = ScriptDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("script.read"))))]
pub async fn get_script(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ScriptDto>> {
    let script = script_for(&state, &caller, &id, None, Capability::ScriptRead).await?;
    Ok(Json(script.into()))
}

/// Read a script of this app (404 if the id belongs to another app).
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/scripts/{id}", tag = "scripts",
    params(("app" = String, Path, description = "app id or slug"),
        ("id" = String, Path, description = "script id")),
    responses((status = 200, body = ScriptDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("script.read"))))]
pub async fn get_app_script(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<ScriptDto>> {
    let script = script_for(&state, &caller, &id, Some(&app), Capability::ScriptRead).await?;
    Ok(Json(script.into()))
}

async fn apply_update(
    state: &AppState,
    script: Script,
    req: UpdateScript,
) -> ApiResult<Json<ScriptDto>> {
    if let Some(name) = &req.name {
        validate_name(name, script.kind)?;
    }
    let mut imports = None;
    if let Some(source) = &req.source {
        let found = compile_check(state, source.clone(), script.kind).await?;
        let name = req.name.as_deref().unwrap_or(&script.name);
        check_imports(state, &script.app_id, name, script.kind, &found).await?;
        imports = Some(found.into_iter().map(|i| i.name).collect());
    }
    let updated = state
        .store
        .update_script(
            &script.id,
            ScriptPatch {
                name: req.name,
                source: req.source,
                imports,
            },
        )
        .await
        .map_err(|e| ApiError::from_store(e, "script"))?;
    Ok(Json(updated.into()))
}

/// Change a script's source and/or name (the source is compile-checked).
#[utoipa::path(put, path = "/api/v1/admin/scripts/{id}", tag = "scripts",
    request_body = UpdateScript, params(("id" = String, Path, description = "script id")),
    responses((status = 200, body = ScriptDto), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("script.write"))))]
pub async fn update_script(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateScript>,
) -> ApiResult<Json<ScriptDto>> {
    let script = script_for(&state, &caller, &id, None, Capability::ScriptWrite).await?;
    apply_update(&state, script, req).await
}

/// Change a script of this app.
#[utoipa::path(put, path = "/api/v1/admin/apps/{app}/scripts/{id}", tag = "scripts",
    request_body = UpdateScript, params(("app" = String, Path, description = "app id or slug"),
        ("id" = String, Path, description = "script id")),
    responses((status = 200, body = ScriptDto), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("script.write"))))]
pub async fn update_app_script(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateScript>,
) -> ApiResult<Json<ScriptDto>> {
    let script = script_for(&state, &caller, &id, Some(&app), Capability::ScriptWrite).await?;
    apply_update(&state, script, req).await
}

async fn remove(state: &AppState, script: Script) -> ApiResult<StatusCode> {
    state
        .store
        .delete_script(&script.id)
        .await
        .map_err(|e| ApiError::from_store(e, "script"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a script and its routes.
#[utoipa::path(delete, path = "/api/v1/admin/scripts/{id}", tag = "scripts",
    params(("id" = String, Path, description = "script id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("script.write"))))]
pub async fn delete_script(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let script = script_for(&state, &caller, &id, None, Capability::ScriptWrite).await?;
    remove(&state, script).await
}

/// Delete a script of this app.
#[utoipa::path(delete, path = "/api/v1/admin/apps/{app}/scripts/{id}", tag = "scripts",
    params(("app" = String, Path, description = "app id or slug"),
        ("id" = String, Path, description = "script id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("script.write"))))]
pub async fn delete_app_script(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let script = script_for(&state, &caller, &id, Some(&app), Capability::ScriptWrite).await?;
    remove(&state, script).await
}
