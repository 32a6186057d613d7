//! Who is calling: bearer tokens (sessions `pcs_…`, API keys `pk_…`) and the dashboard's
//! session cookie (with its CSRF header), resolved to a [`Caller`].

mod audit_slot;
pub mod cookie;
pub mod guard;
pub mod origin;
pub mod password;
pub mod ratelimit;
pub mod session;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use hmac::{Hmac, Mac};
use picloud_core::access::{KeyGrant, Principal};
use picloud_core::crypto;
use picloud_core::SessionId;
use picloud_store::{StoreError, User};
use sha2::Sha256;

pub use audit_slot::AuditSlot;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "pcs_";
/// Prefix of API keys.
pub const API_KEY_PREFIX: &str = "pk_";
/// The header cookie-authenticated state changes must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Renew a session's expiry (and an API key's last-used time) at most this often, so
/// reads do not all write.
const RENEW_AFTER_SECS: i64 = 60;

/// An authenticated caller of the control plane.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub principal: Principal,
    /// The session, when the caller used one (not an API key).
    pub session_id: Option<SessionId>,
    /// Where the audit middleware collects what this request did.
    pub audit: Option<AuditSlot>,
}

/// How a request presented its credentials.
enum Credential<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
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
    token.starts_with(SESSION_PREFIX) || token.starts_with(API_KEY_PREFIX)
}

/// The CSRF token of a session: derived, so nothing extra is stored, and bound to the
/// session, so it dies with it.
pub fn csrf_token(state: &AppState, session: &SessionId) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(state.csrf_key.as_slice())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(session.as_str().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Resolves one of our tokens to a caller; `None` when it is not (or no longer) valid.
pub async fn authenticate_token(state: &AppState, token: &str) -> ApiResult<Option<Caller>> {
    let now = picloud_core::now();
    let hash = crypto::hash_token(token);
    if token.starts_with(API_KEY_PREFIX) {
        let (key, user) = match state.store.api_key_by_hash(&hash, now).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(ApiError::from(e)),
        };
        if user.disabled {
            return Ok(None);
        }
        let stale = key
            .last_used_at
            .is_none_or(|at| (now - at).num_seconds() >= RENEW_AFTER_SECS);
        if stale {
            if let Err(e) = state.store.touch_api_key(&key.id, now).await {
                tracing::warn!(error = %e, "could not record an API key's use");
            }
        }
        return Ok(Some(Caller {
            principal: Principal {
                user_id: user.id.clone(),
                is_instance_admin: user.is_admin,
                key: Some(KeyGrant {
                    key_id: key.id,
                    scopes: key.scopes,
                    app_id: key.app_id,
                }),
            },
            user,
            session_id: None,
            audit: None,
        }));
    }
    if !token.starts_with(SESSION_PREFIX) {
        return Ok(None);
    }
    let (session, user) = match state.store.session_by_token_hash(&hash, now).await {
        Ok(found) => found,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(ApiError::from(e)),
    };
    if user.disabled {
        return Ok(None);
    }
    if (now - session.last_used_at).num_seconds() >= RENEW_AFTER_SECS {
        let ttl = state.session_ttl();
        if let Err(e) = state.store.touch_session(&session.id, now, now + ttl).await {
            tracing::warn!(error = %e, "could not renew a session");
        }
    }
    Ok(Some(Caller {
        principal: Principal {
            user_id: user.id.clone(),
            is_instance_admin: user.is_admin,
            key: None,
        },
        user,
        session_id: Some(session.id),
        audit: None,
    }))
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let credential = match bearer(&parts.headers) {
            Some(token) => Credential::Bearer(token),
            None => match cookie::session_cookie(&parts.headers) {
                Some((token, _)) => Credential::Cookie(token),
                None => return Err(ApiError::unauthorized()),
            },
        };
        let (token, via_cookie) = match credential {
            Credential::Bearer(token) => (token, false),
            Credential::Cookie(token) => (token, true),
        };
        let mut caller = authenticate_token(state, token)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if via_cookie && is_state_changing(&parts.method) {
            // The CSRF header already needs a preflight; this also turns away pages
            // on sibling hosts, which SameSite=Strict lets send the cookie.
            if !origin::is_same_origin(&parts.headers, &parts.uri) {
                return Err(origin::cross_origin());
            }
            let Some(session) = &caller.session_id else {
                return Err(ApiError::unauthorized());
            };
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let expected = csrf_token(state, session);
            if !crypto::constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
                return Err(ApiError::forbidden(
                    "a cookie-authenticated change needs the X-CSRF-Token header",
                ));
            }
        }
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.set_actor(&caller.principal);
            caller.audit = Some(slot.clone());
        }
        Ok(caller)
    }
}
