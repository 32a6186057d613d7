//! `kv::collection(name).{get,set,has,delete,list}`.

use std::sync::Arc;

use picloud_core::access::Capability;
use picloud_core::config::EventsConfig;
use picloud_store::{EventCause, PageRequest, RetryPolicy, Store};
use serde_json::Value;

use crate::{default_retry, CallContext, ServiceError, ServiceResult};

/// Longest key, in bytes (SCRIPTING.md).
pub const MAX_KEY_BYTES: usize = 512;
const MAX_COLLECTION_BYTES: usize = 128;

/// One page of a listing: `(key, value)` pairs and the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct KvPage {
    pub items: Vec<(String, Value)>,
    pub cursor: Option<String>,
}

pub struct KvService {
    store: Arc<dyn Store>,
    max_value_bytes: usize,
    max_depth: u32,
    default_retry: RetryPolicy,
}

/// Collection names: letters, digits, `_`, `-`, `.`; 1 to 128 bytes.
pub fn validate_collection(name: &str) -> ServiceResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_COLLECTION_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "invalid collection name {name:?}: use 1 to {MAX_COLLECTION_BYTES} letters, digits, '_', '-' or '.'"
        )))
    }
}

fn validate_key(key: &str) -> ServiceResult<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ServiceError::Invalid(format!(
            "keys are non-empty strings of at most {MAX_KEY_BYTES} bytes"
        )));
    }
    if key.contains('\0') {
        return Err(ServiceError::Invalid(
            "keys cannot contain NUL characters".into(),
        ));
    }
    Ok(())
}

impl KvService {
    /// Checks a collection name before any call is made (`kv::collection(name)`).
    pub fn validate_collection_name(name: &str) -> ServiceResult<()> {
        validate_collection(name)
    }

    pub fn new(store: Arc<dyn Store>, config: &EventsConfig) -> Self {
        Self {
            store,
            max_value_bytes: config.kv_max_value_bytes,
            max_depth: config.max_trigger_depth,
            default_retry: default_retry(config),
        }
    }

    /// The largest value, as JSON text (`PICLOUD_KV_MAX_VALUE_BYTES`).
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// Events caused deeper than this are not emitted.
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }

    fn cause(&self, ctx: &CallContext) -> EventCause {
        EventCause {
            depth: ctx.depth,
            max_depth: self.max_depth,
            default_retry: self.default_retry,
        }
    }

    pub async fn get(
        &self,
        ctx: &CallContext,
        collection: &str,
        key: &str,
    ) -> ServiceResult<Option<Value>> {
        ctx.require(Capability::DataRead)?;
        validate_collection(collection)?;
        validate_key(key)?;
        let entry = self
            .store
            .kv_get(&ctx.app_id, collection, key)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok(entry.map(|e| e.value))
    }

    /// Writes the value; returns how many trigger events were skipped at the depth
    /// limit (to be logged by the caller).
    pub async fn set(
        &self,
        ctx: &CallContext,
        collection: &str,
        key: &str,
        value: &Value,
    ) -> ServiceResult<usize> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        validate_key(key)?;
        let size = crate::json_len(value);
        if size > self.max_value_bytes {
            return Err(ServiceError::Invalid(format!(
                "value is {size} bytes as JSON; the limit is {} (PICLOUD_KV_MAX_VALUE_BYTES)",
                self.max_value_bytes
            )));
        }
        let outcome = self
            .store
            .kv_set(&ctx.app_id, collection, key, value, &self.cause(ctx))
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok(outcome.skipped_for_depth)
    }

    pub async fn has(&self, ctx: &CallContext, collection: &str, key: &str) -> ServiceResult<bool> {
        Ok(self.get(ctx, collection, key).await?.is_some())
    }

    /// Deletes the entry; returns whether it was there, and events skipped for depth.
    pub async fn delete(
        &self,
        ctx: &CallContext,
        collection: &str,
        key: &str,
    ) -> ServiceResult<(bool, usize)> {
        ctx.require(Capability::DataWrite)?;
        validate_collection(collection)?;
        validate_key(key)?;
        let outcome = self
            .store
            .kv_delete(&ctx.app_id, collection, key, &self.cause(ctx))
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok((outcome.prev.is_some(), outcome.skipped_for_depth))
    }

    pub async fn list(
        &self,
        ctx: &CallContext,
        collection: &str,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> ServiceResult<KvPage> {
        ctx.require(Capability::DataRead)?;
        validate_collection(collection)?;
        let page =
            PageRequest::parse(cursor, limit).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let page = self
            .store
            .kv_list(&ctx.app_id, collection, prefix, &page)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok(KvPage {
            cursor: page.next_cursor.map(|c| c.as_str().to_owned()),
            items: page.items.into_iter().map(|e| (e.key, e.value)).collect(),
        })
    }
}
