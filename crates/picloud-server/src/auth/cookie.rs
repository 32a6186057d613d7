//! The dashboard's session cookie, and which one the server believes.
//!
//! Over TLS the session lives in `__Host-picloud_session` (`Secure`, `Path=/`, no
//! `Domain`): browsers accept that name only from this exact host over a secure
//! connection, so neither an app on a sibling host (cookie tossing with
//! `Domain=parent`) nor a plain-HTTP attacker can plant one. Over plain HTTP a browser
//! drops `Secure` cookies (Safari even on `localhost`), so the session lives in
//! `picloud_session` with `Path=/api`; there a planted duplicate is possible on named
//! hosts that share a parent domain with an app host, and the rule is: several cookies
//! of that name mean one was planted, and none is honoured. IP-address and `localhost`
//! origins have no siblings that could plant one. Over TLS the plain name is never
//! read, so a cookie planted under it cannot shadow the real one.

use axum::http::{header, HeaderMap, HeaderValue};

/// The session cookie over TLS.
pub const HOST_COOKIE: &str = "__Host-picloud_session";
/// The session cookie over plain HTTP.
pub const PLAIN_COOKIE: &str = "picloud_session";

/// Whether a cookie of this name carries a PiCloud session (so it is ours, and never
/// handed to a script).
pub fn is_session_cookie(name: &str) -> bool {
    name == HOST_COOKIE || name == PLAIN_COOKIE
}

/// Whether the request reached us over TLS (directly or through a proxy saying so).
/// A client that claims TLS falsely only changes the attributes of its own cookie;
/// a browser page cannot add this header to a request.
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// How the session cookie is kept for one request's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieScheme {
    /// `__Host-picloud_session`, `Secure`, `Path=/`.
    HostOnly,
    /// `picloud_session`, `Path=/api`.
    Plain,
}

impl CookieScheme {
    pub fn for_request(headers: &HeaderMap) -> Self {
        if over_tls(headers) {
            Self::HostOnly
        } else {
            Self::Plain
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::HostOnly => HOST_COOKIE,
            Self::Plain => PLAIN_COOKIE,
        }
    }

    /// The `Set-Cookie` value holding `value` for `max_age_secs` (0 clears it).
    pub fn set_cookie(self, value: &str, max_age_secs: i64) -> Option<HeaderValue> {
        let attributes = match self {
            // `__Host-` demands exactly these: Secure, Path=/ and no Domain.
            Self::HostOnly => "Path=/; HttpOnly; SameSite=Strict; Secure",
            // /api: the cookie never travels to app routes under /apps/.
            Self::Plain => "Path=/api; HttpOnly; SameSite=Strict",
        };
        HeaderValue::from_str(&format!(
            "{}={value}; {attributes}; Max-Age={max_age_secs}",
            self.name()
        ))
        .ok()
    }
}

/// Every value of the cookies named `name`.
fn cookies_named<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value.trim())
}

/// The one value of a cookie sent exactly once; `None` when absent, empty or repeated.
fn single<'a>(mut values: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(first).filter(|v| !v.is_empty())
}

/// The session cookie the server set for this client, and its scheme; never a
/// cookie someone else could have planted (see the module documentation).
pub fn session_cookie(headers: &HeaderMap) -> Option<(&str, CookieScheme)> {
    if cookies_named(headers, HOST_COOKIE).next().is_some() {
        return single(cookies_named(headers, HOST_COOKIE)).map(|v| (v, CookieScheme::HostOnly));
    }
    if over_tls(headers) {
        return None;
    }
    single(cookies_named(headers, PLAIN_COOKIE)).map(|v| (v, CookieScheme::Plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str], tls: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_str(c).expect("ascii"));
        }
        if tls {
            h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        }
        h
    }

    fn read(cookies: &[&str], tls: bool) -> Option<(String, CookieScheme)> {
        session_cookie(&headers(cookies, tls)).map(|(v, s)| (v.to_owned(), s))
    }

    #[test]
    fn only_the_servers_cookie_counts() {
        use CookieScheme::{HostOnly, Plain};
        let host = |v: &str| Some((v.to_owned(), HostOnly));
        let plain = |v: &str| Some((v.to_owned(), Plain));
        assert_eq!(read(&["__Host-picloud_session=a"], true), host("a"));
        assert_eq!(read(&["__Host-picloud_session=a"], false), host("a"));
        assert_eq!(read(&["picloud_session=p"], true), None);
        assert_eq!(
            read(&["picloud_session=p; __Host-picloud_session=a"], true),
            host("a")
        );
        assert_eq!(read(&["picloud_session=p", "theme=x"], false), plain("p"));
        assert_eq!(read(&["picloud_session=p; picloud_session=q"], false), None);
        assert_eq!(
            read(&["picloud_session=p", "picloud_session=q"], false),
            None
        );
        assert_eq!(
            read(
                &["__Host-picloud_session=a; __Host-picloud_session=b; picloud_session=p"],
                false
            ),
            None,
            "a repeated __Host- cookie never falls back to the plain one"
        );
        assert_eq!(read(&["picloud_session="], false), None);
        assert_eq!(read(&["xpicloud_session=p"], false), None);
        assert_eq!(read(&[], false), None);
    }

    #[test]
    fn scheme_follows_the_transport() {
        let mut h = HeaderMap::new();
        assert_eq!(CookieScheme::for_request(&h), CookieScheme::Plain);
        h.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS, http"));
        assert_eq!(CookieScheme::for_request(&h), CookieScheme::HostOnly);
        let set = CookieScheme::HostOnly
            .set_cookie("pcs_x", 60)
            .expect("value");
        assert_eq!(
            set,
            "__Host-picloud_session=pcs_x; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=60"
        );
        let clear = CookieScheme::Plain.set_cookie("", 0).expect("value");
        assert_eq!(
            clear,
            "picloud_session=; Path=/api; HttpOnly; SameSite=Strict; Max-Age=0"
        );
    }
}
