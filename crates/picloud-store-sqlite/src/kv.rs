use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use picloud_core::AppId;
use picloud_store::page::Gathered;
use picloud_store::{
    prefix_end, EventCause, KvEntry, KvStore, Page, PageRequest, StoreError, StoreResult,
    WriteOutcome,
};
use rusqlite::OptionalExtension as _;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;

use crate::batch::WriteOp;
use crate::direct::direct_err;
use crate::{col, col_ts, db_err, parse_ts, stored_len, SqliteStore};

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

/// A KV entry on a direct connection (`direct.rs`).
fn direct_entry(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn kv_get(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<KvEntry>> {
        let row = self.direct.read(|conn| {
            conn.prepare_cached(
                "SELECT collection, key, value, created_at, updated_at FROM kv_entries \
                 WHERE app_id = ?1 AND collection = ?2 AND key = ?3",
            )
            .and_then(|mut s| {
                s.query_row(
                    rusqlite::params![app.as_str(), collection, key],
                    direct_entry,
                )
                .optional()
            })
            .map_err(direct_err)
        })?;
        let Some((collection, key, value, created_at, updated_at)) = row else {
            return Ok(None);
        };
        Ok(Some(KvEntry {
            collection,
            key,
            value: serde_json::from_str(&value).map_err(StoreError::other)?,
            created_at: parse_ts(&created_at)?,
            updated_at: parse_ts(&updated_at)?,
        }))
    }

    async fn kv_set(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
        value: &Value,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        let op = WriteOp::KvSet {
            app: app.clone(),
            collection: collection.to_owned(),
            key: key.to_owned(),
            text: value.to_string(),
            cause: *cause,
        };
        self.batch.write(op).await
    }

    async fn kv_delete(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        let op = WriteOp::KvDelete {
            app: app.clone(),
            collection: collection.to_owned(),
            key: key.to_owned(),
            cause: *cause,
        };
        self.batch.write(op).await
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
