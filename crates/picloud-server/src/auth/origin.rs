//! Cross-origin browser requests to the endpoints that set or rely on the session
//! cookie. A page elsewhere — another site, or an app on a sibling host, which
//! `SameSite` counts as the same site — can make a browser send a simple POST; these
//! checks turn it away. Browsers mark their requests (`Sec-Fetch-Site` in current ones,
//! `Origin` on every cross-origin POST since long before); clients that are not
//! browsers send neither and are not affected.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Uri};

use crate::error::ApiError;

/// Whether a browser, if one sent this request, sent it from this server's own origin.
pub fn is_same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    // Set by the browser, never by a page: decisive when present. `none` is a request
    // the user started (address bar, bookmark).
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(origin_authority) else {
        // `null` (sandboxed frames, redirects across origins) or garbage.
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    host.is_some_and(|host| without_default_port(host).eq_ignore_ascii_case(&origin))
}

/// `host[:port]` of an `Origin` value, the port only when it is not the scheme's
/// default (so it compares with a `Host` header, which usually leaves it out).
fn origin_authority(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    Some(
        authority
            .strip_suffix(default)
            .unwrap_or(authority)
            .to_owned(),
    )
}

fn without_default_port(host: &str) -> &str {
    host.strip_suffix(":80")
        .or_else(|| host.strip_suffix(":443"))
        .unwrap_or(host)
}

pub fn cross_origin() -> ApiError {
    ApiError::forbidden("cross-origin browser requests cannot use the session endpoints")
}

/// Extractor: refuses the request (403) when a browser sent it from another origin.
pub struct SameOrigin;

impl<S: Send + Sync> FromRequestParts<S> for SameOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        if is_same_origin(&parts.headers, &parts.uri) {
            Ok(SameOrigin)
        } else {
            Err(cross_origin())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn same(pairs: &[(&'static str, &'static str)]) -> bool {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        is_same_origin(&h, &Uri::from_static("/api/v1/auth/login"))
    }

    #[test]
    fn origins() {
        let host = ("host", "picloud.example.com");
        assert!(same(&[host]), "no browser markers: curl, the CLI");
        assert!(same(&[host, ("origin", "https://picloud.example.com")]));
        assert!(same(&[host, ("origin", "https://PiCloud.example.com:443")]));
        assert!(same(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!same(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8081")
        ]));
        assert!(!same(&[
            host,
            ("origin", "https://shop.picloud.example.com")
        ]));
        assert!(!same(&[host, ("origin", "https://evil.example")]));
        assert!(!same(&[host, ("origin", "null")]));
        assert!(!same(&[host, ("origin", "https://picloud.example.com/x")]));
        assert!(!same(&[host, ("origin", "ftp://picloud.example.com")]));
        assert!(
            !same(&[("origin", "https://picloud.example.com")]),
            "no Host"
        );
        assert!(same(&[host, ("sec-fetch-site", "same-origin")]));
        assert!(same(&[host, ("sec-fetch-site", "none")]));
        for site in ["same-site", "cross-site", "bogus"] {
            let fetch = ("sec-fetch-site", site);
            assert!(!same(&[host, fetch]), "{site}");
            assert!(
                !same(&[host, fetch, ("origin", "https://picloud.example.com")]),
                "{site} is decisive"
            );
        }
    }
}
