use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use picloud_core::model::{ExecutionSource, KvOp};
use picloud_core::AppId;
use picloud_store::page::Gathered;
use picloud_store::{
    kv_event, prefix_end, EventCause, KvEntry, KvStore, Page, PageRequest, StoreError, StoreResult,
    WriteOutcome,
};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::outbox::emit;
use crate::triggers::kv_targets;
use crate::{col, col_ts, db_err, stored_len, ts, SqliteStore};

fn entry(row: &SqliteRow) -> StoreResult<KvEntry> {
    let value: String = col(row, "value")?;
    Ok(KvEntry {
        collection: col(row, "collection")?,
        key: col(row, "key")?,
        value: serde_json::from_str(&value).map_err(StoreError::other)?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

async fn previous(
    conn: &mut SqliteConnection,
    app: &AppId,
    collection: &str,
    key: &str,
) -> StoreResult<Option<Value>> {
    let prev: Option<String> = sqlx::query_scalar(
        "SELECT value FROM kv_entries WHERE app_id = ? AND collection = ? AND key = ?",
    )
    .bind(app.as_str())
    .bind(collection)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    prev.map(|p| serde_json::from_str(&p).map_err(StoreError::other))
        .transpose()
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn kv_get(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<KvEntry>> {
        let row =
            sqlx::query("SELECT * FROM kv_entries WHERE app_id = ? AND collection = ? AND key = ?")
                .bind(app.as_str())
                .bind(collection)
                .bind(key)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        row.as_ref().map(entry).transpose()
    }

    async fn kv_set(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
        value: &Value,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        let mut tx = self.begin_write().await?;
        let prev = previous(&mut tx, app, collection, key).await?;
        let now = ts(picloud_core::now());
        sqlx::query(
            "INSERT INTO kv_entries (app_id, collection, key, value, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (app_id, collection, key) \
             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(app.as_str())
        .bind(collection)
        .bind(key)
        .bind(value.to_string())
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => db_err(e),
        })?;
        let payload = kv_event(KvOp::Set, collection, key, Some(value), prev.as_ref());
        let targets = kv_targets(&mut tx, app, collection, KvOp::Set, cause.default_retry).await?;
        let mut outcome = emit(&mut tx, app, targets, ExecutionSource::Kv, payload, cause).await?;
        self.commit_queued(tx, !outcome.events.is_empty()).await?;
        outcome.prev = prev;
        Ok(outcome)
    }

    async fn kv_delete(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        let mut tx = self.begin_write().await?;
        let prev = previous(&mut tx, app, collection, key).await?;
        let mut outcome = WriteOutcome::default();
        if let Some(prev) = &prev {
            sqlx::query("DELETE FROM kv_entries WHERE app_id = ? AND collection = ? AND key = ?")
                .bind(app.as_str())
                .bind(collection)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let payload = kv_event(KvOp::Delete, collection, key, None, Some(prev));
            let targets =
                kv_targets(&mut tx, app, collection, KvOp::Delete, cause.default_retry).await?;
            outcome = emit(&mut tx, app, targets, ExecutionSource::Kv, payload, cause).await?;
        }
        self.commit_queued(tx, !outcome.events.is_empty()).await?;
        outcome.prev = prev;
        Ok(outcome)
    }

    async fn kv_list(
        &self,
        app: &AppId,
        collection: &str,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<KvEntry>> {
        let prefix = prefix.unwrap_or("");
        let lower = match page.after.as_deref() {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let strict = page.after.as_deref().is_some_and(|after| after >= prefix);
        let upper = prefix_end(prefix);
        let sql = format!(
            "SELECT * FROM kv_entries WHERE app_id = ? AND collection = ? AND key {} ? \
             AND (? IS NULL OR key < ?) ORDER BY key LIMIT ?",
            if strict { ">" } else { ">=" }
        );
        let rows = sqlx::query(&sql)
            .bind(app.as_str())
            .bind(collection)
            .bind(lower)
            .bind(upper.as_deref())
            .bind(upper.as_deref())
            .bind(page.fetch_limit())
            .fetch(&self.reader)
            .map_err(db_err);
        let items = Gathered::read(rows, |row| stored_len(row, "value"), entry).await?;
        Ok(Page::from_gathered(items, page, |e| e.key.as_str()))
    }
}
