//! The dashboard at `/_/`: the Svelte app built into `dashboard/dist` and embedded in
//! the binary, so a fresh clone serves it without Node.js. Hashed assets are cached
//! for a year; every other `/_/…` path is the app shell (client-side routing), which
//! is never cached so a new release is picked up at once.

use std::borrow::Cow;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::state::AppState;

#[derive(RustEmbed)]
#[folder = "../../dashboard/dist"]
struct Dist;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";
/// The dashboard needs nothing from elsewhere; inline styles are the editor's
/// (CodeMirror injects its theme as style elements).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/_/") }))
        .route("/_", get(|| async { Redirect::temporary("/_/") }))
        .route("/_/", get(|| async { shell() }))
        .route("/_/assets/{*file}", get(asset))
        .route("/_/{*rest}", get(page))
}

/// A hashed build asset; a missing one is a 404, never the HTML shell (a stale page
/// asking for an old bundle must fail loudly, not parse HTML as JavaScript).
async fn asset(Path(file): Path<String>) -> Response {
    match Dist::get(&format!("assets/{file}")) {
        Some(content) => file_response(&file, content.data, IMMUTABLE),
        None => crate::error::ApiError::not_found("asset").into_response(),
    }
}

/// A top-level file of the build (favicon) when one has that name, else the shell.
async fn page(Path(rest): Path<String>) -> Response {
    if rest != "index.html" && !rest.contains('/') {
        if let Some(content) = Dist::get(&rest) {
            return file_response(&rest, content.data, NO_CACHE);
        }
    }
    shell()
}

fn shell() -> Response {
    match Dist::get("index.html") {
        Some(content) => file_response("index.html", content.data, NO_CACHE),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the dashboard bundle is missing from this build (dashboard/dist)",
        )
            .into_response(),
    }
}

fn file_response(name: &str, body: Cow<'static, [u8]>, cache: &'static str) -> Response {
    let mut response = body.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if name.ends_with(".html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    response
}

/// The few types a Vite build produces.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
