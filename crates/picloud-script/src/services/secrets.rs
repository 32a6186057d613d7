//! `secrets::{get(name) → value|(), set(name, value), delete(name) → bool,
//! list() → [names]}`.
//!
//! Values keep their type (strings, maps, arrays, numbers, booleans) through JSON. No
//! error raised here carries a value: a size or type refusal says what was wrong, never
//! with what.

use rhai::plugin::*;
use rhai::{Array, Dynamic};

use super::{call, error, limit};
use crate::bounded::JsonOutError;
use crate::convert::json_to_dynamic;

#[export_module]
mod secrets_ns {
    use super::*;

    /// The value of the app's secret `name`, with the type it was stored with; `()` if
    /// there is none.
    #[rhai_fn(return_raw)]
    pub fn get(name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let name = name.to_owned();
        let value = call("secrets", |s, ctx| async move {
            s.secrets.get(&ctx, &name).await
        })?;
        Ok(value.as_ref().map(json_to_dynamic).unwrap_or(Dynamic::UNIT))
    }

    /// Stores `value` (a string, map, array, number or boolean) encrypted as the app's
    /// secret `name`, replacing any earlier value. Fires no trigger.
    #[rhai_fn(return_raw)]
    pub fn set(name: &str, value: Dynamic) -> Result<(), Box<EvalAltResult>> {
        let cap = limit("secrets", |s| s.secrets.max_value_bytes())?;
        // Measured and converted here so an oversized value is refused before it is
        // copied; the refusal names the limit, never the value.
        let json = crate::bounded::json_value(&value, cap).map_err(|e| match e {
            JsonOutError::TooLarge(cap) => error(
                "secrets",
                format!(
                    "the value is larger than the limit of {cap} bytes as JSON \
                     (PICLOUD_SECRET_MAX_VALUE_BYTES)"
                ),
            ),
            e @ JsonOutError::TooDeep => error("secrets", format!("the value is refused: {e}")),
            JsonOutError::NotJson(_) => error(
                "secrets",
                format!("a value of type {} cannot be stored", value.type_name()),
            ),
        })?;
        let name = name.to_owned();
        call("secrets", |s, ctx| async move {
            s.secrets.set(&ctx, &name, &json).await
        })?;
        Ok(())
    }

    /// Deletes the secret `name`; whether there was one.
    #[rhai_fn(return_raw)]
    pub fn delete(name: &str) -> Result<bool, Box<EvalAltResult>> {
        let name = name.to_owned();
        call("secrets", |s, ctx| async move {
            s.secrets.delete(&ctx, &name).await
        })
    }

    /// The names of the app's secrets, sorted (never their values).
    #[rhai_fn(return_raw)]
    pub fn list() -> Result<Array, Box<EvalAltResult>> {
        let names = call(
            "secrets",
            |s, ctx| async move { s.secrets.list(&ctx).await },
        )?;
        Ok(names.into_iter().map(Dynamic::from).collect())
    }
}

pub(crate) fn module() -> Module {
    exported_module!(secrets_ns)
}
