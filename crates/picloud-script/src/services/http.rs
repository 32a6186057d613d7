//! `http::{get,head,delete,post,put,patch,post_form,request}`: outbound requests.

use std::time::Duration;

use picloud_services::http::{InboundResponse, OutboundBody, OutboundRequest, MAX_REDIRECTS_CAP};
use rhai::plugin::*;
use rhai::{Dynamic, Map};

use super::{call_weighed, error};
use crate::bounded::{self, JsonOutError};
use crate::convert::json_to_dynamic;

const NS: &str = "http";

type HttpResult<T> = std::result::Result<T, Box<EvalAltResult>>;

/// The largest request body (`PICLOUD_HTTP_MAX_REQUEST_BODY_BYTES`).
fn max_body() -> HttpResult<usize> {
    super::limit(NS, |s| s.http.max_request_body_bytes())
}

fn body_too_large(max: usize) -> Box<EvalAltResult> {
    error(
        NS,
        format!("body is larger than {max} bytes (PICLOUD_HTTP_MAX_REQUEST_BODY_BYTES)"),
    )
}

/// A request body by its type: Map/Array → JSON, String → text, Blob → bytes, () → none.
/// JSON is written within the body limit, never past it.
fn body_of(
    value: &Dynamic,
    max: impl FnOnce() -> HttpResult<usize>,
) -> HttpResult<Option<OutboundBody>> {
    if value.is_unit() {
        return Ok(None);
    }
    if value.is_map() || value.is_array() {
        let max = max()?;
        let bytes = bounded::json_bytes(value, max).map_err(|e| match e {
            JsonOutError::TooLarge(max) => body_too_large(max),
            JsonOutError::NotJson(message) => error(NS, format!("body: {message}")),
            e @ JsonOutError::TooDeep => error(NS, format!("body: {e}")),
        })?;
        return Ok(Some(OutboundBody {
            bytes,
            content_type: "application/json",
        }));
    }
    if value.is_string() {
        let text = value.clone().into_string().unwrap_or_default();
        return Ok(Some(OutboundBody {
            bytes: text.into_bytes(),
            content_type: "text/plain; charset=utf-8",
        }));
    }
    if value.is_blob() {
        let bytes = value.clone().into_blob().unwrap_or_default();
        return Ok(Some(OutboundBody {
            bytes,
            content_type: "application/octet-stream",
        }));
    }
    Err(error(
        NS,
        format!(
            "body must be a map, array, string, Blob or (), not {}",
            value.type_name()
        ),
    ))
}

/// A scalar as header or form text; maps, arrays and Blobs are refused.
fn text_of(what: &str, value: &Dynamic) -> HttpResult<String> {
    if value.is_string() {
        return Ok(value.clone().into_string().unwrap_or_default());
    }
    if value.is_int() || value.is_float() || value.is_bool() || value.is_char() {
        return Ok(value.to_string());
    }
    Err(error(
        NS,
        format!("{what} must be a string, number or bool"),
    ))
}

