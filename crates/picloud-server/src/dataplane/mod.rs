//! The data plane: app routes, reached by host (`{slug}.{base_domain}`) or by path
//! (`/apps/{slug}/…`), answered by running the route's script on the executor.

pub mod request;
pub mod routing;
mod run;
pub mod shared_origin;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use picloud_core::access::Scope;
use picloud_core::model::{DispatchMode, RouteAuth};
use picloud_core::ErrorCode;
use picloud_runtime::{Caller as RunCaller, RouteCall};
use picloud_script::RequestInput;
use picloud_store::App;

use crate::auth::{authenticate_token, bearer, is_picloud_token, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const EXECUTION_HEADER: &str = "x-picloud-execution-id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addressing {
    Host,
    Prefix,
}

/// The app slug a Host header names, if it is an app host (host names compare without
/// regard to case; the slug is returned as written).
fn app_host<'a>(host: &'a str, base_domain: &str) -> Option<&'a str> {
    let host = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    let host = host.strip_suffix('.').unwrap_or(host);
    let split = host.len().checked_sub(base_domain.len())?;
    if !host.is_char_boundary(split) || !host[split..].eq_ignore_ascii_case(base_domain) {
        return None;
    }
    let slug = host[..split].strip_suffix('.')?;
    (!slug.is_empty() && !slug.contains('.')).then_some(slug)
}

/// Middleware before every route: requests for an app host, whatever their path, and
/// requests under `/apps/{slug}`, go to the data plane. Both are taken here, before
/// the router and the admin layers, which have nothing to do with them.
pub async fn host_dispatch(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    if let Some(slug) = host.and_then(|h| app_host(h, &state.config.base_domain)) {
        let slug = slug.to_ascii_lowercase();
        let path = req.uri().path().to_owned();
        return serve(state, &slug, path, Addressing::Host, req).await;
    }
    if let Some((slug, path)) = prefixed(req.uri().path()) {
        return serve(state, &slug, path, Addressing::Prefix, req).await;
    }
    next.run(req).await
}

/// The app slug and app-relative path of `/apps/{slug}` and everything below it.
fn prefixed(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/apps/")?;
    let (slug, path) = match rest.split_once('/') {
        Some((slug, path)) => (slug, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    (!slug.is_empty()).then(|| (slug.to_ascii_lowercase(), path))
}

async fn serve(
    state: AppState,
    slug: &str,
    path: String,
    addressing: Addressing,
    req: Request,
) -> Response {
    let started = Instant::now();
    let (app, mut response) = match route_request(&state, slug, path, req).await {
        Ok((app, response)) => (Some(app), response),
        Err((app, e)) => (app, e.into_response()),
    };
    match addressing {
        Addressing::Prefix => shared_origin::confine(&mut response),
        Addressing::Host => shared_origin::confine_host(&mut response),
    }
    let label = app.as_ref().map_or("_unknown", |a| a.slug.as_str());
    state.runner.observe_request(
        label,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

type Routed = Result<(Arc<App>, Response), (Option<Arc<App>>, ApiError)>;

async fn route_request(state: &AppState, slug: &str, path: String, req: Request) -> Routed {
    let app = match state.routing.app_by_slug(state.store.as_ref(), slug).await {
        Ok(Some(app)) => app,
        Ok(None) => return Err((None, ApiError::not_found("app"))),
        Err(e) => return Err((None, ApiError::from(e))),
    };
    let with_app = |e: ApiError| (Some(app.clone()), e);
    let table = state
        .routing
        .table(state.store.as_ref(), &app.id)
        .await
        .map_err(|e| with_app(ApiError::from(e)))?;
    let method = req.method().as_str().to_owned();
    let Some(matched) = table.lookup(&method, &path) else {
        return Err(with_app(ApiError::new(
            ErrorCode::NotFound,
            format!("no route matches {method} {path}"),
        )));
    };
    let route = matched.entry.route.clone();
    let script = matched.entry.script.clone();
    let params = matched.params;
    drop(table);

    let caller = caller(state, req.headers()).await.map_err(with_app)?;
    let scopes = match &caller {
        Some(c) => {
            let role = c.role_on(state, &app.id).await.map_err(with_app)?;
            c.principal.scopes_on_app(&app.id, role)
        }
        None => Vec::new(),
    };
    if route.auth == RouteAuth::Required {
        if caller.is_none() {
            return Err(with_app(ApiError::unauthorized()));
        }
        if !scopes.contains(&Scope::ScriptInvoke) {
            return Err(with_app(ApiError::forbidden(
                "this route needs script:invoke on the app",
            )));
        }
    }
    let request = read_request(state, req, path, params)
        .await
        .map_err(with_app)?;
    let call = RouteCall {
        app: app.clone(),
        script,
        caller: caller.map(|c| RunCaller::new(&c.principal, scopes)),
        request,
    };
    let response = match route.dispatch_mode {
        DispatchMode::Sync => run::sync_response(state.runner.run_route(call).await),
        DispatchMode::Async => run::async_response(state.runner.enqueue_route(call).await),
    };
    Ok((app, response))
}

/// The PiCloud principal behind the request's bearer token. Tokens that are not
/// ours are left to the script; ours must be valid.
async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Caller>> {
    match bearer(headers) {
        Some(token) if is_picloud_token(token) => authenticate_token(state, token)
            .await?
            .map(Some)
            .ok_or_else(ApiError::unauthorized),
        _ => Ok(None),
    }
}

async fn read_request(
    state: &AppState,
    req: Request,
    path: String,
    params: Vec<(String, String)>,
) -> ApiResult<RequestInput> {
    let limit = state.config.max_request_body_bytes;
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
        if over {
            ApiError::payload_too_large(limit)
        } else {
            // A body cut short or malformed (a bad chunk size) is the client's mistake,
            // not a size problem.
            ApiError::bad_request(
                "the request body could not be read: it ended early or is malformed",
            )
        }
    })?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let body = request::parse_body(content_type, &bytes)?;
    Ok(RequestInput {
        method: parts.method.as_str().to_owned(),
        path,
        params,
        query: request::query_pairs(parts.uri.query()),
        headers: request::script_headers(&parts.headers),
        body,
        body_raw: bytes.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::app_host;

    #[test]
    fn app_hosts() {
        assert_eq!(app_host("shop.localhost", "localhost"), Some("shop"));
        assert_eq!(app_host("shop.localhost:8080", "localhost"), Some("shop"));
        assert_eq!(app_host("shop.example.com.", "example.com"), Some("shop"));
        assert_eq!(app_host("localhost:8080", "localhost"), None);
        assert_eq!(app_host("127.0.0.1:8080", "localhost"), None);
        assert_eq!(app_host("a.b.localhost", "localhost"), None);
        assert_eq!(app_host("evillocalhost", "localhost"), None);
        assert_eq!(app_host("Shop.LocalHost:8080", "localhost"), Some("Shop"));
        assert_eq!(app_host("é.localhost", "localhost"), Some("é"));
        assert_eq!(app_host("xé", "é"), None);
    }

    #[test]
    fn prefixed_paths() {
        let p = |s: &str| super::prefixed(s);
        assert_eq!(p("/apps/Shop/a/b"), Some(("shop".into(), "/a/b".into())));
        assert_eq!(p("/apps/shop/"), Some(("shop".into(), "/".into())));
        assert_eq!(p("/apps/shop"), Some(("shop".into(), "/".into())));
        assert_eq!(p("/apps/"), None);
        assert_eq!(p("/apps"), None);
        assert_eq!(p("/api/v1/apps/shop"), None);
    }
}
