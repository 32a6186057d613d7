//! `kv::collection(name)` and the methods of the handle it returns.

use rhai::plugin::*;
use rhai::{Array, Dynamic, ImmutableString, Map};

use super::{call, error, note_skipped, to_json, PageOptions};
use crate::convert::json_to_dynamic;

/// A handle on one KV collection of the running app.
#[derive(Debug, Clone)]
pub struct KvCollection {
    pub(crate) name: ImmutableString,
}

/// `#{prefix?, cursor?, limit?}` of `list`.
fn list_options(options: &Map) -> Result<(Option<String>, PageOptions), Box<EvalAltResult>> {
    let mut prefix = None;
    let mut page = PageOptions::default();
    for (key, value) in options {
        if page.take("kv", key, value)? {
            continue;
        }
        match key.as_str() {
            "prefix" => {
                prefix = Some(
                    value
                        .clone()
                        .into_string()
                        .map_err(|_| error("kv", "prefix must be a string"))?,
                )
            }
            other => return Err(error("kv", format!("unknown list option {other:?}"))),
        }
    }
    Ok((prefix, page))
}

#[export_module]
mod kv_ns {
    use super::*;

    /// A handle on the collection `name` of this app (letters, digits, `_`, `-`, `.`).
    #[rhai_fn(return_raw)]
    pub fn collection(name: ImmutableString) -> Result<KvCollection, Box<EvalAltResult>> {
        picloud_services::KvService::validate_collection_name(&name).map_err(|e| error("kv", e))?;
        Ok(KvCollection { name })
    }

    /// The value stored under `key`, or `()`.
    #[rhai_fn(global, return_raw)]
    pub fn get(coll: KvCollection, key: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let name = coll.name.clone();
        let key = key.to_owned();
        let value = call(
            "kv",
            |s, ctx| async move { s.kv.get(&ctx, &name, &key).await },
        )?;
        Ok(value.as_ref().map(json_to_dynamic).unwrap_or(Dynamic::UNIT))
    }

    /// Stores `value` (any JSON-able value) under `key`; triggers on the collection fire.
    #[rhai_fn(global, return_raw)]
    pub fn set(coll: KvCollection, key: &str, value: Dynamic) -> Result<(), Box<EvalAltResult>> {
        let json = to_json(
            "kv",
            "value",
            &value,
            (|s| s.kv.max_value_bytes(), "PICLOUD_KV_MAX_VALUE_BYTES"),
        )?;
        let name = coll.name.clone();
        let key = key.to_owned();
        let skipped = call("kv", |s, ctx| async move {
            s.kv.set(&ctx, &name, &key, &json).await
        })?;
        note_skipped("kv", skipped);
        Ok(())
    }

    /// Whether `key` has a value.
    #[rhai_fn(global, return_raw)]
    pub fn has(coll: KvCollection, key: &str) -> Result<bool, Box<EvalAltResult>> {
        let name = coll.name.clone();
        let key = key.to_owned();
        call(
            "kv",
            |s, ctx| async move { s.kv.has(&ctx, &name, &key).await },
        )
    }

    /// Deletes `key`; returns whether it had a value.
    #[rhai_fn(global, return_raw)]
    pub fn delete(coll: KvCollection, key: &str) -> Result<bool, Box<EvalAltResult>> {
        let name = coll.name.clone();
        let key = key.to_owned();
        let (was_present, skipped) = call("kv", |s, ctx| async move {
            s.kv.delete(&ctx, &name, &key).await
        })?;
        note_skipped("kv", skipped);
        Ok(was_present)
    }

    /// The first page of entries in key order: `#{items: [#{key, value}], cursor}`.
    #[rhai_fn(global, name = "list", return_raw)]
    pub fn list_all(coll: KvCollection) -> Result<Map, Box<EvalAltResult>> {
        list(coll, Map::new())
    }

    /// Entries in key order, with `#{prefix?, cursor?, limit?}`; `cursor` is `()` on the
    /// last page.
    #[rhai_fn(global, return_raw)]
    pub fn list(coll: KvCollection, options: Map) -> Result<Map, Box<EvalAltResult>> {
        let (prefix, PageOptions { cursor, limit }) = list_options(&options)?;
        let name = coll.name.clone();
        let page = call("kv", |s, ctx| async move {
            s.kv.list(&ctx, &name, prefix.as_deref(), cursor.as_deref(), limit)
                .await
        })?;
        let items: Array = page
            .items
            .iter()
            .map(|(key, value)| {
                let mut item = Map::new();
                item.insert("key".into(), Dynamic::from(key.clone()));
                item.insert("value".into(), json_to_dynamic(value));
                Dynamic::from_map(item)
            })
            .collect();
        let mut out = Map::new();
        out.insert("items".into(), Dynamic::from_array(items));
        out.insert(
            "cursor".into(),
            page.cursor.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
        );
        Ok(out)
    }
}

pub(crate) fn module() -> Module {
    exported_module!(kv_ns)
}
