//! Turning an HTTP request into the script's `ctx.request`.

use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use picloud_script::RequestBody;

use crate::auth::cookie::is_session_cookie;
use crate::auth::is_picloud_token;
use crate::error::ApiError;

/// Headers as scripts see them: lower-case names, repeats joined with ", ". Our own
/// credentials are removed first: a script must never be handed the caller's PiCloud
/// session or token, which would let it act as them on the admin API.
pub fn script_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let value = match *name {
            header::AUTHORIZATION => {
                let credential = value
                    .split_once(' ')
                    .is_some_and(|(_, token)| is_picloud_token(token.trim()));
                if credential {
                    continue;
                }
                value.to_owned()
            }
            header::COOKIE => {
                let kept: Vec<&str> = value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| {
                        c.split_once('=')
                            .is_none_or(|(name, _)| !is_session_cookie(name.trim()))
                    })
                    .collect();
                if kept.is_empty() {
                    continue;
                }
                kept.join("; ")
            }
            _ => value.to_owned(),
        };
        match out.iter_mut().find(|(n, _)| n == name.as_str()) {
            Some((_, existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            None => out.push((name.as_str().to_owned(), value)),
        }
    }
    out
}

/// Query parameters (and form fields), in the order of their first occurrence; for a
/// repeated key the last value wins. The index makes this linear: a body of 100,000
/// fields (well within the body limit) was quadratic with a search per field.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match index.get(k.as_ref()) {
            Some(&at) => out[at].1 = v.into_owned(),
            None => {
                index.insert(k.to_string(), out.len());
                out.push((k.into_owned(), v.into_owned()));
            }
        }
    }
    out
}

/// `ctx.request.body` by content type. Invalid JSON sent as JSON is refused.
pub fn parse_body(content_type: Option<&str>, bytes: &[u8]) -> Result<RequestBody, ApiError> {
    if bytes.is_empty() {
        return Ok(RequestBody::None);
    }
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if essence == "application/json" || essence.ends_with("+json") {
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
        picloud_core::json::check_depth(&json)
            .map_err(|e| ApiError::bad_request(format!("the body is refused: {e}")))?;
        return Ok(RequestBody::Json(json));
    }
    if essence.starts_with("text/") {
        return Ok(RequestBody::Text(
            String::from_utf8_lossy(bytes).into_owned(),
        ));
    }
    if essence == "application/x-www-form-urlencoded" {
        return Ok(RequestBody::Form(query_pairs(
            std::str::from_utf8(bytes).ok(),
        )));
    }
    Ok(RequestBody::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn strips_our_credentials_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer pcs_secret"),
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "theme=dark; picloud_session=abc; __Host-picloud_session=def; lang=en",
            ),
        );
        h.append("x-tag", HeaderValue::from_static("a"));
        h.append("x-tag", HeaderValue::from_static("b"));
        let out = script_headers(&h);
        assert!(!out.iter().any(|(n, _)| n == "authorization"));
        assert!(out.contains(&("cookie".into(), "theme=dark; lang=en".into())));
        assert!(out.contains(&("x-tag".into(), "a, b".into())));

        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer third-party-jwt"),
        );
        assert_eq!(
            script_headers(&h),
            vec![("authorization".into(), "Bearer third-party-jwt".into())]
        );
    }

    #[test]
    fn bodies_by_content_type() {
        assert!(matches!(
            parse_body(Some("application/json"), b"{\"a\":1}"),
            Ok(RequestBody::Json(_))
        ));
        assert!(parse_body(Some("application/json; charset=utf-8"), b"{nope").is_err());
        assert!(matches!(
            parse_body(Some("application/json"), b""),
            Ok(RequestBody::None)
        ));
        assert!(
            matches!(parse_body(Some("text/plain"), b"hi"), Ok(RequestBody::Text(t)) if t == "hi")
        );
        assert!(matches!(
            parse_body(Some("application/x-www-form-urlencoded"), b"a=1&b=x+y"),
            Ok(RequestBody::Form(f)) if f == vec![("a".into(), "1".into()), ("b".into(), "x y".into())]
        ));
        assert!(matches!(
            parse_body(Some("image/png"), b"\x89PNG"),
            Ok(RequestBody::None)
        ));
        assert!(matches!(parse_body(None, b"raw"), Ok(RequestBody::None)));
    }

    /// 100,000 fields, every key twice: each keeps its first position and its last
    /// value. (Quadratic before; linear now: about 40 ms in a debug build.)
    #[test]
    fn many_form_fields_keep_order_and_last_value() {
        const FIELDS: usize = 100_000;
        let mut body = String::new();
        for round in 0..2 {
            for i in 0..FIELDS / 2 {
                body.push_str(&format!("k{i}=r{round}v{i}&"));
            }
        }
        let Ok(RequestBody::Form(fields)) =
            parse_body(Some("application/x-www-form-urlencoded"), body.as_bytes())
        else {
            panic!("a form body");
        };
        assert_eq!(fields.len(), FIELDS / 2);
        for (i, (k, v)) in fields.iter().enumerate() {
            assert_eq!(k, &format!("k{i}"));
            assert_eq!(v, &format!("r1v{i}"));
        }
        assert_eq!(
            query_pairs(Some("a=1&b=2&a=3&&c")),
            vec![
                ("a".into(), "3".into()),
                ("b".into(), "2".into()),
                ("c".into(), String::new())
            ]
        );
    }
}