/// Applies one option of `opts`; `false` when `key` is not an option.
fn take_option(request: &mut OutboundRequest, key: &str, value: &Dynamic) -> HttpResult<bool> {
    match key {
        "headers" if value.is_unit() => {}
        "headers" => {
            let map = value
                .read_lock::<Map>()
                .ok_or_else(|| error(NS, "headers must be a map of strings"))?;
            for (name, v) in map.iter() {
                let text = text_of(&format!("header {name:?}"), v)?;
                request.headers.push((name.to_string(), text));
            }
        }
        "timeout_ms" => {
            let ms = value
                .as_int()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| error(NS, "timeout_ms must be a positive integer"))?;
            request.timeout = Some(Duration::from_millis(ms));
        }
        "follow_redirects" => {
            request.follow_redirects = value
                .as_bool()
                .map_err(|_| error(NS, "follow_redirects must be a bool"))?;
        }
        "max_redirects" => {
            request.max_redirects = value
                .as_int()
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= MAX_REDIRECTS_CAP)
                .ok_or_else(|| {
                    error(
                        NS,
                        format!("max_redirects must be an integer from 0 to {MAX_REDIRECTS_CAP}"),
                    )
                })?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn apply_opts(request: &mut OutboundRequest, opts: &Map) -> HttpResult<()> {
    for (key, value) in opts {
        if !take_option(request, key, value)? {
            return Err(unknown(key));
        }
    }
    Ok(())
}

fn unknown(key: &str) -> Box<EvalAltResult> {
    error(
        NS,
        format!(
            "unknown option {key:?}: use headers, timeout_ms, follow_redirects or max_redirects"
        ),
    )
}

/// `#{status, headers, body, body_raw}`: `body` is the parsed JSON for a JSON answer,
/// else the text when it is UTF-8, else `()` (as it is for an empty body). Bodies past
/// `parse_max` bytes are not parsed at all (`body` is `()`): their text would be past
/// the string limit, and parsing megabytes of JSON would allocate many times that
/// before any limit could look at it.
fn to_map(response: InboundResponse, parse_max: usize) -> Map {
    let media = response.media_type();
    let is_json = media
        .as_deref()
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    let body = if response.body.is_empty() || response.body.len() > parse_max {
        Dynamic::UNIT
    } else {
        let parsed = is_json
            .then(|| serde_json::from_slice::<serde_json::Value>(&response.body).ok())
            .flatten();
        match parsed {
            Some(json) => json_to_dynamic(&json),
            None => std::str::from_utf8(&response.body)
                .map_or(Dynamic::UNIT, |s| Dynamic::from(s.to_owned())),
        }
    };
    let headers: Map = response
        .headers
        .into_iter()
        .map(|(k, v)| (k.into(), Dynamic::from(v)))
        .collect();
    let mut out = Map::new();
    out.insert(
        "status".into(),
        Dynamic::from_int(i64::from(response.status)),
    );
    out.insert("headers".into(), Dynamic::from_map(headers));
    out.insert("body".into(), body);
    out.insert("body_raw".into(), Dynamic::from_blob(response.body));
    out
}

fn send(ctx: &NativeCallContext, request: OutboundRequest) -> HttpResult<Map> {
    let response = call_weighed(
        NS,
        |s, call_ctx| async move { s.http.request(&call_ctx, request).await },
        |r| {
            r.body.len()
                + r.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        },
    )?;
    let len = response.body.len();
    let engine = ctx.engine();
    let max_blob = engine.max_blob_size();
    if max_blob != 0 && len > max_blob {
        return Err(too_large(len));
    }
    // A body whose parsed form is past the script limits (text over the string limit,
    // an array over the array limit) is left to `body_raw`: a script could read it but
    // not call a method on it, since Rhai checks a value after each call. Any response
    // within the Blob cap is usable that way.
    let parse_max = bounded::max_string(engine);
    let mut value = Dynamic::from_map(to_map(response, parse_max));
    let fits = |v: &Dynamic| crate::sizes::ensure_within_limits(engine, v).is_ok();
    if !fits(&value) {
        if let Some(mut map) = value.write_lock::<Map>() {
            map.insert("body".into(), Dynamic::UNIT);
        }
        if !fits(&value) {
            return Err(error(
                NS,
                "response headers are larger than a script value may be \
                 (PICLOUD_SCRIPT_MAX_STRING_BYTES)",
            ));
        }
    }
    value
        .try_cast::<Map>()
        .ok_or_else(|| error(NS, "internal error: response is not a map"))
}

/// Past the Blob cap the response cannot be handed to the script at all: refused with a message saying why, and catchable like
/// any other `http:` error, rather than failing the run on a bare size limit.
fn too_large(len: usize) -> Box<EvalAltResult> {
    error(
        NS,
        format!(
            "response body of {len} bytes is larger than a script value may be \
             (PICLOUD_SCRIPT_MAX_BLOB_BYTES)"
        ),
    )
}

fn without_body(ctx: &NativeCallContext, method: &str, url: &str, opts: &Map) -> HttpResult<Map> {
    let mut request = OutboundRequest::new(method, url);
    apply_opts(&mut request, opts)?;
    send(ctx, request)
}

fn with_body(
    ctx: &NativeCallContext,
    method: &str,
    url: &str,
    body: &Dynamic,
    opts: &Map,
) -> HttpResult<Map> {
    let mut request = OutboundRequest::new(method, url);
    request.body = body_of(body, max_body)?;
    apply_opts(&mut request, opts)?;
    send(ctx, request)
}

/// The length of `s` as `application/x-www-form-urlencoded` writes it.
fn form_encoded_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' | b' ' => 1,
            _ => 3,
        })
        .sum()
}

