//! API keys: any signed-in user manages their own; instance admins see and revoke
//! anyone's. A key is shown once, at creation, and stored only as a hash.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::{self, Capability, Scope};
use picloud_core::{crypto, ApiKeyId, UserId};
use picloud_store::{ApiKey, NewApiKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::{Caller, API_KEY_PREFIX};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// Characters of a key kept to tell keys apart (`pk_` and 8 more).
const PREFIX_LEN: usize = 11;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDto {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub app_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The key itself: present only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<ApiKey> for ApiKeyDto {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.into_string(),
            user_id: k.user_id.into_string(),
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            app_id: k.app_id.map(|a| a.into_string()),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            key: None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// Some of the seven scopes. The key's rights are these intersected with its
    /// owner's rights.
    pub scopes: Vec<Scope>,
    /// Restrict the key to one app (id or slug).
    pub app_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// Instance admins: another user's keys (default: all users').
    pub user_id: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Create an API key for yourself. Only sessions create keys: a key cannot mint keys.
#[utoipa::path(post, path = "/api/v1/admin/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyDto), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("signed_in"))))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<ApiKeyDto>)> {
    caller.require(Capability::SignedIn)?;
    if caller.principal.key.is_some() {
        return Err(ApiError::forbidden(
            "API keys cannot create API keys; sign in",
        ));
    }
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "name must be 1 to 100 characters",
        ));
    }
    if req.scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes",
            "a key needs at least one scope",
        ));
    }
    let mut scopes = req.scopes;
    scopes.sort();
    scopes.dedup();
    if req.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::invalid("expires_at", "expires_at is in the past"));
    }
    let app_id = match req.app_id.as_deref() {
        Some(key) => {
            let app = super::load_app(&state, key).await?;
            if !caller.sees(&state, &app.id).await? {
                return Err(ApiError::not_found("app"));
            }
            Some(app.id)
        }
        None => None,
    };
    // Rights are intersected again on every use, but a key listing rights its owner
    // lacks would start working the day the owner is promoted: refuse it now.
    let held = match &app_id {
        Some(app) => {
            let role = caller.role_on(&state, app).await?;
            access::scopes_held(caller.principal.is_instance_admin, role)
        }
        None => {
            let roles = state
                .store
                .memberships_of(&caller.user.id)
                .await?
                .into_iter()
                .map(|m| m.role);
            access::scopes_held(caller.principal.is_instance_admin, roles)
        }
    };
    let missing: Vec<&str> = scopes
        .iter()
        .filter(|s| !held.contains(s))
        .map(|s| s.as_str())
        .collect();
    if !missing.is_empty() {
        let place = if app_id.is_some() { " on this app" } else { "" };
        return Err(ApiError::invalid(
            "scopes",
            format!(
                "a key cannot carry scopes its owner does not hold; you do not hold {}{place}",
                missing.join(", ")
            ),
        ));
    }
    let key = crypto::generate_token(API_KEY_PREFIX);
    let created = state
        .store
        .create_api_key(NewApiKey {
            user_id: caller.user.id.clone(),
            name,
            key_hash: crypto::hash_token(&key),
            prefix: key.chars().take(PREFIX_LEN).collect(),
            scopes,
            app_id,
            expires_at: req.expires_at,
        })
        .await?;
    let mut dto = ApiKeyDto::from(created);
    dto.key = Some(key);
    Ok((StatusCode::CREATED, Json(dto)))
}

/// Your API keys (instance admins: everyone's, or one user's with `?user_id=`).
#[utoipa::path(get, path = "/api/v1/admin/api-keys", tag = "api-keys", params(KeyQuery),
    responses((status = 200, body = List<ApiKeyDto>)),
    security(("bearer" = [])), extensions(("x-capability" = json!("signed_in"))))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<KeyQuery>,
) -> ApiResult<Json<List<ApiKeyDto>>> {
    let page = crate::extract::ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let admin = caller.require(Capability::UserAdmin).is_ok();
    let owner = match (admin, q.user_id.as_deref().filter(|u| !u.is_empty())) {
        (true, None) => None,
        (true, Some(user)) => Some(UserId::parse(user).map_err(|_| ApiError::not_found("user"))?),
        (false, _) => Some(caller.user.id.clone()),
    };
    let keys = state.store.list_api_keys(owner.as_ref(), &page).await?;
    Ok(Json(List::from_page(keys, ApiKeyDto::from)))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/admin/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "API key id")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("signed_in"))))]
pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = ApiKeyId::parse(&id).map_err(|_| ApiError::not_found("API key"))?;
    let key = state
        .store
        .get_api_key(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "API key"))?;
    let admin = caller.require(Capability::UserAdmin).is_ok();
    if key.user_id != caller.user.id && !admin {
        return Err(ApiError::not_found("API key"));
    }
    state
        .store
        .delete_api_key(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "API key"))?;
    Ok(StatusCode::NO_CONTENT)
}
