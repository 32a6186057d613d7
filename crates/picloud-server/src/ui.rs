//! The dashboard at `/_/`. For now a single embedded page that completes first-run
//! set-up and signs in; the full console replaces it.

use axum::response::{Html, Redirect};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const INDEX: &str = include_str!("ui/index.html");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/_/") }))
        .route("/_", get(|| async { Redirect::temporary("/_/") }))
        .route("/_/", get(|| async { Html(INDEX) }))
        .route("/_/{*rest}", get(|| async { Html(INDEX) }))
}
