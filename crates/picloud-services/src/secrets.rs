//! `secrets::{get, set, delete, list}` and the admin API's secrets: values sealed under
//! the app's data key (envelope encryption, `picloud_core::envelope`) before they reach
//! the store, opened only here.
//!
//! No error of this service carries a value: messages name the secret at most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use picloud_core::access::Capability;
use picloud_core::envelope::{
    data_key_binding, secret_binding, DataKey, Keyring, DATA_KEY_MAX_USES,
};
use picloud_core::AppId;
use picloud_store::secrets::{KEY_CHECK_META, PURPOSE_SECRETS};
use picloud_store::{DataKeyRow, SecretMeta, Store, StoreError};
use serde_json::Value;

use crate::{CallContext, ServiceError, ServiceResult};

/// Longest secret name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Most secrets one listing returns (an app's secrets are few; this bounds a read).
pub const MAX_LISTED: u32 = 1000;
/// Unwrapped data keys kept in memory; past it the cache starts over.
const CACHED_KEYS: usize = 1024;

/// Secret names: 1 to 128 letters, digits, `_`, `-` or `.`, starting with a letter or
/// `_` (so a name reads like an environment variable: `STRIPE_KEY`, `smtp.password`).
pub fn validate_name(name: &str) -> ServiceResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        // The name is not the value; still, a refused name is shown only by length
        // and never echoed, since callers do paste values into the wrong argument.
        Err(ServiceError::Invalid(format!(
            "invalid secret name ({} bytes): use 1 to {MAX_NAME_BYTES} letters, digits, \
             '_', '-' or '.', starting with a letter or '_'",
            name.len()
        )))
    }
}

pub struct SecretsService {
    store: Arc<dyn Store>,
    keys: Arc<Keyring>,
    max_value_bytes: usize,
    /// Data keys already unwrapped, by id. A rotation re-wraps a data key without
    /// changing it, so entries never go stale; a deleted app's keys just age out.
    cache: Mutex<HashMap<String, DataKey>>,
}

impl SecretsService {
    pub fn new(store: Arc<dyn Store>, keys: Arc<Keyring>, max_value_bytes: usize) -> Self {
        Self {
            store,
            keys,
            max_value_bytes,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The largest value, as JSON text (`PICLOUD_SECRET_MAX_VALUE_BYTES`).
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    fn cached(&self, id: &str) -> Option<DataKey> {
        self.cache.lock().ok()?.get(id).cloned()
    }

    fn remember(&self, id: &str, key: &DataKey) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHED_KEYS {
                cache.clear();
            }
            cache.insert(id.to_owned(), key.clone());
        }
    }

    /// Opens a stored data key with whichever held master key wrapped it.
    fn unwrap_row(&self, row: &DataKeyRow) -> ServiceResult<DataKey> {
        let owner = row.app_id.as_ref().map(AppId::as_str).unwrap_or("");
        let aad = data_key_binding(&row.id, owner, &row.purpose);
        for wrapped in std::iter::once(&row.wrapped).chain(row.spare.as_ref()) {
            if let Some(master) = self.keys.key_for(&wrapped.master_key_id) {
                if let Ok(key) = DataKey::unwrap(master, &aad, wrapped) {
                    return Ok(key);
                }
            }
        }
        tracing::error!(
            data_key = %row.id,
            "no configured master key opens this data key (wrong key, or tampered data)"
        );
        Err(ServiceError::Undecryptable)
    }

    async fn data_key(&self, id: &str) -> ServiceResult<DataKey> {
        if let Some(key) = self.cached(id) {
            return Ok(key);
        }
        let row = self.store.data_key(id).await.map_err(|e| match e {
            // A secret row names its data key by foreign key: a missing one is damage.
            StoreError::NotFound => ServiceError::Undecryptable,
            other => ServiceError::store(other, "data key"),
        })?;
        let key = self.unwrap_row(&row)?;
        self.remember(id, &key);
        Ok(key)
    }

    /// The app's data key for new values: the newest one under its use limit, or a
    /// fresh one wrapped by every master key this process holds.
    async fn current_key(&self, app: &AppId) -> ServiceResult<(String, DataKey)> {
        let found = self
            .store
            .current_data_key(app, PURPOSE_SECRETS, DATA_KEY_MAX_USES)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        if let Some(row) = found {
            let key = match self.cached(&row.id) {
                Some(key) => key,
                None => {
                    let key = self.unwrap_row(&row)?;
                    self.remember(&row.id, &key);
                    key
                }
            };
            return Ok((row.id, key));
        }
        self.new_key(app).await
    }

