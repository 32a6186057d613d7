//! `/api/v1/admin/*`: one file per resource. Every handler takes a
//! [`Caller`](crate::auth::Caller), states the capability it needs (in code, and as
//! `x-capability` in the OpenAPI document), and checks it before anything else.

pub mod apps;
pub mod audit;
pub mod data;
pub mod docs;
pub mod executions;
pub mod files;
pub mod imports;
pub mod keys;
pub mod members;
pub mod routes;
pub mod scripts;
pub mod secrets;
pub mod triggers;
pub mod users;

use picloud_core::AppId;
use picloud_store::{App, Page, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `{"items": [...], "next_cursor": "…" | null}`
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    pub fn from_page<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Self {
        let next_cursor = page.next_cursor.as_ref().map(|c| c.as_str().to_owned());
        Self {
            items: page.items.into_iter().map(f).collect(),
            next_cursor,
        }
    }
}

/// Loads the app a path names by id (`app_…`) or slug.
pub async fn load_app(state: &AppState, key: &str) -> ApiResult<App> {
    let found = if key.starts_with("app_") {
        match AppId::parse(key) {
            Ok(id) => state.store.get_app(&id).await,
            Err(_) => Err(StoreError::NotFound),
        }
    } else if picloud_core::model::validate_slug(key).is_ok() {
        state.store.get_app_by_slug(key).await
    } else {
        Err(StoreError::NotFound)
    };
    found.map_err(|e| ApiError::from_store(e, "app"))
}