fn form(ctx: &NativeCallContext, url: &str, fields: &Map, opts: &Map) -> HttpResult<Map> {
    // Measured field by field before it is written: one shared string in many fields
    // would otherwise encode to gigabytes.
    let max = max_body()?;
    let mut len = 0usize;
    let mut encoder = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        let text = text_of(&format!("form field {name:?}"), value)?;
        len = len
            .saturating_add(usize::from(len > 0) + 1)
            .saturating_add(form_encoded_len(name))
            .saturating_add(form_encoded_len(&text));
        if len > max {
            return Err(body_too_large(max));
        }
        encoder.append_pair(name.as_str(), &text);
    }
    let mut request = OutboundRequest::new("POST", url);
    request.body = Some(OutboundBody {
        bytes: encoder.finish().into_bytes(),
        content_type: "application/x-www-form-urlencoded",
    });
    apply_opts(&mut request, opts)?;
    send(ctx, request)
}

#[export_module]
mod http_ns {
    use super::*;

    /// GET `url`; returns `#{status, headers, body, body_raw}` (non-2xx does not throw).
    #[rhai_fn(name = "get", return_raw)]
    pub fn get(ctx: NativeCallContext, url: &str) -> Result<Map, Box<EvalAltResult>> {
        without_body(&ctx, "GET", url, &Map::new())
    }

    /// GET `url` with `opts = #{headers, timeout_ms, follow_redirects, max_redirects}`.
    #[rhai_fn(name = "get", return_raw)]
    pub fn get_opts(
        ctx: NativeCallContext,
        url: &str,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        without_body(&ctx, "GET", url, &opts)
    }

    /// HEAD `url`: status and headers, no body.
    #[rhai_fn(name = "head", return_raw)]
    pub fn head(ctx: NativeCallContext, url: &str) -> Result<Map, Box<EvalAltResult>> {
        without_body(&ctx, "HEAD", url, &Map::new())
    }

    /// HEAD `url` with `opts`.
    #[rhai_fn(name = "head", return_raw)]
    pub fn head_opts(
        ctx: NativeCallContext,
        url: &str,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        without_body(&ctx, "HEAD", url, &opts)
    }

    /// DELETE `url`.
    #[rhai_fn(name = "delete", return_raw)]
    pub fn delete(ctx: NativeCallContext, url: &str) -> Result<Map, Box<EvalAltResult>> {
        without_body(&ctx, "DELETE", url, &Map::new())
    }

    /// DELETE `url` with `opts`.
    #[rhai_fn(name = "delete", return_raw)]
    pub fn delete_opts(
        ctx: NativeCallContext,
        url: &str,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        without_body(&ctx, "DELETE", url, &opts)
    }

    /// POST `body` to `url`: a map or array is sent as JSON, a string as text/plain,
    /// a Blob as application/octet-stream, `()` as no body.
    #[rhai_fn(name = "post", return_raw)]
    pub fn post(
        ctx: NativeCallContext,
        url: &str,
        body: Dynamic,
    ) -> Result<Map, Box<EvalAltResult>> {
        with_body(&ctx, "POST", url, &body, &Map::new())
    }

    /// POST `body` to `url` with `opts`.
    #[rhai_fn(name = "post", return_raw)]
    pub fn post_opts(
        ctx: NativeCallContext,
        url: &str,
        body: Dynamic,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        with_body(&ctx, "POST", url, &body, &opts)
    }

    /// PUT `body` to `url` (body types as for `post`).
    #[rhai_fn(name = "put", return_raw)]
    pub fn put(
        ctx: NativeCallContext,
        url: &str,
        body: Dynamic,
    ) -> Result<Map, Box<EvalAltResult>> {
        with_body(&ctx, "PUT", url, &body, &Map::new())
    }

    /// PUT `body` to `url` with `opts`.
    #[rhai_fn(name = "put", return_raw)]
    pub fn put_opts(
        ctx: NativeCallContext,
        url: &str,
        body: Dynamic,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        with_body(&ctx, "PUT", url, &body, &opts)
    }

    /// PATCH `body` to `url` (body types as for `post`).
    #[rhai_fn(name = "patch", return_raw)]
    pub fn patch(
        ctx: NativeCallContext,
        url: &str,
        body: Dynamic,
    ) -> Result<Map, Box<EvalAltResult>> {
        with_body(&ctx, "PATCH", url, &body, &Map::new())
    }

