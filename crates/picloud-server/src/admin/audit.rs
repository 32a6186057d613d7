//! The audit log: every state-changing admin request by an authenticated caller is
//! appended — who (user, key), what (method and route), which app, when, from where,
//! and how it ended. Recorded by a middleware, so no handler can forget it: it
//! resolves the caller's token itself, the caller extractor confirms it was accepted
//! and the access guard fills in which app. Bodies are never recorded, so secrets and
//! passwords cannot end up here.
//!
//! The entry is written before the request runs (status [`AuditEntry::PENDING`]) and
//! finished with its outcome after, so no change exists that the audit log does not
//! show: when the entry cannot be written, the request is refused and nothing
//! changes; when its outcome cannot be recorded, the entry stays pending, the change
//! it announced still on record. (Writing it after the change let a change commit,
//! be answered 2xx, and have its entry fail on a full disk.)

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use picloud_core::access::Capability;
use picloud_core::{ApiKeyId, AppId, AuditId, UserId};
use picloud_store::{AuditEntry, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::List;
use crate::auth::{authenticate_token, bearer, cookie, AuditSlot, Caller};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, ListParams};
use crate::state::AppState;

fn is_mutation(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: records admin mutations.
pub async fn record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !is_mutation(req.method()) || !req.uri().path().starts_with("/api/v1/admin/") {
        return next.run(req).await;
    }
    // Who asks, known before anything changes; the caller extractor checks the same
    // token again (and the CSRF header) when the handler runs.
    let token = bearer(req.headers())
        .or_else(|| cookie::session_cookie(req.headers()).map(|(token, _)| token))
        .map(str::to_owned);
    let actor = match token {
        Some(token) => match authenticate_token(&state, &token).await {
            Ok(caller) => caller.map(|c| c.principal),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let Some(actor) = actor else {
        // Requests that never authenticate are not mutations by anyone.
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| path.clone(), |m| m.as_str().to_owned());
    let entry = AuditEntry {
        id: AuditId::new(),
        at: picloud_core::now(),
        user_id: Some(actor.user_id),
        key_id: actor.key.map(|k| k.key_id),
        action: format!("{} {route}", req.method()),
        app_id: None,
        target: Some(path),
        ip: crate::client::of(req.extensions(), req.headers(), &state).map(|ip| ip.to_string()),
        status: AuditEntry::PENDING,
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        // Nothing has run yet: refusing costs the caller a retry, not a change.
        return ApiError::from_store(e, "audit entry").into_response();
    }
    let response = next.run(req).await;
    let collected = slot.take();
    let status = response.status().as_u16();
    let outcome = if collected.user_id.is_none() {
        // The extractor refused the caller (a cookie without its CSRF header) before
        // any handler ran: as if it never authenticated.
        retry(|| state.store.delete_audit(&entry.id)).await
    } else {
        retry(|| {
            state
                .store
                .finish_audit(&entry.id, status, collected.app_id.as_ref())
        })
        .await
    };
    if let Err(e) = outcome {
        tracing::error!(
            error = %e,
            audit_id = %entry.id,
            action = %entry.action,
            status,
            app_id = ?collected.app_id,
            "the audit entry keeps status 0: its outcome could not be recorded"
        );
    }
    response
}

/// Waits between attempts at finishing an entry: a lost connection is replaced
/// within these, a full disk is not.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];

async fn retry<F, Fut>(mut attempt: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut waits = BACKOFF.iter();
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) => match (e.outage(), waits.next()) {
                (Some(_), Some(wait)) => tokio::time::sleep(*wait).await,
                _ => return Err(e),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditDto {
    pub id: String,
    pub at: DateTime<Utc>,
    pub user_id: Option<String>,
    pub key_id: Option<String>,
    pub action: String,
    pub app_id: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub status: u16,
}

impl From<AuditEntry> for AuditDto {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id.into_string(),
            at: e.at,
            user_id: e.user_id.map(UserId::into_string),
            key_id: e.key_id.map(ApiKeyId::into_string),
            action: e.action,
            app_id: e.app_id.map(AppId::into_string),
            target: e.target,
            ip: e.ip,
            status: e.status,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// App id or slug: that app's entries (app admins). Without it, the whole
    /// instance's (instance admins only).
    pub app: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Admin mutations, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = List<AuditDto>), (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])), extensions(("x-capability" = json!("audit.read"))))]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<List<AuditDto>>> {
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let app = match q.app.as_deref().filter(|a| !a.is_empty()) {
        Some(key) => Some(caller.app(&state, key, Capability::AuditRead).await?.id),
        None => {
            caller.require(Capability::InstanceAudit)?;
            None
        }
    };
    let entries = state.store.list_audit(app.as_ref(), &page).await?;
    Ok(Json(List::from_page(entries, AuditDto::from)))
}
