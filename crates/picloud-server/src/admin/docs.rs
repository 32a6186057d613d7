//! Browsing an app's documents.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use picloud_store::{Doc, Query};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, ListParams};
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
    picloud_services::DocsService::validate_collection_name(&collection)
        .map_err(|e| ApiError::invalid("collection", e.to_string()))?;
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