    /// PATCH `body` to `url` with `opts`.
    #[rhai_fn(name = "patch", return_raw)]
    pub fn patch_opts(
        ctx: NativeCallContext,
        url: &str,
        body: Dynamic,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        with_body(&ctx, "PATCH", url, &body, &opts)
    }

    /// POST a map of fields as application/x-www-form-urlencoded.
    #[rhai_fn(name = "post_form", return_raw)]
    pub fn post_form(
        ctx: NativeCallContext,
        url: &str,
        fields: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        form(&ctx, url, &fields, &Map::new())
    }

    /// POST a map of fields as a form, with `opts`.
    #[rhai_fn(name = "post_form", return_raw)]
    pub fn post_form_opts(
        ctx: NativeCallContext,
        url: &str,
        fields: Map,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        form(&ctx, url, &fields, &opts)
    }

    /// Any request: `#{method, url, body?, headers?, timeout_ms?, follow_redirects?,
    /// max_redirects?}`.
    #[rhai_fn(name = "request", return_raw)]
    pub fn request(ctx: NativeCallContext, spec: Map) -> Result<Map, Box<EvalAltResult>> {
        let text = |key: &str| -> HttpResult<String> {
            spec.get(key)
                .and_then(|v| v.clone().into_string().ok())
                .ok_or_else(|| error(NS, format!("request needs a string {key:?}")))
        };
        let mut request = OutboundRequest::new(&text("method")?, &text("url")?);
        for (key, value) in &spec {
            match key.as_str() {
                "method" | "url" => {}
                "body" => request.body = body_of(value, max_body)?,
                other => {
                    if !take_option(&mut request, other, value)? {
                        return Err(error(
                            NS,
                            format!(
                                "unknown request key {other:?}: use method, url, body, headers, \
                                 timeout_ms, follow_redirects or max_redirects"
                            ),
                        ));
                    }
                }
            }
        }
        send(&ctx, request)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(http_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_by_type() {
        let mut m = Map::new();
        m.insert("a".into(), Dynamic::from_int(1));
        let max = || Ok(1024);
        let json = body_of(&Dynamic::from_map(m), max)
            .expect("map")
            .expect("body");
        assert_eq!(json.content_type, "application/json");
        assert_eq!(json.bytes, br#"{"a":1}"#);
        let text = body_of(&Dynamic::from("hi".to_string()), max)
            .expect("text")
            .expect("body");
        assert!(text.content_type.starts_with("text/plain"));
        let blob: rhai::Blob = vec![0, 255];
        let raw = body_of(&Dynamic::from_blob(blob), max)
            .expect("blob")
            .expect("body");
        assert_eq!(raw.content_type, "application/octet-stream");
        assert!(body_of(&Dynamic::UNIT, max).expect("unit").is_none());
        assert!(body_of(&Dynamic::from_int(3), max).is_err());
    }

    #[test]
    fn unknown_options_throw() {
        let mut opts = Map::new();
        opts.insert("timeout".into(), Dynamic::from_int(5));
        let mut request = OutboundRequest::new("GET", "http://example.com/");
        let err = apply_opts(&mut request, &opts).expect_err("unknown");
        assert!(
            err.to_string().contains("http: unknown option \"timeout\""),
            "{err}"
        );
        let mut opts = Map::new();
        opts.insert("max_redirects".into(), Dynamic::from_int(99));
        assert!(apply_opts(&mut request, &opts).is_err());
    }

    #[test]
    fn responses_become_maps() {
        let response = InboundResponse {
            status: 404,
            headers: vec![(
                "content-type".into(),
                "application/problem+json; charset=utf-8".into(),
            )],
            body: br#"{"error":"nope"}"#.to_vec(),
        };
        let unparsed = to_map(response.clone(), 15);
        assert!(unparsed["body"].is_unit(), "longer than parse_max");
        let map = to_map(response, 16);
        assert_eq!(map["status"].as_int().ok(), Some(404));
        let body = map["body"].read_lock::<Map>().expect("parsed").clone();
        assert_eq!(
            body["error"].clone().into_string().ok().as_deref(),
            Some("nope")
        );
        assert!(map["body_raw"].is_blob());
        let binary = to_map(
            InboundResponse {
                status: 200,
                headers: vec![],
                body: vec![0xff, 0xfe],
            },
            usize::MAX,
        );
        assert!(binary["body"].is_unit());
    }
}
