//! Conversions between script values and JSON.
//!
//! Written by hand rather than through serde so that the rules are ours: integers stay
//! integers, Blobs become base64 strings, non-finite floats and opaque values are
//! refused with a message instead of silently turning into something else.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rhai::{Array, Blob, Dynamic, Map, FLOAT, INT};
use serde_json::{Number, Value};

/// Deepest nesting converted; deeper values are refused rather than risking the stack.
pub const MAX_JSON_DEPTH: usize = 128;

pub fn json_to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i as INT),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN) as FLOAT),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(items) => {
            let array: Array = items.iter().map(json_to_dynamic).collect();
            Dynamic::from_array(array)
        }
        Value::Object(fields) => {
            let map: Map = fields
                .iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect();
            Dynamic::from_map(map)
        }
    }
}

/// Why a value has no JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotJson(pub String);

pub fn dynamic_to_json(value: &Dynamic) -> Result<Value, NotJson> {
    to_json(value, 0)
}

fn to_json(value: &Dynamic, depth: usize) -> Result<Value, NotJson> {
    if depth > MAX_JSON_DEPTH {
        return Err(NotJson(format!(
            "value is nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::Number(i.into()));
    }
    if let Ok(f) = value.as_float() {
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| NotJson(format!("{f} has no JSON form (NaN and infinities do not)")));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
        return Ok(Value::String(s.to_string()));
    }
    if let Some(blob) = value.read_lock::<Blob>() {
        return Ok(Value::String(STANDARD.encode(&*blob)));
    }
    if let Some(array) = value.read_lock::<Array>() {
        return array
            .iter()
            .map(|v| to_json(v, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(map) = value.read_lock::<Map>() {
        let mut object = serde_json::Map::with_capacity(map.len());
        for (k, v) in map.iter() {
            object.insert(k.to_string(), to_json(v, depth + 1)?);
        }
        return Ok(Value::Object(object));
    }
    Err(NotJson(format!(
        "a value of type {} has no JSON form",
        value.type_name()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_keeps_types() {
        let value = json!({"a": 1, "b": 1.5, "c": "x", "d": [true, null], "e": {"f": -3}});
        let back = dynamic_to_json(&json_to_dynamic(&value)).expect("json");
        assert_eq!(back, value);
    }

    #[test]
    fn big_integers_become_floats() {
        let d = json_to_dynamic(&json!(u64::MAX));
        assert!(d.is_float());
    }

    #[test]
    fn blobs_become_base64_and_nan_is_refused() {
        let blob: Blob = vec![1, 2, 3];
        assert_eq!(
            dynamic_to_json(&Dynamic::from_blob(blob)),
            Ok(json!("AQID"))
        );
        assert!(dynamic_to_json(&Dynamic::from_float(FLOAT::NAN)).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut value = Dynamic::UNIT;
        for _ in 0..(MAX_JSON_DEPTH + 2) {
            value = Dynamic::from_array(vec![value]);
        }
        assert!(dynamic_to_json(&value).is_err());
    }
}
