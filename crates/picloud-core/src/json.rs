//! How deep JSON may nest, once for every way a value comes in and goes back out.
//!
//! serde_json refuses to read anything nested past 128 levels. A value that went in
//! at 127 levels comes back wrapped in an event (`{"kv": {"value": …}}`, an async
//! route's `{"request": {"body": …}}`) a few levels deeper, so an outbox row holding
//! it could never be read again — and a claim that cannot read one row fails for every
//! app. Values are therefore refused past [`MAX_DEPTH`] where they enter (script
//! values handed to a service, request bodies), leaving room for the wrappers, and
//! rows are read back with [`parse_stored`], which does not trip on them.

use serde_json::Value;

/// The deepest nesting of arrays and objects a value may have where it enters.
pub const MAX_DEPTH: usize = 100;

/// How stored text may nest when read back: the entry limit plus room for the
/// envelopes the store wraps values in, with margin. Past it, text is refused before
/// parsing, so no stored text can make the parser recurse without bound.
const MAX_STORED_DEPTH: usize = 512;

/// The nesting depth of `value`: 0 for a scalar, 1 for `[]` or `{}` of scalars.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(level);
                stack.extend(items.iter().map(|i| (i, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level);
                stack.extend(map.values().map(|i| (i, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// `Err` naming the limit when `value` nests deeper than [`MAX_DEPTH`].
pub fn check_depth(value: &Value) -> Result<(), String> {
    if depth(value) > MAX_DEPTH {
        Err(format!(
            "the value nests deeper than {MAX_DEPTH} levels of arrays and maps"
        ))
    } else {
        Ok(())
    }
}

/// The nesting depth of JSON text, counted without parsing it (brackets outside
/// strings).
fn text_depth(text: &str) -> usize {
    let (mut level, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                level += 1;
                deepest = deepest.max(level);
            }
            b']' | b'}' => level = level.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses JSON the store wrote. Text nested past serde_json's default limit (a value
/// stored before the entry limit existed, in its envelope) is read anyway, up to a
/// bound that keeps the parser's recursion small.
pub fn parse_stored(text: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(text) {
        Err(e)
            if e.to_string().contains("recursion limit")
                && text_depth(text) <= MAX_STORED_DEPTH =>
        {
            let mut de = serde_json::Deserializer::from_str(text);
            de.disable_recursion_limit();
            let value = serde::Deserialize::deserialize(&mut de).map_err(|_| e)?;
            de.end()?;
            Ok(value)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_counts_arrays_and_maps() {
        assert_eq!(depth(&serde_json::json!(1)), 0);
        assert_eq!(depth(&serde_json::json!([])), 1);
        assert_eq!(depth(&serde_json::json!({"a": [{"b": 1}]})), 3);
        let deep: Value = serde_json::from_str(&nested(101)).expect("parse");
        assert!(check_depth(&deep).is_err());
        let ok: Value = serde_json::from_str(&nested(100)).expect("parse");
        assert!(check_depth(&ok).is_ok());
    }

    #[test]
    fn stored_text_past_the_default_limit_is_read() {
        let text = format!(r#"{{"kv": {{"value": {}}}}}"#, nested(127));
        assert!(serde_json::from_str::<Value>(&text).is_err());
        let value = parse_stored(&text).expect("read back");
        assert_eq!(depth(&value), 129);
        assert!(
            parse_stored(&nested(600)).is_err(),
            "unbounded text is refused"
        );
        assert_eq!(text_depth(r#"["[[[", {"a": "}}"}]"#), 2);
    }
}