    async fn new_key(&self, app: &AppId) -> ServiceResult<(String, DataKey)> {
        let check = self
            .store
            .get_meta(KEY_CHECK_META)
            .await
            .map_err(|e| ServiceError::store(e, "key check"))?
            .unwrap_or_default();
        // The data is under the key the check value names; a process holding only the
        // other key (the old one, after a rotation flipped) must not wrap new data
        // keys the instance's key cannot open.
        let Some(primary) = self.keys.matching_check(&check) else {
            tracing::error!(
                "the master key was rotated; restart this server with the new \
                 PICLOUD_SECRET_KEY before secrets can be written"
            );
            return Err(ServiceError::Undecryptable);
        };
        let id = picloud_core::crypto::generate_token("dk_");
        let key = DataKey::generate();
        let aad = data_key_binding(&id, app.as_str(), PURPOSE_SECRETS);
        let row = DataKeyRow {
            id: id.clone(),
            app_id: Some(app.clone()),
            purpose: PURPOSE_SECRETS.to_owned(),
            wrapped: key.wrap(primary, &aad),
            spare: self.keys.other_than(primary).map(|k| key.wrap(k, &aad)),
            uses: 0,
            created_at: picloud_core::now(),
        };
        self.store
            .insert_data_key(&row, &check)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    tracing::error!("the master key changed while a data key was made");
                    ServiceError::Undecryptable
                }
                other => ServiceError::store(other, "app"),
            })?;
        self.remember(&id, &key);
        Ok((id, key))
    }

    fn encode(&self, value: &Value) -> ServiceResult<Vec<u8>> {
        if value.is_null() {
            return Err(ServiceError::Invalid(
                "a secret cannot be () / null; use delete".into(),
            ));
        }
        let size = crate::json_len(value);
        if size > self.max_value_bytes {
            return Err(ServiceError::TooLarge(format!(
                "the value is {size} bytes as JSON; the limit is {} \
                 (PICLOUD_SECRET_MAX_VALUE_BYTES)",
                self.max_value_bytes
            )));
        }
        serde_json::to_vec(value)
            .map_err(|_| ServiceError::Invalid("the value has no JSON form".into()))
    }

    // --- what scripts call (capabilities checked for a caller) ---

    pub async fn get(&self, ctx: &CallContext, name: &str) -> ServiceResult<Option<Value>> {
        ctx.require(Capability::DataRead)?;
        self.reveal(&ctx.app_id, name).await
    }

    /// Stores the value; `true` when the secret was created.
    pub async fn set(&self, ctx: &CallContext, name: &str, value: &Value) -> ServiceResult<bool> {
        ctx.require(Capability::DataWrite)?;
        self.put(&ctx.app_id, name, value).await
    }

    pub async fn delete(&self, ctx: &CallContext, name: &str) -> ServiceResult<bool> {
        ctx.require(Capability::DataWrite)?;
        self.remove(&ctx.app_id, name).await
    }

    pub async fn list(&self, ctx: &CallContext) -> ServiceResult<Vec<String>> {
        ctx.require(Capability::DataRead)?;
        Ok(self
            .list_meta(&ctx.app_id)
            .await?
            .into_iter()
            .map(|m| m.name)
            .collect())
    }

    // --- the admin API (its handlers check the caller's rights) ---

    /// Names and times, never values.
    pub async fn list_meta(&self, app: &AppId) -> ServiceResult<Vec<SecretMeta>> {
        self.store
            .secret_list(app, MAX_LISTED)
            .await
            .map_err(|e| ServiceError::store(e, "app"))
    }

    /// One secret's name and times, or `None`; never its value.
    pub async fn meta(&self, app: &AppId, name: &str) -> ServiceResult<Option<SecretMeta>> {
        validate_name(name)?;
        let row = self
            .store
            .secret_get(app, name)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?;
        Ok(row.map(|r| SecretMeta {
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }))
    }

    /// The secret's value, or `None`.
    pub async fn reveal(&self, app: &AppId, name: &str) -> ServiceResult<Option<Value>> {
        validate_name(name)?;
        let Some(row) = self
            .store
            .secret_get(app, name)
            .await
            .map_err(|e| ServiceError::store(e, "app"))?
        else {
            return Ok(None);
        };
        let key = self.data_key(&row.data_key_id).await?;
        let aad = secret_binding(app.as_str(), name, &row.data_key_id);
        let plain = key.open(&aad, &row.sealed).map_err(|_| {
            tracing::error!(app = %app, secret = name, "a stored secret does not open");
            ServiceError::Undecryptable
        })?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| ServiceError::Undecryptable)
    }

    /// Seals and stores the value; `true` when the secret was created.
    pub async fn put(&self, app: &AppId, name: &str, value: &Value) -> ServiceResult<bool> {
        validate_name(name)?;
        let plain = self.encode(value)?;
        let (key_id, key) = self.current_key(app).await?;
        let sealed = key.seal(&secret_binding(app.as_str(), name, &key_id), &plain);
        self.store
            .secret_put(app, name, &sealed, &key_id)
            .await
            .map_err(|e| ServiceError::store(e, "app"))
    }

    /// `true` when there was one.
    pub async fn remove(&self, app: &AppId, name: &str) -> ServiceResult<bool> {
        validate_name(name)?;
        self.store
            .secret_delete(app, name)
            .await
            .map_err(|e| ServiceError::store(e, "app"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "A",
            "_x",
            "STRIPE_KEY",
            "smtp.password",
            "a-b",
            &"k".repeat(128),
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            ".x",
            "-x",
            "a b",
            "a/b",
            "é",
            &"k".repeat(129),
            "a\0",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        // A refused name is not echoed.
        let Err(e) = validate_name("hunter2 secret!") else {
            unreachable!()
        };
        assert!(!e.to_string().contains("hunter2"));
    }
}
