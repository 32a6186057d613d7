//! Health, readiness, metrics, OpenAPI and SDK description.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use picloud_core::crypto;
use picloud_core::ErrorCode;

use crate::auth::bearer;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// 200 while the process lives.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// 200 when the database answers, else 503.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(Health { status: "ok" }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                }),
            )
                .into_response()
        }
    }
}

/// Prometheus text format. Needs `Authorization: Bearer <PICLOUD_METRICS_TOKEN>`;
/// without a configured token it answers 401 to everyone (a listener of its own,
/// `PICLOUD_METRICS_LISTEN`, serves it without one).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
        (status = 401, body = ErrorEnvelope, description = "no or a wrong metrics token")))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(expected) = &state.config.metrics.token else {
        return metrics_unauthorized();
    };
    let sent = bearer(&headers).unwrap_or_default();
    // Compared as digests, so neither the value nor its length leaks through timing.
    let matches = crypto::constant_time_eq(
        crypto::hash_token(sent).as_bytes(),
        crypto::hash_token(expected).as_bytes(),
    );
    if !matches {
        return metrics_unauthorized();
    }
    render_metrics(&state)
}

fn metrics_unauthorized() -> Response {
    ApiError::new(
        ErrorCode::Unauthorized,
        "/metrics needs the metrics token (PICLOUD_METRICS_TOKEN) as a bearer token",
    )
    .into_response()
}

/// The metrics text, for whoever was let through.
pub fn render_metrics(state: &AppState) -> Response {
    let text = state.runner.render_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The script SDK as the running engine has it registered.
#[utoipa::path(get, path = "/api/v1/sdk", tag = "operations",
    responses((status = 200, description = "namespaces and their functions")))]
pub async fn sdk(State(state): State<AppState>) -> Response {
    Json(state.runner.sdk_description()).into_response()
}
