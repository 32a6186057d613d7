//! `picloud rotate-key`: moves every data key from the master key in
//! `PICLOUD_SECRET_KEY` to the one in `PICLOUD_NEW_SECRET_KEY`, while servers keep
//! serving. Values are never touched: only the data keys' wrappings change.
//!
//! 1. **Re-wrap**, in batches: each data key not yet wrapped by the new key gets the
//!    new key's wrapping in its spare slot, by a compare-and-set on its current
//!    wrapping. The rows themselves are the progress record: a run killed at any point
//!    resumes with the keys still lacking the new wrapping, and re-doing a row is
//!    harmless.
//! 2. **Verify**: every data key must open with the old key and with the new one, to
//!    the same key. A wrapping that does not is made again.
//! 3. **Flip**, in one transaction: if every data key has the new wrapping (a server
//!    may have made a data key meanwhile; then back to 1), the slots swap and the check
//!    value becomes the new key's. The old wrapping stays in the spare slot, so servers
//!    still holding only the old key keep reading until they are restarted with the new
//!    one; `picloud rotate-key --forget-old` then clears it.

use picloud_core::crypto::SecretKey;
use picloud_core::envelope::{data_key_binding, DataKey, Wrapped};
use picloud_store::secrets::KEY_CHECK_META;
use picloud_store::{DataKeyRow, Flip, Store, StoreError};

/// How a rotation runs.
#[derive(Debug, Clone, Copy)]
pub struct RotateOptions {
    /// Data keys re-wrapped per batch.
    pub batch_size: u32,
    /// Stop (as a crash would) after this many re-wrap batches: for tests.
    pub stop_after_batches: Option<u32>,
}

impl Default for RotateOptions {
    fn default() -> Self {
        Self {
            batch_size: 100,
            stop_after_batches: None,
        }
    }
}

/// How a rotation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The check value names the new key; every data key opens with it.
    Done { rewrapped: u64, verified: u64 },
    /// Stopped by [`RotateOptions::stop_after_batches`]; run again to finish.
    Stopped { rewrapped: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("PICLOUD_NEW_SECRET_KEY: is the same key as PICLOUD_SECRET_KEY")]
    SameKey,
    #[error(
        "PICLOUD_SECRET_KEY: is neither the key this instance's data is under nor the new \
         key; nothing was changed"
    )]
    WrongKey,
    #[error("data key {0}: does not open with PICLOUD_SECRET_KEY (wrong key, or damaged)")]
    Undecryptable(String),
    #[error("data key {0}: the new key's wrapping does not verify")]
    VerifyFailed(String),
    #[error("data keys kept being created during the rotation; run it again")]
    Unsettled,
}

fn binding(row: &DataKeyRow) -> Vec<u8> {
    let owner = row.app_id.as_ref().map_or("", |a| a.as_str());
    data_key_binding(&row.id, owner, &row.purpose)
}

/// The row's wrapping by `key`, from whichever slot holds it.
fn wrapping_by<'a>(row: &'a DataKeyRow, key: &SecretKey) -> Option<&'a Wrapped> {
    let id = key.key_id();
    std::iter::once(&row.wrapped)
        .chain(row.spare.as_ref())
        .find(|w| w.master_key_id == id)
}

fn open(row: &DataKeyRow, key: &SecretKey) -> Option<DataKey> {
    DataKey::unwrap(key, &binding(row), wrapping_by(row, key)?).ok()
}

/// Runs (or resumes) a rotation from `old` to `new`.
pub async fn rotate_key(
    store: &dyn Store,
    old: &SecretKey,
    new: &SecretKey,
    options: RotateOptions,
) -> Result<RotateOutcome, RotateError> {
    if old.key_id() == new.key_id() {
        return Err(RotateError::SameKey);
    }
    let check = store.get_meta(KEY_CHECK_META).await?.unwrap_or_default();
    if new.matches_check_value(&check) {
        // An earlier run flipped: only the verify pass is left to show.
        let verified = verify(store, None, new).await?;
        return Ok(RotateOutcome::Done {
            rewrapped: 0,
            verified,
        });
    }
    if !old.matches_check_value(&check) {
        return Err(RotateError::WrongKey);
    }
    let new_id = new.key_id();
    let mut rewrapped = 0u64;
    let mut batches = 0u32;
    // Each round re-wraps what a server created since the last one; a few rounds
    // settle unless data keys are being created continuously.
    for _round in 0..10 {
        loop {
            let batch = store
                .data_keys_to_rewrap(&new_id, options.batch_size.max(1))
                .await?;
            if batch.is_empty() {
                break;
            }
            for row in &batch {
                let key =
                    open(row, old).ok_or_else(|| RotateError::Undecryptable(row.id.clone()))?;
                if store
                    .set_spare_wrapping(&row.id, &row.wrapped, &key.wrap(new, &binding(row)))
                    .await?
                {
                    rewrapped += 1;
                }
            }
            batches += 1;
            tracing::info!(batches, rewrapped, "re-wrapped a batch of data keys");
            if options.stop_after_batches == Some(batches) {
                return Ok(RotateOutcome::Stopped { rewrapped });
            }
        }
        let verified = verify(store, Some(old), new).await?;
        match store
            .flip_master_key(&old.check_value(), &new.check_value(), &new_id)
            .await?
        {
            Flip::Flipped | Flip::AlreadyFlipped => {
                return Ok(RotateOutcome::Done {
                    rewrapped,
                    verified,
                })
            }
            Flip::Incomplete => continue,
            Flip::WrongKey => return Err(RotateError::WrongKey),
        }
    }
    Err(RotateError::Unsettled)
}

/// Every data key opens with `new` (and, before the flip, with `old` to the same key);
/// a new wrapping that does not is made again from the old one. How many were checked.
async fn verify(
    store: &dyn Store,
    old: Option<&SecretKey>,
    new: &SecretKey,
) -> Result<u64, RotateError> {
    let mut after: Option<String> = None;
    let mut checked = 0u64;
    loop {
        let page = store.data_keys_after(after.as_deref(), 500).await?;
        let Some(last) = page.last() else {
            return Ok(checked);
        };
        after = Some(last.id.clone());
        for row in &page {
            let Some(old) = old else {
                open(row, new).ok_or_else(|| RotateError::VerifyFailed(row.id.clone()))?;
                checked += 1;
                continue;
            };
            // Before the flip every data key is under the old key (inserts are guarded
            // by its check value): one that does not open is damaged.
            let original =
                open(row, old).ok_or_else(|| RotateError::Undecryptable(row.id.clone()))?;
            let good = open(row, new).is_some_and(|k| k.same_as(&original));
            if !good {
                let fresh = original.wrap(new, &binding(row));
                store
                    .set_spare_wrapping(&row.id, &row.wrapped, &fresh)
                    .await?;
                let again = store.data_key(&row.id).await?;
                if !open(&again, new).is_some_and(|k| k.same_as(&original)) {
                    return Err(RotateError::VerifyFailed(row.id.clone()));
                }
            }
            checked += 1;
        }
    }
}

/// After every server runs with the new key: clears the old key's wrappings, so the
/// old key opens nothing any more. How many were cleared.
pub async fn forget_old(store: &dyn Store, current: &SecretKey) -> Result<u64, RotateError> {
    let check = store.get_meta(KEY_CHECK_META).await?.unwrap_or_default();
    if !current.matches_check_value(&check) {
        return Err(RotateError::WrongKey);
    }
    Ok(store.forget_spare_wrappings(&current.key_id()).await?)
}
