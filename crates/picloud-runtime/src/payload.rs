//! Turning queued deliveries into runs: `ctx.event`, and for async route calls the
//! request and caller that were captured when the call was accepted.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use picloud_script::{PrincipalInput, RequestBody, RequestInput};
use picloud_store::OutboxEvent;
use serde_json::{json, Value};

use crate::input::Subject;

fn pairs(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn unpairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Request headers never written to the outbox: credentials, which would sit in the
/// database (and in the dead letter, and anything that reads it) long after the
/// request. The caller's identity is kept, resolved, as the payload's `principal`.
/// The usual names for a credential a proxy or another service added go too.
const NOT_STORED: &[&str] = &[
    "authorization",
    "cookie",
    "x-csrf-token",
    "proxy-authorization",
    "x-api-key",
    "x-auth-token",
];

/// The payload of an async route call: what `ctx.event` shows, plus the request and
/// the caller, restored into `ctx.request` and `ctx.principal` when it runs.
pub fn http_payload(request: &RequestInput, principal: Option<&PrincipalInput>) -> Value {
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| !NOT_STORED.iter().any(|n| name.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    let (body, raw_kept) = stored_body(request);
    let mut payload = json!({
        "source": "http",
        "op": "request",
        "http": {"method": request.method, "path": request.path},
        "request": {
            "method": request.method,
            "path": request.path,
            "params": pairs(&request.params),
            "query": pairs(&request.query),
            "headers": pairs(&headers),
            "body": body,
        },
        "principal": principal.map(|p| json!({
            "kind": p.kind,
            "user_id": p.user_id,
            "key_id": p.key_id,
            "scopes": p.scopes,
        })),
    });
    if raw_kept {
        payload["request"]["body_raw"] = Value::String(STANDARD.encode(&request.body_raw));
    }
    payload
}

/// The body as stored, and whether the raw bytes must be stored beside it. A JSON or
/// text body is kept once, as the text it arrived as, and both `body` and `body_raw`
/// are rebuilt from it when the call runs: storing the parsed value and the bytes (in
/// base64) made every queued event, and every dead letter, 2.3 times the body.
fn stored_body(request: &RequestInput) -> (Value, bool) {
    let raw_text = std::str::from_utf8(&request.body_raw).ok();
    match (&request.body, raw_text) {
        (RequestBody::Json(_), Some(text)) => (json!({"kind": "json", "text": text}), false),
        (RequestBody::Text(t), Some(text)) if t == text => {
            (json!({"kind": "text", "value": t}), false)
        }
        (RequestBody::None, _) if request.body_raw.is_empty() => (json!({"kind": "none"}), false),
        (RequestBody::None, _) => (json!({"kind": "none"}), true),
        (RequestBody::Json(v), None) => (json!({"kind": "json", "value": v}), true),
        (RequestBody::Text(t), _) => (json!({"kind": "text", "value": t}), true),
        (RequestBody::Form(f), _) => (json!({"kind": "form", "value": pairs(f)}), true),
    }
}

fn request_of(value: &Value) -> RequestInput {
    let stored = &value["body"];
    // The bytes: stored beside the body, or (for JSON and text) the body's own text.
    let body_raw = match value["body_raw"].as_str() {
        Some(b64) => STANDARD.decode(b64).unwrap_or_default(),
        None => stored["text"]
            .as_str()
            .or_else(|| stored["value"].as_str())
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
    };
    let body = match stored["kind"].as_str() {
        Some("json") => match stored["text"].as_str() {
            // It parsed when the call was accepted; the same parser gives the same value.
            Some(text) => serde_json::from_str(text).map_or(RequestBody::None, RequestBody::Json),
            None => RequestBody::Json(stored["value"].clone()),
        },
        Some("text") => RequestBody::Text(stored["value"].as_str().unwrap_or_default().to_owned()),
        Some("form") => RequestBody::Form(unpairs(&stored["value"])),
        _ => RequestBody::None,
    };
    RequestInput {
        method: value["method"].as_str().unwrap_or_default().to_owned(),
        path: value["path"].as_str().unwrap_or_default().to_owned(),
        params: unpairs(&value["params"]),
        query: unpairs(&value["query"]),
        headers: unpairs(&value["headers"]),
        body,
        body_raw,
    }
}

fn principal_of(value: &Value) -> Option<PrincipalInput> {
    let kind = match value["kind"].as_str()? {
        "api_key" => "api_key",
        _ => "user",
    };
    Some(PrincipalInput {
        kind,
        user_id: value["user_id"].as_str()?.to_owned(),
        key_id: value["key_id"].as_str().map(str::to_owned),
        scopes: value["scopes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// What a delivery's run is about (`ctx.event`, and for an async route call its
/// request), and the caller it was queued with, if any: a snapshot that
/// [`crate::caller::resolve`] checks against the store just before the run starts.
pub(crate) fn delivery(event: &OutboxEvent) -> (Subject, Option<PrincipalInput>) {
    let request = event
        .payload
        .get("request")
        .filter(|r| !r.is_null())
        .map(request_of);
    let principal = event.payload.get("principal").and_then(principal_of);
    let subject = Subject {
        request,
        event: Some(event.ctx_event()),
        attempt: event.attempt,
        depth: event.depth,
    };
    (subject, principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_not_stored() {
        let request = RequestInput {
            method: "POST".into(),
            path: "/hook".into(),
            params: vec![],
            query: vec![],
            headers: vec![
                ("authorization".into(), "Bearer jwt".into()),
                ("cookie".into(), "sid=1".into()),
                ("x-csrf-token".into(), "t".into()),
                ("x-keep".into(), "yes".into()),
            ],
            body: RequestBody::None,
            body_raw: vec![],
        };
        let payload = http_payload(&request, None);
        assert_eq!(payload["request"]["headers"], json!({"x-keep": "yes"}));
    }

    fn round_trip(body: RequestBody, raw: &[u8]) -> (Value, RequestInput) {
        let request = RequestInput {
            method: "POST".into(),
            path: "/hook".into(),
            params: vec![],
            query: vec![],
            headers: vec![],
            body,
            body_raw: raw.to_vec(),
        };
        let payload = http_payload(&request, None);
        let back = request_of(&payload["request"]);
        assert_eq!(back.body_raw, raw);
        (payload, back)
    }

    #[test]
    fn bodies_are_stored_once_and_restored_exactly() {
        let raw = br#"{ "n": 1, "s": "\u00e9" }"#;
        let value: Value = serde_json::from_slice(raw).expect("json");
        let (payload, back) = round_trip(RequestBody::Json(value.clone()), raw);
        assert!(payload["request"].get("body_raw").is_none(), "{payload}");
        assert!(
            payload["request"]["body"].get("value").is_none(),
            "{payload}"
        );
        assert!(matches!(back.body, RequestBody::Json(v) if v == value));

        let (payload, back) = round_trip(RequestBody::Text("héllo".into()), "héllo".as_bytes());
        assert!(payload["request"].get("body_raw").is_none(), "{payload}");
        assert!(matches!(back.body, RequestBody::Text(t) if t == "héllo"));

        // Bytes that are not their text (lossy UTF-8), forms and opaque bodies keep
        // their bytes beside the body.
        let (payload, back) = round_trip(RequestBody::Text("a\u{fffd}".into()), b"a\xff");
        assert!(payload["request"]["body_raw"].is_string());
        assert!(matches!(back.body, RequestBody::Text(t) if t == "a\u{fffd}"));
        let form = vec![("a".to_owned(), "1".to_owned())];
        let (_, back) = round_trip(RequestBody::Form(form.clone()), b"a=1");
        assert!(matches!(back.body, RequestBody::Form(f) if f == form));
        let (_, back) = round_trip(RequestBody::None, &[0, 1, 2]);
        assert!(matches!(back.body, RequestBody::None));
        let (payload, _) = round_trip(RequestBody::None, b"");
        assert!(payload["request"].get("body_raw").is_none());
    }

    #[test]
    fn events_stored_before_the_change_still_run() {
        let old = json!({
            "method": "POST", "path": "/hook", "params": {}, "query": {}, "headers": {},
            "body": {"kind": "json", "value": {"n": 1}},
            "body_raw": STANDARD.encode(br#"{"n":1}"#),
        });
        let back = request_of(&old);
        assert_eq!(back.body_raw, br#"{"n":1}"#);
        assert!(matches!(back.body, RequestBody::Json(v) if v == json!({"n": 1})));
    }
}
