//! An app's stored files: list, metadata, download, upload, delete.
//!
//! Downloads come from the dashboard's origin, so they follow API.md "Serving user
//! bytes": `nosniff` always, a `sandbox` CSP always, and everything but inert types
//! (raster images, audio, video, PDF) as an attachment, so an uploaded HTML or SVG
//! file never runs script where the dashboard's session lives.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use picloud_core::access::Capability;
use picloud_services::{CallContext, FileChanges};
use picloud_store::FileMeta;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, ListParams};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct FileDto {
    pub id: String,
    pub collection: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes.
    pub checksum: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<FileMeta> for FileDto {
    fn from(f: FileMeta) -> Self {
        Self {
            id: f.id.into_string(),
            collection: f.collection,
            name: f.name,
            content_type: f.content_type,
            size: f.size,
            checksum: f.checksum,
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilesQuery {
    /// Only this collection's files; all of the app's when left out.
    pub collection: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name (required on create; on replace, a new name).
    pub name: Option<String>,
}

fn ctx(app: &picloud_store::App) -> CallContext {
    // The handler has checked the caller's rights; the service acts for the app.
    CallContext {
        app_id: app.id.clone(),
        caller_scopes: None,
        depth: 0,
        script_id: None,
    }
}

/// The request body as the blob store's stream: never buffered whole, capped by the
/// service as it flows.
fn body_stream(body: Body) -> picloud_blob::ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

/// The upload's media type: the request's `Content-Type`, or
/// `application/octet-stream` when it has none.
fn content_type(headers: &HeaderMap) -> ApiResult<String> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok("application/octet-stream".into()),
        Some(v) => v
            .to_str()
            .map(str::to_owned)
            .map_err(|_| ApiError::invalid("content_type", "Content-Type must be ASCII")),
    }
}

/// An upload's error answer. The body may be partly unread (a cap hit mid-stream, a
/// refusal before the first byte), so the connection cannot carry another request:
/// say so, or a client reusing it gets its next request cut off.
fn closing(e: ApiError) -> Response {
    let mut response = e.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// List an app's files (all, or one collection's) in creation order.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/files", tag = "files",
    params(("app" = String, Path, description = "app id or slug"), FilesQuery),
    responses((status = 200, body = List<FileDto>), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.read"))))]
pub async fn list_files(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> ApiResult<Json<List<FileDto>>> {
    let app = caller.app(&state, &app, Capability::DataRead).await?;
    let collection = q.collection.as_deref().filter(|c| !c.is_empty());
    // Checked here for the admin API's own answers (400 for a bad limit or cursor).
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    let files = state
        .services
        .files
        .list(&ctx(&app), collection, cursor, Some(page.limit))
        .await
        .map_err(|e| field_error(e, "collection"))?;
    Ok(Json(List {
        items: files.items.into_iter().map(FileDto::from).collect(),
        next_cursor: files.cursor,
    }))
}

/// A service's `Invalid` names the field at fault.
fn field_error(e: picloud_services::ServiceError, field: &str) -> ApiError {
    match e {
        picloud_services::ServiceError::Invalid(message) => ApiError::invalid(field, message),
        other => other.into(),
    }
}

/// Upload a new file to a collection: the request body is the bytes, its
/// `Content-Type` is kept, `?name=` names it. Files triggers fire `create`.
#[utoipa::path(post, path = "/api/v1/admin/apps/{app}/files/{collection}", tag = "files",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the file's bytes"),
    responses((status = 201, body = FileDto), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.write"))))]
pub async fn upload_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<FileDto>), Response> {
    upload(state, caller, app, collection, q, headers, body)
        .await
        .map_err(closing)
}

async fn upload(
    state: AppState,
    caller: Caller,
    app: String,
    collection: String,
    q: UploadQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<FileDto>)> {
    let app = caller.app(&state, &app, Capability::DataWrite).await?;
    let name = q
        .name
        .ok_or_else(|| ApiError::invalid("name", "an upload needs ?name="))?;
    let content_type = content_type(&headers)?;
    picloud_services::KvService::validate_collection_name(&collection)
        .map_err(|e| ApiError::invalid("collection", e.to_string()))?;
    picloud_services::files::validate_name(&name).map_err(|e| field_error(e, "name"))?;
    picloud_services::files::validate_content_type(&content_type)
        .map_err(|e| field_error(e, "content_type"))?;
    let written = state
        .services
        .files
        .create(
            &ctx(&app),
            &collection,
            &name,
            &content_type,
            body_stream(body),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(written.file.into())))
}

async fn head(
    state: &AppState,
    app: &picloud_store::App,
    collection: &str,
    id: &str,
) -> ApiResult<FileMeta> {
    state
        .services
        .files
        .head(&ctx(app), collection, id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))
}

/// A file's metadata.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/files/{collection}/{file_id}", tag = "files",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name"),
        ("file_id" = String, Path, description = "file id")),
    responses((status = 200, body = FileDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.read"))))]
pub async fn get_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection, id)): Path<(String, String, String)>,
) -> ApiResult<Json<FileDto>> {
    let app = caller.app(&state, &app, Capability::DataRead).await?;
    Ok(Json(head(&state, &app, &collection, &id).await?.into()))
}

/// Delete a file (its row, then its bytes). Files triggers fire `delete`.
#[utoipa::path(delete, path = "/api/v1/admin/apps/{app}/files/{collection}/{file_id}", tag = "files",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name"),
        ("file_id" = String, Path, description = "file id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.write"))))]
