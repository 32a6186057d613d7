//! Users changing their own password.

use axum::extract::State;
use axum::http::StatusCode;
use picloud_core::crypto;
use picloud_core::ErrorCode;
use picloud_store::{KeyRevocation, UserPatch};
use serde::Deserialize;
use utoipa::ToSchema;

use super::origin::SameOrigin;
use super::session::{hash_password, validate_password};
use super::Caller;
use crate::client::ClientIp;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::JsonOnly;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
    /// Also delete every API key of the user (default false; the dashboard ticks it).
    #[serde(default)]
    pub revoke_api_keys: bool,
}

/// Change your own password. The current one is required: a session left open on a
/// shared machine must not be enough to take the account over. Every other session
/// of the user ends; this one stays.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = ChangePassword,
    responses((status = 204), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope, description = "the current password is wrong, or the caller is an API key"),
        (status = 409, body = ErrorEnvelope, description = "another password change landed first"),
        (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("signed_in"))))]
pub async fn change_password(
    State(state): State<AppState>,
    _: SameOrigin,
    ClientIp(client): ClientIp,
    caller: Caller,
    JsonOnly(req): JsonOnly<ChangePassword>,
) -> ApiResult<StatusCode> {
    // An API key is a credential of its own: whoever holds one must not be able to
    // turn it into the account's password.
    let Some(session) = caller.session_id.clone() else {
        return Err(ApiError::forbidden(
            "a password is changed from a signed-in session, not with an API key",
        ));
    };
    let email = caller.user.email.clone();
    if let Err(wait) = state.login_limiter.check(&email, client) {
        let mut e = ApiError::new(
            ErrorCode::RateLimited,
            "too many wrong passwords; wait before trying again",
        );
        e.retry_after_secs = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let phc = caller.user.password_hash.clone();
    let current = req.current_password;
    let ok = tokio::task::spawn_blocking(move || crypto::verify_password(&current, &phc))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        state.login_limiter.record_failure(&email, client);
        return Err(ApiError::forbidden("the current password is wrong"));
    }
    state.login_limiter.record_success(&email, client);
    validate_password(&req.new_password).map_err(|mut e| {
        e.body.field = Some("new_password".into());
        e
    })?;
    let password_hash = hash_password(req.new_password).await?;
    state
        .store
        .update_user(
            &caller.user.id,
            UserPatch {
                password_hash: Some(password_hash),
                is_admin: None,
                disabled: None,
                api_keys: if req.revoke_api_keys {
                    KeyRevocation::RevokeAll
                } else {
                    KeyRevocation::Keep
                },
                keep_session: Some(session),
                // What the current password was checked against: a change that landed
                // meanwhile (another session's) makes this one a 409, not a second win.
                if_password_hash: Some(caller.user.password_hash.clone()),
            },
        )
        .await
        .map_err(|e| ApiError::from_store(e, "user"))?;
    Ok(StatusCode::NO_CONTENT)
}
