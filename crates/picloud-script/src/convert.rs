//! Conversions between script values and JSON.
//!
//! The rules are ours, not serde's defaults: integers stay integers, Blobs become
//! base64 strings, non-finite floats and opaque values are refused with a message
//! instead of silently turning into something else. They live in one `Serialize`
//! impl, used for `Value`s and for JSON text alike.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rhai::{Array, Blob, Dynamic, Map, FLOAT, INT};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

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

/// A script value seen through the JSON rules above, for any serde serializer. Its
/// text is only ever written through `crate::bounded`, within a limit.
pub(crate) struct AsJson<'a> {
    value: &'a Dynamic,
    depth: usize,
}

impl<'a> AsJson<'a> {
    pub(crate) fn new(value: &'a Dynamic) -> Self {
        Self { value, depth: 0 }
    }

    fn child(&self, value: &'a Dynamic) -> Self {
        Self {
            value,
            depth: self.depth + 1,
        }
    }
}

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        let value = self.value;
        if self.depth > MAX_JSON_DEPTH {
            return Err(S::Error::custom(format!(
                "value is nested deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        if value.is_unit() {
            return out.serialize_unit();
        }
        if let Ok(b) = value.as_bool() {
            return out.serialize_bool(b);
        }
        if let Ok(i) = value.as_int() {
            return out.serialize_i64(i);
        }
        if let Ok(f) = value.as_float() {
            if !f.is_finite() {
                return Err(S::Error::custom(format!(
                    "{f} has no JSON form (NaN and infinities do not)"
                )));
            }
            return out.serialize_f64(f);
        }
        if let Ok(c) = value.as_char() {
            return out.serialize_char(c);
        }
        if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
            return out.serialize_str(&s);
        }
        if let Some(blob) = value.read_lock::<Blob>() {
            return out.serialize_str(&STANDARD.encode(&*blob));
        }
        if let Some(array) = value.read_lock::<Array>() {
            let mut seq = out.serialize_seq(Some(array.len()))?;
            for item in array.iter() {
                seq.serialize_element(&self.child(item))?;
            }
            return seq.end();
        }
        if let Some(map) = value.read_lock::<Map>() {
            let mut object = out.serialize_map(Some(map.len()))?;
            for (k, v) in map.iter() {
                object.serialize_entry(k.as_str(), &self.child(v))?;
            }
            return object.end();
        }
        // A caught refusal (`catch (e)`) prints as "forbidden: …"; a script that
        // returns or stores it gets that text, not a failed run.
        if let Some(refusal) = value.read_lock::<crate::Forbidden>() {
            return out.serialize_str(&refusal.to_string());
        }
        Err(S::Error::custom(format!(
            "a value of type {} has no JSON form",
            value.type_name()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::{json_bytes, json_value};
    use serde_json::json;

    fn dynamic_to_json(value: &Dynamic) -> Result<Value, crate::bounded::JsonOutError> {
        json_value(value, usize::MAX)
    }

    fn dynamic_to_json_bytes(value: &Dynamic) -> Result<Vec<u8>, crate::bounded::JsonOutError> {
        json_bytes(value, usize::MAX)
    }

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
        assert!(dynamic_to_json_bytes(&Dynamic::from_float(FLOAT::INFINITY)).is_err());
    }

    #[test]
    fn text_and_value_agree() {
        let value = json!({"z": [1, 2.5, "é\n\"", null, {"b": false, "a": 'c'.to_string()}],
                           "a": {}, "m": -7});
        let text = dynamic_to_json_bytes(&json_to_dynamic(&value)).expect("text");
        assert_eq!(serde_json::to_vec(&value).expect("value text"), text);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut value = Dynamic::UNIT;
        for _ in 0..(MAX_JSON_DEPTH + 2) {
            value = Dynamic::from_array(vec![value]);
        }
        assert!(dynamic_to_json(&value).is_err());
        assert!(dynamic_to_json_bytes(&value)
            .is_err_and(|e| e.to_string().contains("nested deeper than 128 levels")));
    }
}
