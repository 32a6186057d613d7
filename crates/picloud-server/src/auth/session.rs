//! Sessions, the auth endpoints, and the extractors that guard the admin API.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Role;
use picloud_core::crypto;
use picloud_core::ErrorCode;
use picloud_store::{NewSession, NewUser, StoreError, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cookie::{self, CookieScheme};
use super::origin::SameOrigin;
use super::{csrf_token, Caller, SESSION_PREFIX};
use crate::client::ClientIp;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::JsonOnly;
use crate::state::AppState;

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
    /// The bearer token. Absent when the session went into a cookie instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub user: UserSummary,
    /// Present for cookie sessions: send it as `X-CSRF-Token` on every change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// Put the session in an HttpOnly, SameSite=Strict cookie (the dashboard's way)
    /// instead of returning the token.
    #[serde(default)]
    pub cookie: bool,
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
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub id: String,
    pub email: String,
    pub is_admin: bool,
    pub memberships: Vec<Membership>,
    /// `"user"` or `"api_key"`.
    pub auth: &'static str,
    /// For cookie sessions, the CSRF token to send with changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

pub fn validate_email(email: &str) -> ApiResult<String> {
    picloud_core::email::normalize(email).map_err(|e| ApiError::invalid("email", e.to_string()))
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

async fn new_session(
    state: &AppState,
    user: &User,
    cookie: bool,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let token = crypto::generate_token(SESSION_PREFIX);
    let ttl = state.session_ttl();
    let expires_at = picloud_core::now() + ttl;
    let session = state
        .store
        .create_session(NewSession {
            user_id: user.id.clone(),
            token_hash: crypto::hash_token(&token),
            expires_at,
            session_epoch: user.session_epoch,
        })
        .await?;
    if !cookie {
        let body = SessionResponse {
            token: Some(token),
            expires_at,
            user: user.into(),
            csrf_token: None,
        };
        return Ok(Json(body).into_response());
    }
    let body = SessionResponse {
        token: None,
        expires_at,
        user: user.into(),
        csrf_token: Some(csrf_token(state, &session.id)),
    };
    let mut response = Json(body).into_response();
    let scheme = CookieScheme::for_request(headers);
    if let Some(value) = scheme.set_cookie(&token, ttl.num_seconds()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Create the first instance admin with the one-time set-up token.
#[utoipa::path(post, path = "/api/v1/auth/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 201, body = SessionResponse), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "a browser request from another origin"),
        (status = 409, body = ErrorEnvelope, description = "a user already exists"),
        (status = 415, body = ErrorEnvelope, description = "the body is not sent as application/json")))]
pub async fn setup(
    State(state): State<AppState>,
    _: SameOrigin,
    headers: HeaderMap,
    JsonOnly(req): JsonOnly<SetupRequest>,
) -> ApiResult<(StatusCode, Response)> {
    if !state.setup.matches(&req.token) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
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
    Ok((
        StatusCode::CREATED,
        new_session(&state, &user, false, &headers).await?,
    ))
}

/// Exchange email and password for a session (a token, or a cookie with `cookie: true`).
/// Ten failures a minute per account and client address, then 429 for that address;
/// past a hundred an hour for an account, only addresses it signed in from recently
/// may try it.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "a browser request from another origin"),
        (status = 415, body = ErrorEnvelope, description = "the body is not sent as application/json"),
        (status = 429, body = ErrorEnvelope)))]
pub async fn login(
    State(state): State<AppState>,
    _: SameOrigin,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    JsonOnly(req): JsonOnly<LoginRequest>,
) -> ApiResult<Response> {
    // The stored form, for the lookup and the throttle alike: a decomposed "é" is the
    // same account, and the same throttle bucket.
    let email = picloud_core::email::canonical(&req.email);
    if let Err(wait) = state.login_limiter.check(&email, client) {
        let mut e = ApiError::new(
            ErrorCode::RateLimited,
            "too many failed logins; wait before trying again",
        );
        e.retry_after_secs = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let user = match state.store.get_user_by_email(&email).await {
        Ok(user) => Some(user),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(ApiError::from_store(e, "user")),
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
        Some(user) if ok && !user.disabled => {
            state.login_limiter.record_success(&email, client);
            new_session(&state, &user, req.cookie, &headers).await
        }
        _ => {
            state.login_limiter.record_failure(&email, client);
            Err(ApiError::new(
                ErrorCode::Unauthorized,
                "wrong email or password",
            ))
        }
    }
}

/// Revoke the session used for this request (and clear its cookie).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "a browser request from another origin")),
    security(("bearer" = [])),
    extensions(("x-capability" = json!("signed_in"))))]
pub async fn logout(
    State(state): State<AppState>,
    _: SameOrigin,
    headers: HeaderMap,
    caller: Caller,
) -> ApiResult<Response> {
    let Some(session) = &caller.session_id else {
        return Err(ApiError::bad_request(
            "an API key has no session; delete the key to revoke it",
        ));
    };
    match state.store.delete_session(session).await {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(e) => return Err(ApiError::from(e)),
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some((_, scheme)) = cookie::session_cookie(&headers) {
        if let Some(clear) = scheme.set_cookie("", 0) {
            response.headers_mut().insert(header::SET_COOKIE, clear);
        }
    }
    Ok(response)
}

/// The signed-in user and their app memberships.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("signed_in"))))]
pub async fn me(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> ApiResult<Json<MeResponse>> {
    let memberships = state
        .store
        .memberships_of(&caller.user.id)
        .await?
        .into_iter()
        .filter(|m| {
            caller
                .principal
                .key
                .as_ref()
                .and_then(|k| k.app_id.as_ref())
                .is_none_or(|only| *only == m.app_id)
        })
        .map(|m| Membership {
            app_id: m.app_id.into_string(),
            role: m.role,
        })
        .collect();
    let csrf = match (&caller.session_id, bearer_absent(&headers)) {
        (Some(session), true) => Some(csrf_token(&state, session)),
        _ => None,
    };
    Ok(Json(MeResponse {
        id: caller.user.id.to_string(),
        email: caller.user.email,
        is_admin: caller.user.is_admin,
        memberships,
        auth: caller.principal.kind().as_str(),
        csrf_token: csrf,
    }))
}

fn bearer_absent(headers: &HeaderMap) -> bool {
    super::bearer(headers).is_none()
}
