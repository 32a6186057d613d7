//! App secrets (ciphertext only) and the wrapped data keys that seal them.

use async_trait::async_trait;
use picloud_core::envelope::{Sealed, Wrapped};
use picloud_core::AppId;
use picloud_store::secrets::KEY_CHECK_META;
use picloud_store::{
    DataKeyRow, Flip, SecretMeta, SecretRow, SecretStore, StoreError, StoreResult,
};
use sqlx::postgres::PgRow;

use crate::{col, db_err, map_insert_err, PostgresStore};

const KEY_COLUMNS: &str = "id, app_id, purpose, master_key_id, wrap_nonce, wrapped_key, \
     spare_master_key_id, spare_wrap_nonce, spare_wrapped_key, uses, created_at";

fn data_key(row: &PgRow) -> StoreResult<DataKeyRow> {
    let spare_id: Option<String> = col(row, "spare_master_key_id")?;
    let spare_nonce: Option<Vec<u8>> = col(row, "spare_wrap_nonce")?;
    let spare_key: Option<Vec<u8>> = col(row, "spare_wrapped_key")?;
    let uses: i64 = col(row, "uses")?;
    let app: Option<String> = col(row, "app_id")?;
    Ok(DataKeyRow {
        id: col(row, "id")?,
        app_id: app.map(AppId::from_trusted),
        purpose: col(row, "purpose")?,
        wrapped: Wrapped {
            master_key_id: col(row, "master_key_id")?,
            nonce: col(row, "wrap_nonce")?,
            ciphertext: col(row, "wrapped_key")?,
        },
        spare: match (spare_id, spare_nonce, spare_key) {
            (Some(master_key_id), Some(nonce), Some(ciphertext)) => Some(Wrapped {
                master_key_id,
                nonce,
                ciphertext,
            }),
            _ => None,
        },
        uses: u64::try_from(uses).unwrap_or(0),
        created_at: col(row, "created_at")?,
    })
}

#[async_trait]
impl SecretStore for PostgresStore {
    async fn data_key(&self, id: &str) -> StoreResult<DataKeyRow> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM data_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(data_key)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn current_data_key(
        &self,
        app: &AppId,
        purpose: &str,
        max_uses: u64,
    ) -> StoreResult<Option<DataKeyRow>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM data_keys WHERE app_id = $1 AND purpose = $2 AND uses < $3 \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(app.as_str())
        .bind(purpose)
        .bind(i64::try_from(max_uses).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(data_key).transpose()
    }

