//! PiCloud's HTTP surface: the admin API, auth, the data plane, operations endpoints
//! and the OpenAPI document, all from one axum router.

pub mod admin;
pub mod auth;
pub mod client;
pub mod dataplane;
pub mod error;
pub mod extract;
pub mod ops;
pub mod protocol_errors;
pub mod state;
mod ui;
pub mod user_bytes;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use state::{AppState, SetupToken, Shared};

#[derive(OpenApi)]
#[openapi(
    info(title = "PiCloud", description = "Self-hosted serverless backend: admin API and platform endpoints."),
    modifiers(&BearerAuth),
    tags(
        (name = "auth"), (name = "users"), (name = "api-keys"), (name = "apps"),
        (name = "members"), (name = "scripts"), (name = "routes"), (name = "executions"),
        (name = "audit"), (name = "triggers"), (name = "data"), (name = "files"),
        (name = "secrets"), (name = "operations")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Writes each error code's status into the `ErrorCode` schema's description, from
/// the one mapping (`ErrorCode::status`), so the document cannot disagree with it.
/// Applied to the finished document: the schema is collected from the routes.
struct ErrorCodes;

impl Modify for ErrorCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let Some(RefOr::T(Schema::Object(schema))) = components.schemas.get_mut("ErrorCode") else {
            return;
        };
        let table = picloud_core::ErrorCode::ALL
            .iter()
            .map(|code| format!("`{code}` → {}", code.status()))
            .collect::<Vec<_>>()
            .join(", ");
        let intro = schema.description.take().unwrap_or_default();
        schema.description = Some(format!("{intro}\n\nThe HTTP status of each: {table}."));
    }
}

/// The documented routes: everything under `/api/v1` plus the operations endpoints.
fn api_router() -> OpenApiRouter<AppState> {
    use admin::{
        apps, audit, data, docs, executions, files, keys, members, routes as rts, scripts, secrets,
        triggers, users,
    };
    use auth::session;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::sdk))
        .routes(routes!(session::setup))
        .routes(routes!(session::login))
        .routes(routes!(session::logout))
        .routes(routes!(session::me))
        .routes(routes!(auth::password::change_password))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::delete_key))
        .routes(routes!(members::list_members))
        .routes(routes!(members::set_member, members::remove_member))
        .routes(routes!(audit::list_audit))
        .routes(routes!(triggers::list_triggers))
        .routes(routes!(
            triggers::create_trigger,
            triggers::update_trigger,
            triggers::delete_trigger
        ))
        .routes(routes!(data::browse_kv))
        .routes(routes!(docs::browse_docs, docs::delete_collection))
        .routes(routes!(docs::list_indexes, docs::create_index))
        .routes(routes!(docs::drop_index))
        .routes(routes!(files::list_files))
        .routes(routes!(files::upload_file))
        .routes(routes!(files::get_file, files::delete_file))
        .routes(routes!(files::download_file, files::replace_file))
        .routes(routes!(secrets::list_secrets, secrets::put_secret))
        .routes(routes!(secrets::delete_secret))
        .routes(routes!(secrets::reveal_secret))
        .routes(routes!(data::list_dead_letters))
        .routes(routes!(data::get_dead_letter))
        .routes(routes!(data::replay_dead_letter))
        .routes(routes!(data::resolve_dead_letter))
        .routes(routes!(data::list_abandoned))
        .routes(routes!(apps::create_app, apps::list_apps))
        .routes(routes!(apps::get_app, apps::update_app, apps::delete_app))
        .routes(routes!(scripts::create_script, scripts::list_scripts))
        .routes(routes!(
            scripts::get_script,
            scripts::update_script,
            scripts::delete_script
        ))
        .routes(routes!(
            scripts::get_app_script,
            scripts::update_app_script,
            scripts::delete_app_script
        ))
        .routes(routes!(rts::create_route))
        .routes(routes!(rts::list_routes))
        .routes(routes!(rts::delete_route))
        .routes(routes!(executions::list_executions))
        .routes(routes!(executions::get_execution))
}

/// The OpenAPI document of this server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().into_openapi();
    ErrorCodes.modify(&mut doc);
    doc
}

/// The whole router: documented API, data plane (host and `/apps/` prefix), dashboard.
pub fn router(state: AppState) -> Router {
    let (api, mut doc) = api_router().split_for_parts();
    ErrorCodes.modify(&mut doc);
    let doc_json = doc.to_pretty_json().unwrap_or_else(|_| "{}".into());
    let body_limit = state.config.max_request_body_bytes;
    let mut router = api
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc_json.clone(),
                )
            }),
        )
        .merge(ui::router())
        .fallback(|| async { error::ApiError::not_found("page") });
    if std::env::var_os("PICLOUD_BENCH_BASELINE").is_some() {
        // A bare handler returning what the benchmark script returns, measured
        // through the same stack, in the same process and run.
        router = router.route(
            "/__bench/baseline",
            get(|| async { axum::Json(serde_json::json!({"hello": "world", "n": 42})) }),
        );
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::audit::record,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(protocol_errors::envelope))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            dataplane::host_dispatch,
        ))
        .layer(axum::middleware::from_fn(protocol_errors::limit_uri))
        .with_state(state)
}

/// The router of the metrics-only listener: `GET /metrics` without a token (whoever
/// reaches that address may read them), 404 for everything else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(state): axum::extract::State<AppState>| async move {
                    ops::render_metrics(&state)
                },
            ),
        )
        .fallback(|| async { error::ApiError::not_found("page") })
        .with_state(state)
}

/// Serves the metrics-only router on its own listener until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves on an already-bound listener until `shutdown` resolves; in-flight
/// requests finish first.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Without TCP_NODELAY, a response written in two parts (headers, then a streamed
    // body) waited for the client's delayed ACK: 40 ms per small file download.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
