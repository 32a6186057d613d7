//! Turning queued deliveries into runs: `ctx.event`, and for async route calls the
//! request and caller that were captured when the call was accepted.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use picloud_script::{PrincipalInput, RequestBody, RequestInput};
use picloud_store::OutboxEvent;
use serde_json::{json, Map, Value};

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
const NOT_STORED: &[&str] = &["authorization", "cookie", "x-csrf-token"];

/// The payload of an async route call: what `ctx.event` shows, plus the request and
/// the caller, restored into `ctx.request` and `ctx.principal` when it runs.
pub fn http_payload(request: &RequestInput, principal: Option<&PrincipalInput>) -> Value {
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| !NOT_STORED.iter().any(|n| name.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    let body = match &request.body {
        RequestBody::None => json!({"kind": "none"}),
        RequestBody::Json(v) => json!({"kind": "json", "value": v}),
        RequestBody::Text(t) => json!({"kind": "text", "value": t}),
        RequestBody::Form(f) => json!({"kind": "form", "value": pairs(f)}),
    };
    json!({
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
            "body_raw": STANDARD.encode(&request.body_raw),
        },
        "principal": principal.map(|p| json!({
            "kind": p.kind,
            "user_id": p.user_id,
            "key_id": p.key_id,
            "scopes": p.scopes,
        })),
    })
}

fn request_of(value: &Value) -> RequestInput {
    let body = &value["body"];
    let body = match body["kind"].as_str() {
        Some("json") => RequestBody::Json(body["value"].clone()),
        Some("text") => RequestBody::Text(body["value"].as_str().unwrap_or_default().to_owned()),
        Some("form") => RequestBody::Form(unpairs(&body["value"])),
        _ => RequestBody::None,
    };
    RequestInput {
        method: value["method"].as_str().unwrap_or_default().to_owned(),
        path: value["path"].as_str().unwrap_or_default().to_owned(),
        params: unpairs(&value["params"]),
        query: unpairs(&value["query"]),
        headers: unpairs(&value["headers"]),
        body,
        body_raw: STANDARD
            .decode(value["body_raw"].as_str().unwrap_or_default())
            .unwrap_or_default(),
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
    let mut ctx_event: Map<String, Value> = event.payload.as_object().cloned().unwrap_or_default();
    let request = ctx_event
        .remove("request")
        .filter(|r| !r.is_null())
        .map(|r| request_of(&r));
    let principal = ctx_event.remove("principal").and_then(|p| principal_of(&p));
    ctx_event.insert("id".into(), Value::String(event.id.to_string()));
    ctx_event.insert("attempt".into(), json!(event.attempt));
    let subject = Subject {
        request,
        event: Some(Value::Object(ctx_event)),
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
}
