//! Sessions, the auth endpoints, and the extractors that guard the admin API.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::{Principal, PrincipalKind};
use picloud_core::crypto;
use picloud_store::{NewSession, NewUser, StoreError, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Prefix of session tokens; lets the data plane tell our credentials from a
/// script's own bearer tokens.
pub const SESSION_PREFIX: &str = "pcs_";

/// The dashboard's session cookie (never honoured, and never shown, on the data plane).
pub const SESSION_COOKIE: &str = "picloud_session";

/// Renew a session's expiry at most this often, so reads do not all write.
const RENEW_AFTER_SECS: i64 = 60;

#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub principal: Principal,
    pub session_id: picloud_core::SessionId,
}

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether a token looks like one of ours (it may still be invalid).
pub fn is_picloud_token(token: &str) -> bool {
    token.starts_with(SESSION_PREFIX)
}

/// Resolves a token to a live session of an enabled user; `None` otherwise.
pub async fn authenticate_token(state: &AppState, token: &str) -> ApiResult<Option<Authenticated>> {
    if !is_picloud_token(token) {
        return Ok(None);
    }
    let now = picloud_core::now();
    let (session, user) = match state
        .store
        .session_by_token_hash(&crypto::hash_token(token), now)
        .await
    {
        Ok(found) => found,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(ApiError::internal(e)),
    };
    if user.disabled {
        return Ok(None);
    }
    let ttl = session_ttl(state);
    if (now - session.last_used_at).num_seconds() >= RENEW_AFTER_SECS {
        if let Err(e) = state.store.touch_session(&session.id, now, now + ttl).await {
            tracing::warn!(error = %e, "could not renew a session");
        }
    }
    Ok(Some(Authenticated {
        principal: Principal {
            kind: PrincipalKind::User,
            user_id: user.id.clone(),
            key_id: None,
            is_instance_admin: user.is_admin,
        },
        user,
        session_id: session.id,
    }))
}

fn session_ttl(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.config.session_ttl).unwrap_or(chrono::Duration::days(1))
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        authenticate_token(state, token)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }
}

/// An authenticated instance admin: every `/api/v1/admin/*` route takes one.
#[derive(Debug, Clone)]
pub struct InstanceAdmin(pub Authenticated);

impl FromRequestParts<AppState> for InstanceAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let auth = Authenticated::from_request_parts(parts, state).await?;
        if auth.user.is_admin {
            Ok(Self(auth))
        } else {
            Err(ApiError::forbidden("this needs an instance admin"))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub is_admin: bool,
}

impl From<&User> for UserSummary {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.clone(),
            is_admin: u.is_admin,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserSummary,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time token printed at start-up.
    pub token: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Membership {
    pub app_id: String,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub id: String,
    pub email: String,
    pub is_admin: bool,
    pub memberships: Vec<Membership>,
}

pub fn validate_email(email: &str) -> ApiResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(email)
    } else {
        Err(ApiError::invalid("email", "not a valid email address"))
    }
}

pub fn validate_password(password: &str) -> ApiResult<()> {
    let chars = password.chars().count();
    if !(8..=1024).contains(&chars) {
        return Err(ApiError::invalid(
            "password",
            "password must be 8 to 1024 characters long",
        ));
    }
    Ok(())
}

/// Hashes on a blocking thread: argon2 takes tens of milliseconds of CPU.
pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(ApiError::internal)
}

async fn new_session(state: &AppState, user: &User) -> ApiResult<SessionResponse> {
    let token = crypto::generate_token(SESSION_PREFIX);
    let expires_at = picloud_core::now() + session_ttl(state);
    state
        .store
        .create_session(NewSession {
            user_id: user.id.clone(),
            token_hash: crypto::hash_token(&token),
            expires_at,
        })
        .await?;
    Ok(SessionResponse {
        token,
        expires_at,
        user: user.into(),
    })
}

/// Create the first instance admin with the one-time set-up token.
#[utoipa::path(post, path = "/api/v1/auth/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 201, body = SessionResponse), (status = 401, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "a user already exists")))]
pub async fn setup(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SetupRequest>,
) -> ApiResult<(StatusCode, Json<SessionResponse>)> {
    if !state.setup.matches(&req.token) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid or used set-up token",
        ));
    }
    let email = validate_email(&req.email)?;
    validate_password(&req.password)?;
    let password_hash = hash_password(req.password).await?;
    let user = state
        .store
        .create_first_user(NewUser {
            email,
            password_hash,
            is_admin: true,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict("set-up is done: a user already exists"),
            other => ApiError::from(other),
        })?;
    state.setup.revoke();
    tracing::info!(user = %user.id, "first instance admin created through set-up");
    Ok((StatusCode::CREATED, Json(new_session(&state, &user).await?)))
}

/// Exchange email and password for a session token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorEnvelope)))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<SessionResponse>> {
    let wrong = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong email or password",
        )
    };
    let user = match state.store.get_user_by_email(req.email.trim()).await {
        Ok(user) => Some(user),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(ApiError::internal(e)),
    };
    // Unknown users cost the same hashing time as known ones.
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || match phc {
        Some(phc) => crypto::verify_password(&password, &phc),
        None => {
            crypto::verify_password_dummy(&password);
            false
        }
    })
    .await
    .map_err(ApiError::internal)?;
    match user {
        Some(user) if ok && !user.disabled => Ok(Json(new_session(&state, &user).await?)),
        _ => Err(wrong()),
    }
}

/// Revoke the session token used for this request.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorEnvelope)), security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, auth: Authenticated) -> ApiResult<StatusCode> {
    match state.store.delete_session(&auth.session_id).await {
        Ok(()) | Err(StoreError::NotFound) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn me(auth: Authenticated) -> Json<MeResponse> {
    Json(MeResponse {
        id: auth.user.id.to_string(),
        email: auth.user.email,
        is_admin: auth.user.is_admin,
        memberships: Vec::new(),
    })
}
