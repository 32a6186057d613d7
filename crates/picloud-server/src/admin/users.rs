//! Users, for instance admins (`user:admin`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use picloud_core::UserId;
use picloud_store::{KeyRevocation, NewUser, User, UserPatch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::session::{hash_password, validate_email, validate_password};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, ListParams};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    pub id: String,
    pub email: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserDto {
    fn from(u: User) -> Self {
        Self {
            id: u.id.into_string(),
            email: u.email,
            is_admin: u.is_admin,
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub password: String,
    pub is_admin: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new password. Every session of the user ends, except the caller's own when
    /// users change their own password.
    pub password: Option<String>,
    pub is_admin: Option<bool>,
    /// A disabled user's sessions and keys stop working at once. Their sessions end
    /// for good: enabling the user again revives none (their API keys do work again,
    /// unless `revoke_api_keys` deleted them).
    pub disabled: Option<bool>,
    /// Also delete every API key of the user, in the same change (default `false`;
    /// the dashboard sends `true` with a new password unless unticked).
    pub revoke_api_keys: Option<bool>,
}

async fn load_user(state: &AppState, id: &str) -> ApiResult<User> {
    let id = UserId::parse(id).map_err(|_| ApiError::not_found("user"))?;
    state
        .store
        .get_user(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "user"))
}

/// List users.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "users", params(ListParams),
    responses((status = 200, body = List<UserDto>), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("user.admin"))))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<List<UserDto>>> {
    caller.require(Capability::UserAdmin)?;
    let page = state.store.list_users(&params.page()?).await?;
    Ok(Json(List::from_page(page, UserDto::from)))
}

/// Create a user.
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserDto), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("user.admin"))))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    caller.require(Capability::UserAdmin)?;
    if req.is_admin == Some(true) {
        caller.require(Capability::AdminsManage)?;
    }
    let email = validate_email(&req.email)?;
    validate_password(&req.password)?;
    let password_hash = hash_password(req.password).await?;
    let user = state
        .store
        .create_user(NewUser {
            email,
            password_hash,
            is_admin: req.is_admin.unwrap_or(false),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Read a user.
#[utoipa::path(get, path = "/api/v1/admin/users/{id}", tag = "users",
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = UserDto), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("user.admin"))))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<UserDto>> {
    caller.require(Capability::UserAdmin)?;
    Ok(Json(load_user(&state, &id).await?.into()))
}

/// Change a user's password, admin flag or disabled flag; optionally revoke their API
/// keys. 409 when the change would leave no enabled instance admin.
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "users", request_body = UpdateUser,
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = UserDto), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "would remove the last admin")),
    security(("bearer" = [])), extensions(("x-capability" = json!("user.admin"))))]
pub async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<Json<UserDto>> {
    caller.require(Capability::UserAdmin)?;
    let user = load_user(&state, &id).await?;
    if user.is_admin || req.is_admin == Some(true) {
        caller.require(Capability::AdminsManage)?;
    }
    let password_hash = match req.password {
        Some(password) => {
            validate_password(&password)?;
            Some(hash_password(password).await?)
        }
        None => None,
    };
    // Changing your own password should not sign you out of the very session you
    // did it with; every other session (a stolen token among them) ends.
    let keep_session = caller
        .session_id
        .clone()
        .filter(|_| caller.user.id == user.id);
    let api_keys = if req.revoke_api_keys == Some(true) {
        KeyRevocation::RevokeAll
    } else {
        KeyRevocation::Keep
    };
    // One write: the last-admin rule, the session epoch and the key revocation
    // commit together or not at all.
    let updated = state
        .store
        .update_user(
            &user.id,
            UserPatch {
                password_hash,
                is_admin: req.is_admin,
                disabled: req.disabled,
                api_keys,
                keep_session,
                if_password_hash: None,
            },
        )
        .await
        .map_err(|e| ApiError::from_store(e, "user"))?;
    Ok(Json(updated.into()))
}

/// Delete a user, with their sessions, keys and memberships.
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}", tag = "users",
    params(("id" = String, Path, description = "user id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "the last admin")),
    security(("bearer" = [])), extensions(("x-capability" = json!("user.admin"))))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Capability::UserAdmin)?;
    let user = load_user(&state, &id).await?;
    if user.is_admin {
        caller.require(Capability::AdminsManage)?;
    }
    // The store refuses to delete the last enabled admin, inside its own write.
    state
        .store
        .delete_user(&user.id)
        .await
        .map_err(|e| ApiError::from_store(e, "user"))?;
    Ok(StatusCode::NO_CONTENT)
}
