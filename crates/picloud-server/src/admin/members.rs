//! An app's members and their roles (viewer, editor, admin).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::{Capability, Role};
use picloud_core::UserId;
use picloud_store::{Membership, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, ListParams};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberDto {
    pub app_id: String,
    pub user_id: String,
    pub email: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMember {
    pub role: Role,
}

async fn dto(state: &AppState, m: Membership) -> ApiResult<MemberDto> {
    let email = match state.store.get_user(&m.user_id).await {
        Ok(user) => Some(user.email),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(MemberDto {
        app_id: m.app_id.into_string(),
        user_id: m.user_id.into_string(),
        email,
        role: m.role,
        created_at: m.created_at,
    })
}

/// An app's members.
#[utoipa::path(get, path = "/api/v1/admin/apps/{app}/members", tag = "members",
    params(("app" = String, Path, description = "app id or slug"), ListParams),
    responses((status = 200, body = List<MemberDto>), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("app.read"))))]
pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<MemberDto>>> {
    let app = caller.app(&state, &app, Capability::AppRead).await?;
    let page = state.store.list_members(&app.id, &params.page()?).await?;
    let next_cursor = page.next_cursor.as_ref().map(|c| c.as_str().to_owned());
    let mut items = Vec::with_capacity(page.items.len());
    for m in page.items {
        items.push(dto(&state, m).await?);
    }
    Ok(Json(List { items, next_cursor }))
}

/// Add a user to the app, or change their role.
#[utoipa::path(put, path = "/api/v1/admin/apps/{app}/members/{user_id}", tag = "members",
    request_body = SetMember,
    params(("app" = String, Path, description = "app id or slug"),
        ("user_id" = String, Path, description = "user id")),
    responses((status = 200, body = MemberDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("members.manage"))))]
pub async fn set_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, user)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetMember>,
) -> ApiResult<Json<MemberDto>> {
    let app = caller.app(&state, &app, Capability::MembersManage).await?;
    let user = UserId::parse(&user).map_err(|_| ApiError::not_found("user"))?;
    let membership = state
        .store
        .set_member(&app.id, &user, req.role)
        .await
        .map_err(|e| ApiError::from_store(e, "user"))?;
    Ok(Json(dto(&state, membership).await?))
}

/// Remove a user from the app.
#[utoipa::path(delete, path = "/api/v1/admin/apps/{app}/members/{user_id}", tag = "members",
    params(("app" = String, Path, description = "app id or slug"),
        ("user_id" = String, Path, description = "user id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("members.manage"))))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let app = caller.app(&state, &app, Capability::MembersManage).await?;
    let user = UserId::parse(&user).map_err(|_| ApiError::not_found("member"))?;
    state
        .store
        .remove_member(&app.id, &user)
        .await
        .map_err(|e| ApiError::from_store(e, "member"))?;
    Ok(StatusCode::NO_CONTENT)
}
