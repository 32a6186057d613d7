//! `json::*`: script values to JSON text and back, by the rules of `crate::convert`
//! (integers stay integers, Blobs become base64 strings, NaN is refused).

use rhai::plugin::*;
use rhai::EvalAltResult;

use crate::bounded::{self, JsonOutError};
use crate::convert::json_to_dynamic;

// rhai_codegen unwraps the lock on a `&mut` first parameter in the code it generates.
#[allow(clippy::unwrap_used)]
#[export_module]
mod json_ns {
    use super::*;

    /// `value` as compact JSON text (Blobs become base64 strings; NaN and infinities throw).
    /// Text longer than the string limit stops the run, like any string grown past it.
    #[rhai_fn(pure, return_raw)]
    pub fn encode(
        ctx: NativeCallContext,
        value: &mut Dynamic,
    ) -> Result<String, Box<EvalAltResult>> {
        match bounded::json_bytes(value, bounded::max_string(ctx.engine())) {
            // The serializer writes only valid UTF-8.
            Ok(bytes) => String::from_utf8(bytes).map_err(|e| format!("json: {e}").into()),
            Err(JsonOutError::TooLarge(_)) => Err(bounded::string_too_large()),
            Err(e) => Err(format!("json: {e}").into()),
        }
    }

    /// The value JSON `text` describes (objects become maps, null becomes `()`).
    /// Its strings, arrays and maps are held to the limits like those a script builds.
    #[rhai_fn(return_raw)]
    pub fn decode(ctx: NativeCallContext, text: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => {
                let value = json_to_dynamic(&json);
                crate::sizes::ensure_within_limits(ctx.engine(), &value)?;
                Ok(value)
            }
            Err(e) => Err(format!("json: {e}").into()),
        }
    }
}

pub(crate) fn module() -> Module {
    exported_module!(json_ns)
}

/// Rhai's `parse_json(text)` is `json::decode`: its values held to the limits too.
pub(crate) fn register_parse_json(engine: &mut Engine) {
    engine.register_fn(
        "parse_json",
        |ctx: NativeCallContext, text: &str| -> Result<Dynamic, Box<EvalAltResult>> {
            json_ns::decode(ctx, text)
        },
    );
}

#[cfg(test)]
mod tests {
    use rhai::{Map, INT};

    use crate::stdlib::test_support::{eval, eval_err};

    #[test]
    fn encode_values() {
        assert_eq!(
            eval::<String>(r#"json::encode(#{a: 1, b: [true, (), "x"], c: 1.5})"#),
            r#"{"a":1,"b":[true,null,"x"],"c":1.5}"#
        );
        assert_eq!(eval::<String>(r#"json::encode("hé\n")"#), r#""hé\n""#);
        assert_eq!(eval::<String>("json::encode(())"), "null");
        assert_eq!(
            eval::<String>(r#"json::encode(blob(3, 0xff))"#),
            r#""////""#
        );
        // Constants are accepted (the argument is not modified).
        assert_eq!(eval::<String>("const X = [1]; json::encode(X)"), "[1]");
    }

    #[test]
    fn encode_refuses_what_has_no_json_form() {
        let message = eval_err("json::encode(0.0 / 0.0)");
        assert!(message.starts_with("json: "), "{message}");
        let message = eval_err(r#"json::encode(#{f: Fn("x")})"#);
        assert!(message.starts_with("json: "), "{message}");
    }

    #[test]
    fn decode_values() {
        let map = eval::<Map>(r#"json::decode("{\"a\": [1, 2.5, null], \"b\": {\"c\": \"d\"}}")"#);
        assert_eq!(map.len(), 2);
        assert_eq!(
            eval::<INT>(r#"json::decode("{\"a\": [1, 2.5, null]}").a[0]"#),
            1
        );
        assert!(eval::<bool>(r#"json::decode("null") == ()"#));
        assert_eq!(eval::<String>(r#"json::decode("\"x\"")"#), "x");
        assert_eq!(
            eval::<String>(r#"json::encode(json::decode("{\"k\":[1,{\"n\":null}]}"))"#),
            r#"{"k":[1,{"n":null}]}"#
        );
    }

    #[test]
    fn decode_refuses_bad_text() {
        for bad in ["", "{", "[1,]", "nul", "{\"a\" 1}", "1 2"] {
            let message = eval_err(&format!("json::decode({bad:?})"));
            assert!(message.starts_with("json: "), "{bad}: {message}");
        }
        assert_eq!(
            eval_err(r#"json::decode("{")"#),
            "json: EOF while parsing an object at line 1 column 1"
        );
        // Deep nesting is refused by serde_json's recursion limit, not the stack.
        let message = eval_err(
            r#"
            let s = "[";
            for i in 0..12 { s += s; }
            json::decode(s)
            "#,
        );
        assert!(
            message.starts_with("json: recursion limit exceeded"),
            "{message}"
        );
    }
}
