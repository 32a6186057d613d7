//! An app's documents: browsing, deleting a collection, and the indexes declared on
//! a collection's fields.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use picloud_store::{Doc, DocsIndex, FieldPath, IndexDeclared, Query};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, ListParams};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct DocDto {
    pub id: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Doc> for DocDto {
    fn from(d: Doc) -> Self {
        Self {
            id: d.id.into_string(),
            data: d.data,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocsQuery {
    /// A filter in the query language of `docs::find`, as JSON (no `$sort`, `$limit`
    /// or `$skip`: pages are in creation order).
    pub filter: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Browse a document collection in creation order, optionally filtered.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/docs/{collection}", tag = "data",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name"), DocsQuery),
    responses((status = 200, body = List<DocDto>), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.read"))))]
pub async fn browse_docs(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<DocsQuery>,
) -> ApiResult<Json<List<DocDto>>> {
    let app = caller.app(&state, &app, Capability::DataRead).await?;
    collection_name(&collection)?;
    let filter = match q.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        None => None,
        Some(text) => {
            let json: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| ApiError::invalid("filter", format!("the filter is not JSON: {e}")))?;
            Some(Query::parse_filter(&json).map_err(|e| ApiError::invalid("filter", e.0))?)
        }
    };
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let docs = state
        .store
        .docs_list(&app.id, &collection, filter.as_ref(), &page)
        .await?;
    Ok(Json(List::from_page(docs, DocDto::from)))
}

fn collection_name(collection: &str) -> ApiResult<()> {
    picloud_services::DocsService::validate_collection_name(collection)
        .map_err(|e| ApiError::invalid("collection", e.to_string()))
}

/// A field path as the query language takes it, or 422 naming it.
fn field_path(field: &str) -> ApiResult<FieldPath> {
    FieldPath::parse(field).map_err(|e| ApiError::invalid("field", e.0))
}

/// Delete a collection: every document in it and every index declared on it. No
/// trigger fires (documents are not deleted one by one). Deleting a collection that
/// holds nothing succeeds too.
#[utoipa::path(delete, path = "/api/v1/admin/apps/{app}/docs/{collection}", tag = "data",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name")),
    responses((status = 204), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.write"))))]
pub async fn delete_collection(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = caller.app(&state, &app, Capability::DataWrite).await?;
    collection_name(&collection)?;
    state
        .store
        .docs_drop_collection(&app.id, &collection)
        .await
        .map_err(|e| ApiError::from_store(e, "app"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// An index declared on one field of a collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocsIndexDto {
    pub collection: String,
    /// The dotted field path, as declared (`user.email`).
    pub field: String,
    pub created_at: DateTime<Utc>,
    /// The index is built and serves queries. False only on PostgreSQL after a build
    /// was cut short (the server stopped during it): declaring the index again
    /// rebuilds it.
    pub ready: bool,
}

impl From<DocsIndex> for DocsIndexDto {
    fn from(i: DocsIndex) -> Self {
        Self {
            collection: i.collection,
            field: i.field.dotted(),
            created_at: i.created_at,
            ready: i.ready,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDocsIndex {
    /// The field to index, as `find` names it: 1 to 5 dotted segments of letters,
    /// digits, `_` and `-`.
    pub field: String,
}

/// The indexes declared on a collection, by field (at most ten: one page).
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/docs/{collection}/indexes", tag = "data",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name")),
    responses((status = 200, body = List<DocsIndexDto>), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.read"))))]
pub async fn list_indexes(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection)): Path<(String, String)>,
) -> ApiResult<Json<List<DocsIndexDto>>> {
    let app = caller.app(&state, &app, Capability::DataRead).await?;
    collection_name(&collection)?;
    let indexes = state.store.docs_indexes(&app.id, &collection).await?;
    Ok(Json(List {
        items: indexes.into_iter().map(DocsIndexDto::from).collect(),
        next_cursor: None,
    }))
}

/// Declare an index on a field of a collection, so that `find` by equality on it (on
/// SQLite and PostgreSQL), ranges and `$sort` on it (PostgreSQL) use an index. The
/// answer comes once the index is built: on SQLite the build holds the write lock (a
/// large collection delays other writes meanwhile; reads go on), on PostgreSQL it
/// runs `CONCURRENTLY`. Declaring an index that exists answers 200 with it; 409 when
/// the collection has ten already.
#[utoipa::path(post, path = "/api/v1/admin/apps/{app}/docs/{collection}/indexes", tag = "data",
    request_body = CreateDocsIndex,
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name")),
    responses((status = 201, body = DocsIndexDto), (status = 200, body = DocsIndexDto),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.write"))))]
pub async fn create_index(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection)): Path<(String, String)>,
    ApiJson(req): ApiJson<CreateDocsIndex>,
) -> ApiResult<(StatusCode, Json<DocsIndexDto>)> {
    let app = caller.app(&state, &app, Capability::DataWrite).await?;
    collection_name(&collection)?;
    let field = field_path(&req.field)?;
    let (index, declared) = state
        .store
        .docs_create_index(&app.id, &collection, &field)
        .await
        .map_err(|e| ApiError::from_store(e, "app"))?;
    let status = match declared {
        IndexDeclared::Created => StatusCode::CREATED,
        IndexDeclared::Existing => StatusCode::OK,
    };
    Ok((status, Json(index.into())))
}

/// Drop the index declared on a field; queries on it go on, without the index.
#[utoipa::path(delete, path = "/api/v1/admin/apps/{app}/docs/{collection}/indexes/{field}",
    tag = "data",
    params(("app" = String, Path, description = "app id or slug"),
        ("collection" = String, Path, description = "collection name"),
        ("field" = String, Path, description = "the indexed field path (`user.email`)")),
    responses((status = 204), (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("data.write"))))]
pub async fn drop_index(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, collection, field)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let app = caller.app(&state, &app, Capability::DataWrite).await?;
    collection_name(&collection)?;
    let field = field_path(&field)?;
    state
        .store
        .docs_drop_index(&app.id, &collection, &field)
        .await
        .map_err(|e| ApiError::from_store(e, "index"))?;
    Ok(StatusCode::NO_CONTENT)
}
