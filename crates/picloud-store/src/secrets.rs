//! App secrets and the data keys that seal them (envelope encryption, see
//! `picloud_core::envelope`). The store keeps only ciphertext: sealing and opening
//! happen above it, in the secrets service, which holds the master key.
//!
//! A data key row carries two wrapping slots: the one the instance's current master
//! key made, and a spare one a rotation fills with the new key's wrapping before it
//! swaps the two (see `docs/operations.md`, "Rotating the master key"). Secret writes
//! emit no trigger events and announce no changes: nothing caches them by row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::envelope::{Sealed, Wrapped};
use picloud_core::AppId;

use crate::StoreResult;

/// The meta key under which the master key's check value is stored.
pub const KEY_CHECK_META: &str = "secret_key_check";

/// The purpose of the data keys that seal app secrets.
pub const PURPOSE_SECRETS: &str = "secrets";

/// A data key as stored: wrapped, never in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRow {
    pub id: String,
    /// The app whose values it seals (deleted with it); `None` for instance-wide
    /// purposes.
    pub app_id: Option<AppId>,
    pub purpose: String,
    /// The wrapping made by the master key the data currently is under.
    pub wrapped: Wrapped,
    /// A second wrapping: the new key's while a rotation is under way, the old key's
    /// after it swapped the slots, until `forget_spare_wrappings`.
    pub spare: Option<Wrapped>,
    /// Values sealed with it so far (retired at `DATA_KEY_MAX_USES`).
    pub uses: u64,
    pub created_at: DateTime<Utc>,
}

/// A stored secret: its sealed value and the data key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub name: String,
    pub sealed: Sealed,
    pub data_key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What listings show: never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a rotation's flip found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    /// The slots were swapped and the check value now names the new key.
    Flipped,
    /// Some data key has no wrapping by the new key yet (a server made one meanwhile):
    /// nothing changed; re-wrap and try again.
    Incomplete,
    /// The stored check value is neither the old key's nor the new key's.
    WrongKey,
    /// The check value already names the new key: an earlier run flipped.
    AlreadyFlipped,
}

#[async_trait]
pub trait SecretStore {
    /// `NotFound` if there is no such data key.
    async fn data_key(&self, id: &str) -> StoreResult<DataKeyRow>;
    /// The newest data key of the app and purpose that has sealed fewer than
    /// `max_uses` values.
    async fn current_data_key(
        &self,
        app: &AppId,
        purpose: &str,
        max_uses: u64,
    ) -> StoreResult<Option<DataKeyRow>>;
    /// Inserts the key only while the stored check value is `check` (the key the
    /// `wrapped` slot is under); `Conflict` if it no longer is (a rotation flipped
    /// meanwhile), `NotFound` if the app is gone. Serialised with
    /// [`SecretStore::flip_master_key`], so no data key lacking the new key's
    /// wrapping can slip in after a flip checked there was none.
    async fn insert_data_key(&self, key: &DataKeyRow, check: &str) -> StoreResult<()>;

    async fn secret_get(&self, app: &AppId, name: &str) -> StoreResult<Option<SecretRow>>;
    /// Creates or replaces the secret and counts one use of its data key, in one
    /// transaction; `true` when it was created. `NotFound` if the app is gone.
    async fn secret_put(
        &self,
        app: &AppId,
        name: &str,
        sealed: &Sealed,
        data_key_id: &str,
    ) -> StoreResult<bool>;
    /// `true` when there was one.
    async fn secret_delete(&self, app: &AppId, name: &str) -> StoreResult<bool>;
    /// Every secret of the app, by name (at most `limit`).
    async fn secret_list(&self, app: &AppId, limit: u32) -> StoreResult<Vec<SecretMeta>>;

    /// Up to `limit` data keys that `target` wrapped in neither slot, by id.
    async fn data_keys_to_rewrap(&self, target: &str, limit: u32) -> StoreResult<Vec<DataKeyRow>>;
    /// Puts `spare` in the spare slot of the key, if its current wrapping is still
    /// `expected` (idempotent: a second run writes the same kind of thing); whether it
    /// was written.
    async fn set_spare_wrapping(
        &self,
        id: &str,
        expected: &Wrapped,
        spare: &Wrapped,
    ) -> StoreResult<bool>;
    /// Data keys with an id after `after`, by id: the verify pass.
    async fn data_keys_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<DataKeyRow>>;
    /// In one transaction: if the check value is `old_check` and every data key has a
    /// wrapping by `new_key_id`, swap the slots of those whose current one is not by it
    /// and store `new_check`.
    async fn flip_master_key(
        &self,
        old_check: &str,
        new_check: &str,
        new_key_id: &str,
    ) -> StoreResult<Flip>;
    /// Clears spare wrappings not made by `keep_key_id`; how many.
    async fn forget_spare_wrappings(&self, keep_key_id: &str) -> StoreResult<u64>;
}
