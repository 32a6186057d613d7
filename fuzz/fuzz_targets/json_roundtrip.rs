//! Arbitrary JSON through `json_to_dynamic` / `json_value`, and as a request body
//! returned by a route (so through `to_response`) and through `json::encode`/`decode`.
//!
//! Every JSON value serde_json parses (its own depth limit is 128) must come back
//! equal, integers as integers, up to numbers that do not fit an `i64` becoming floats,
//! and a route returning it must send exactly its serialisation.

#![no_main]

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use picloud_script::{json_to_dynamic, json_value, RequestBody};
use rhai::AST;
use serde_json::{Number, Value};

use common::{check_report, on_script_thread, run_input, ENGINE, RUN_TIMEOUT};

/// Returns the body as the route's value (a JSON object of only status/headers/body
/// keys with an integer status is the explicit response form, by design).
static ECHO: LazyLock<AST> = LazyLock::new(|| ENGINE.compile("ctx.request.body").expect("echo"));
static REENCODE: LazyLock<AST> = LazyLock::new(|| {
    ENGINE
        .compile("json::encode(json::decode(json::encode(ctx.request.body)))")
        .expect("reencode")
});

/// The value as the engine is expected to give it back: numbers outside `i64` as `f64`.
fn normalise(value: &Value) -> Value {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Number(i.into()),
            None => n
                .as_f64()
                .and_then(Number::from_f64)
                .map_or(Value::Null, Value::Number),
        },
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), normalise(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_response_form(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            !map.is_empty()
                && map
                    .keys()
                    .all(|k| matches!(k.as_str(), "status" | "headers" | "body"))
                && map.get("status").is_some_and(|s| s.is_i64())
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let expected = normalise(&json);
    let dynamic = json_to_dynamic(&json);
    match json_value(&dynamic, usize::MAX) {
        Ok(back) => assert_eq!(back, expected, "round trip changed the value"),
        Err(e) => panic!("parsed JSON has no JSON form: {e}"),
    }

    let raw = data.to_vec();
    on_script_thread(move || {
        let report = ENGINE.run_route(
            &ECHO,
            run_input(RequestBody::Json(json.clone()), raw.clone()),
            *RUN_TIMEOUT,
        );
        check_report(&report);
        if !is_response_form(&json) {
            let response = report.outcome.expect("echoing a JSON body succeeds");
            match &expected {
                Value::Null => assert_eq!(response.status, 204),
                Value::String(s) => assert_eq!(response.body, s.as_bytes()),
                other => assert_eq!(
                    response.body,
                    serde_json::to_vec(other).expect("serialisable"),
                    "the sent body differs from the value"
                ),
            }
        }

        let report = ENGINE.run_route(
            &REENCODE,
            run_input(RequestBody::Json(json), raw),
            *RUN_TIMEOUT,
        );
        check_report(&report);
        let response = report
            .outcome
            .expect("json::decode(json::encode(v)) succeeds");
        // serde_json's default float parsing may be off by one ULP on long decimals
        // (no `float_roundtrip` feature), so the expectation goes through the same
        // encode-decode-encode steps rather than comparing against `expected` itself.
        let once = serde_json::to_string(&expected).expect("serialisable");
        let reparsed: Value = serde_json::from_str(&once).expect("own output parses");
        let twice = serde_json::to_string(&reparsed).expect("serialisable");
        assert_eq!(
            String::from_utf8_lossy(&response.body),
            twice,
            "json:: round trip"
        );
    });
});
