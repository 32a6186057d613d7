//! Responses under `/apps/{slug}/` are served from the dashboard's origin. A browser
//! applies some response headers to the whole origin, not just the response: cookies
//! (`Set-Cookie` could plant a session or sign the operator out), `Clear-Site-Data`,
//! HSTS, `Alt-Svc`, reporting (`NEL`, `Report-To`), client hints, service-worker scope,
//! authentication prompts. New ones keep appearing, so this is an allow-list: what a
//! response needs to describe itself (type, caching, redirects, CORS) and app-defined
//! `X-` headers pass; everything else a script sends is dropped here, and the server's
//! own sandbox policy replaces any `Content-Security-Policy`. On its own host
//! (`{slug}.{base}`) an app is its own origin, and its headers pass, except cookies
//! for a wider domain (see [`confine_host`]).

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;

/// HTML a script serves here runs in an opaque origin: it cannot read the dashboard's
/// storage, nor write its cookies with `document.cookie`.
const SANDBOX_CSP: &str = "sandbox allow-scripts allow-forms allow-popups allow-downloads";

/// Headers that describe only the response they arrive on.
const ALLOWED: &[HeaderName] = &[
    // The representation.
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_LANGUAGE,
    header::CONTENT_DISPOSITION,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    // Caching and validation.
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::PRAGMA,
    header::AGE,
    header::ETAG,
    header::LAST_MODIFIED,
    header::VARY,
    // Where to go, when to retry, what else is allowed.
    header::LOCATION,
    header::RETRY_AFTER,
    header::ALLOW,
    // CORS: whether another origin may read this one response.
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// Whether a response header may be sent from the dashboard's origin. `X-` names are
/// the app's own (no browser keeps origin-wide state from one; new browser features
/// never take that prefix), the execution id among them.
pub fn allowed(name: &HeaderName) -> bool {
    ALLOWED.contains(name) || name.as_str().starts_with("x-")
}

/// Confines a data-plane response to what the shared origin may carry.
pub fn confine(response: &mut Response) {
    let headers = response.headers_mut();
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| !allowed(name))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(&name);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX_CSP),
    );
}

/// An app on its own host (`{slug}.{base}`) keeps its cookies to that host: a
/// `Set-Cookie` with a `Domain` attribute would reach the dashboard on `{base}` and
/// every other app (cookie tossing: a planted session cookie there fixes the
/// operator's session, which a `__Host-` name prevents only over TLS).
pub fn confine_host(response: &mut Response) {
    let headers = response.headers_mut();
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|value| !has_domain(value))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

fn has_domain(value: &HeaderValue) -> bool {
    // Unreadable bytes: a browser may still find a Domain in them, so it goes.
    let Ok(text) = value.to_str() else {
        return true;
    };
    text.split(';').skip(1).any(|attr| {
        attr.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("domain")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        for ok in [
            "content-type",
            "cache-control",
            "location",
            "access-control-allow-origin",
            "x-picloud-execution-id",
            "x-total-count",
        ] {
            assert!(allowed(&HeaderName::from_static(ok)), "{ok}");
        }
        for no in [
            "set-cookie",
            "clear-site-data",
            "strict-transport-security",
            "alt-svc",
            "nel",
            "report-to",
            "service-worker-allowed",
            "www-authenticate",
            "link",
            "refresh",
            "content-security-policy",
            "accept-ch",
            "unknown-future-header",
        ] {
            assert!(!allowed(&HeaderName::from_static(no)), "{no}");
        }
    }

    #[test]
    fn confining_keeps_repeats_and_sets_the_sandbox() {
        let mut r = Response::new(axum::body::Body::empty());
        let h = r.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("accept"));
        h.append(header::VARY, HeaderValue::from_static("origin"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src *"),
        );
        confine(&mut r);
        assert_eq!(r.headers().get_all(header::VARY).iter().count(), 2);
        assert!(r.headers().get(header::SET_COOKIE).is_none());
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], SANDBOX_CSP);
    }

    #[test]
    fn own_hosts_keep_host_only_cookies() {
        let mut r = Response::new(axum::body::Body::empty());
        let h = r.headers_mut();
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1; Path=/"));
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("picloud_session=x; Path=/api; domain=.example.com"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("b=2;DOMAIN =example.com"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("c=domain=x; Secure"),
        );
        confine_host(&mut r);
        let kept: Vec<_> = r.headers().get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(kept, vec!["a=1; Path=/", "c=domain=x; Secure"]);
    }
}