pub async fn delete_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let app = caller.app(&state, &app, Capability::DataWrite).await?;
    let (existed, _) = state
        .services
        .files
        .delete(&ctx(&app), &collection, &id)
        .await?;
    if existed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("file"))
    }
}

/// Download a file's bytes, checked against its checksum as they stream (a mismatch
/// cuts the download off). Served under the headers of API.md "Serving user bytes".
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/files/{collection}/{file_id}/content",
    tag = "files",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name"),
        ("file_id" = String, Path, description = "file id")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.read"))))]
pub async fn download_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let app = caller.app(&state, &app, Capability::DataRead).await?;
    let (file, stream) = state
        .services
        .files
        .open(&ctx(&app), &collection, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    let mut response = Body::from_stream(stream).into_response();
    crate::user_bytes::protect(response.headers_mut(), &file.name, &file.content_type);
    if let Ok(len) = HeaderValue::from_str(&file.size.to_string()) {
        response.headers_mut().insert(header::CONTENT_LENGTH, len);
    }
    Ok(response)
}

/// Replace a file's bytes (and its `Content-Type`; `?name=` renames it). Files
/// triggers fire `update`.
#[utoipa::path(put, path = "/api/v1/admin/apps/{app}/files/{collection}/{file_id}/content",
    tag = "files",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name"),
        ("file_id" = String, Path, description = "file id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the file's new bytes"),
    responses((status = 200, body = FileDto), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.write"))))]
pub async fn replace_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection, id)): Path<(String, String, String)>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FileDto>, Response> {
    replace(state, caller, (app, collection, id), q, headers, body)
        .await
        .map_err(closing)
}

async fn replace(
    state: AppState,
    caller: Caller,
    (app, collection, id): (String, String, String),
    q: UploadQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<FileDto>> {
    let app = caller.app(&state, &app, Capability::DataWrite).await?;
    let content_type = content_type(&headers)?;
    if let Some(name) = &q.name {
        picloud_services::files::validate_name(name).map_err(|e| field_error(e, "name"))?;
    }
    picloud_services::files::validate_content_type(&content_type)
        .map_err(|e| field_error(e, "content_type"))?;
    let written = state
        .services
        .files
        .update(
            &ctx(&app),
            &collection,
            &id,
            FileChanges {
                name: q.name,
                content_type: Some(content_type),
                body: Some(body_stream(body)),
            },
        )
        .await?;
    Ok(Json(written.file.into()))
}
