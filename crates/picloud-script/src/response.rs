//! What a route's return value becomes (SCRIPTING.md, "What a route's return value
//! becomes").

use rhai::{Blob, Dynamic, ImmutableString, Map};

use crate::bounded::{self, JsonOutError};
use crate::error::{FailureKind, Limit, ScriptFailure};

/// An HTTP response, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";
const JSON: &str = "application/json";

/// Renders a body value: `()` → nothing, string → text, Blob → bytes, else JSON.
fn render_body(value: &Dynamic) -> Result<Option<(Vec<u8>, &'static str)>, ScriptFailure> {
    if value.is_unit() {
        return Ok(None);
    }
    if let Some(text) = value.read_lock::<ImmutableString>() {
        return Ok(Some((text.as_bytes().to_vec(), TEXT)));
    }
    if let Some(blob) = value.read_lock::<Blob>() {
        return Ok(Some((blob.to_vec(), OCTETS)));
    }
    // The text of a value can be far larger than the value (one string shared by many
    // entries): it is written within the answer limit, never past it.
    let max = crate::state::max_answer_bytes();
    let bytes = bounded::json_bytes(value, max).map_err(|e| match e {
        JsonOutError::TooLarge(max) => ScriptFailure {
            kind: FailureKind::LimitExceeded(Limit::DataSize),
            message: format!(
                "the returned value is larger than {max} bytes as JSON \
                 (PICLOUD_SCRIPT_MAX_BLOB_BYTES)"
            ),
            line: None,
        },
        e @ (JsonOutError::NotJson(_) | JsonOutError::TooDeep) => {
            ScriptFailure::error(format!("the returned value cannot be sent: {e}"))
        }
    })?;
    Ok(Some((bytes, JSON)))
}

/// Is this map the explicit `#{status, headers, body}` form?
fn is_response_map(map: &Map) -> bool {
    !map.is_empty()
        && map
            .keys()
            .all(|k| matches!(k.as_str(), "status" | "headers" | "body"))
        && map.get("status").is_some_and(|s| s.is_int())
}

/// The most bytes all of a response's headers may take, names and values (a shared
/// string under thousands of names would otherwise be copied into each: a gigabyte).
const MAX_HEADER_BYTES: usize = 64 << 10;
/// The most headers a script may send.
const MAX_HEADERS: usize = 100;

fn too_many_headers() -> ScriptFailure {
    ScriptFailure::error(format!(
        "response headers take more than {MAX_HEADER_BYTES} bytes or number more than \
         {MAX_HEADERS}"
    ))
}

/// A header value as text, within what is left of the headers' budget.
fn header_value(value: &Dynamic, room: usize) -> Result<String, ScriptFailure> {
    let text = match value.read_lock::<ImmutableString>() {
        Some(s) if s.len() <= room => Some(s.to_string()),
        Some(_) => None,
        None => {
            let (text, complete) = bounded::text_within(room, |out| {
                use std::fmt::Write as _;
                write!(out, "{value}")
            });
            complete.then_some(text)
        }
    };
    text.ok_or_else(too_many_headers)
}

pub(crate) fn to_response(value: Dynamic) -> Result<RouteResponse, ScriptFailure> {
    if value.is_unit() {
        return Ok(RouteResponse {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        });
    }
    if let Some(map) = value.read_lock::<Map>() {
        if is_response_map(&map) {
            let status = map
                .get("status")
                .and_then(|s| s.as_int().ok())
                .unwrap_or(200);
            // 1xx are interim answers, not a response (101 would switch the
            // connection to another protocol): only final statuses.
            let status = u16::try_from(status)
                .ok()
                .filter(|s| (200..=599).contains(s))
                .ok_or_else(|| {
                    ScriptFailure::error(format!(
                        "response status {status} is not between 200 and 599"
                    ))
                })?;
            let mut headers = Vec::new();
            if let Some(h) = map.get("headers") {
                let Some(h) = h.read_lock::<Map>() else {
                    return Err(ScriptFailure::error("response headers must be a map"));
                };
                if h.len() > MAX_HEADERS {
                    return Err(too_many_headers());
                }
                let mut room = MAX_HEADER_BYTES;
                for (name, value) in h.iter() {
                    let name = name.to_string();
                    room = room.checked_sub(name.len()).ok_or_else(too_many_headers)?;
                    let value = header_value(value, room)?;
                    room -= value.len();
                    validate_header(&name, &value)?;
                    headers.push((name, value));
                }
            }
            // 204 and 304 answers have no body (RFC 9110): whatever the script gave
            // is not sent, rather than sent with a length the client must ignore.
            let body = match map.get("body") {
                Some(_) if matches!(status, 204 | 304) => None,
                Some(body) => render_body(body)?,
                None => None,
            };
            let mut response = RouteResponse {
                status,
                headers,
                body: Vec::new(),
            };
            if let Some((bytes, content_type)) = body {
                let has_type = response
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
                if !has_type {
                    response
                        .headers
                        .push(("content-type".into(), content_type.into()));
                }
                response.body = bytes;
            }
            return Ok(response);
        }
    }
    let (body, content_type) = render_body(&value)?.unwrap_or_default();
    Ok(RouteResponse {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body,
    })
}

fn validate_header(name: &str, value: &str) -> Result<(), ScriptFailure> {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !name_ok {
        return Err(ScriptFailure::error(format!(
            "response header name {name:?} is not a valid HTTP header name"
        )));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ScriptFailure::error(format!(
            "response header {name:?} has a control character in its value"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(status: i64) -> Result<RouteResponse, ScriptFailure> {
        let mut map = Map::new();
        map.insert("status".into(), Dynamic::from(status));
        to_response(Dynamic::from_map(map))
    }

    #[test]
    fn only_final_statuses() {
        for bad in [-1, 0, 100, 101, 103, 199, 600, 1000, 65_736] {
            let e = with_status(bad).expect_err("refused");
            assert!(
                e.message.contains("between 200 and 599"),
                "{bad}: {}",
                e.message
            );
        }
        for good in [200, 204, 302, 404, 599] {
            assert_eq!(with_status(good).map(|r| r.status), Ok(good as u16));
        }
    }
}