    async fn insert_data_key(&self, key: &DataKeyRow, check: &str) -> StoreResult<()> {
        // The shared lock on the check value's row orders this insert with a flip
        // (which updates that row first): either the flip waits for this key and then
        // counts it, or this waits for the flip and sees the new check value.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1 FOR SHARE")
                .bind(KEY_CHECK_META)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        if stored.as_deref() != Some(check) {
            return Err(StoreError::Conflict(
                "the master key changed; restart with the new key".into(),
            ));
        }
        let spare = key.spare.as_ref();
        sqlx::query(
            "INSERT INTO data_keys (id, app_id, purpose, master_key_id, wrap_nonce, wrapped_key, \
             spare_master_key_id, spare_wrap_nonce, spare_wrapped_key, uses, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&key.id)
        .bind(key.app_id.as_ref().map(AppId::as_str))
        .bind(&key.purpose)
        .bind(&key.wrapped.master_key_id)
        .bind(&key.wrapped.nonce)
        .bind(&key.wrapped.ciphertext)
        .bind(spare.map(|w| w.master_key_id.as_str()))
        .bind(spare.map(|w| w.nonce.as_slice()))
        .bind(spare.map(|w| w.ciphertext.as_slice()))
        .bind(i64::try_from(key.uses).unwrap_or(i64::MAX))
        .bind(key.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_insert_err(e, "that data key already exists"))?;
        tx.commit().await.map_err(db_err)
    }

    async fn secret_get(&self, app: &AppId, name: &str) -> StoreResult<Option<SecretRow>> {
        let row = sqlx::query(
            "SELECT name, nonce, ciphertext, data_key_id, created_at, updated_at \
             FROM app_secrets WHERE app_id = $1 AND name = $2",
        )
        .bind(app.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|row| {
            Ok(SecretRow {
                name: col(&row, "name")?,
                sealed: Sealed {
                    nonce: col(&row, "nonce")?,
                    ciphertext: col(&row, "ciphertext")?,
                },
                data_key_id: col(&row, "data_key_id")?,
                created_at: col(&row, "created_at")?,
                updated_at: col(&row, "updated_at")?,
            })
        })
        .transpose()
    }

    async fn secret_put(
        &self,
        app: &AppId,
        name: &str,
        sealed: &Sealed,
        data_key_id: &str,
    ) -> StoreResult<bool> {
        let now = picloud_core::now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let created: bool = sqlx::query_scalar(
            "INSERT INTO app_secrets (app_id, name, nonce, ciphertext, data_key_id, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (app_id, name) DO UPDATE SET nonce = excluded.nonce, \
             ciphertext = excluded.ciphertext, data_key_id = excluded.data_key_id, \
             updated_at = excluded.updated_at RETURNING (xmax = 0)",
        )
        .bind(app.as_str())
        .bind(name)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(data_key_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map_insert_err(e, "that secret already exists"))?;
        sqlx::query("UPDATE data_keys SET uses = uses + 1 WHERE id = $1")
            .bind(data_key_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(created)
    }

    async fn secret_delete(&self, app: &AppId, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM app_secrets WHERE app_id = $1 AND name = $2")
            .bind(app.as_str())
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn secret_list(&self, app: &AppId, limit: u32) -> StoreResult<Vec<SecretMeta>> {
        let rows = sqlx::query(
            "SELECT name, created_at, updated_at FROM app_secrets WHERE app_id = $1 \
             ORDER BY name LIMIT $2",
        )
        .bind(app.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok(SecretMeta {
                    name: col(row, "name")?,
                    created_at: col(row, "created_at")?,
                    updated_at: col(row, "updated_at")?,
                })
            })
            .collect()
    }

    async fn data_keys_to_rewrap(&self, target: &str, limit: u32) -> StoreResult<Vec<DataKeyRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM data_keys WHERE master_key_id <> $1 \
             AND (spare_master_key_id IS NULL OR spare_master_key_id <> $2) ORDER BY id LIMIT $3"
        ))
        .bind(target)
        .bind(target)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(data_key).collect()
    }

    async fn set_spare_wrapping(
        &self,
        id: &str,
        expected: &Wrapped,
        spare: &Wrapped,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE data_keys SET spare_master_key_id = $1, spare_wrap_nonce = $2, \
             spare_wrapped_key = $3 WHERE id = $4 AND master_key_id = $5 AND wrapped_key = $6",
        )
        .bind(&spare.master_key_id)
        .bind(&spare.nonce)
        .bind(&spare.ciphertext)
        .bind(id)
        .bind(&expected.master_key_id)
        .bind(&expected.ciphertext)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn data_keys_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<DataKeyRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM data_keys WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(data_key).collect()
    }

    async fn flip_master_key(
        &self,
        old_check: &str,
        new_check: &str,
        new_key_id: &str,
    ) -> StoreResult<Flip> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1 FOR UPDATE")
                .bind(KEY_CHECK_META)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        match stored.as_deref() {
            Some(s) if s == new_check => return Ok(Flip::AlreadyFlipped),
            Some(s) if s == old_check => {}
            _ => return Ok(Flip::WrongKey),
        }
        let missing: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM data_keys WHERE master_key_id <> $1 \
             AND (spare_master_key_id IS NULL OR spare_master_key_id <> $2)",
        )
        .bind(new_key_id)
        .bind(new_key_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if missing > 0 {
            return Ok(Flip::Incomplete);
        }
        // Both sides of each assignment read the row as it was: a swap.
        sqlx::query(
            "UPDATE data_keys SET master_key_id = spare_master_key_id, \
             wrap_nonce = spare_wrap_nonce, wrapped_key = spare_wrapped_key, \
             spare_master_key_id = master_key_id, spare_wrap_nonce = wrap_nonce, \
             spare_wrapped_key = wrapped_key WHERE master_key_id <> $1",
        )
        .bind(new_key_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE meta SET value = $1 WHERE key = $2")
            .bind(new_check)
            .bind(KEY_CHECK_META)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Flip::Flipped)
    }

    async fn forget_spare_wrappings(&self, keep_key_id: &str) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE data_keys SET spare_master_key_id = NULL, spare_wrap_nonce = NULL, \
             spare_wrapped_key = NULL WHERE spare_master_key_id IS NOT NULL \
             AND spare_master_key_id <> $1",
        )
        .bind(keep_key_id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
