//! File metadata rows, their `files` trigger events, and durable publish.

use std::collections::HashSet;

use async_trait::async_trait;
use picloud_core::model::{ExecutionSource, FilesOp};
use picloud_core::{AppId, FileId};
use picloud_store::{
    files_event, pubsub_event, EventCause, FileMeta, FileUpdate, FilesStore, NewFile, Page,
    PageRequest, PubsubStore, StoreError, StoreResult, WriteOutcome,
};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::outbox::emit;
use crate::triggers::{files_targets, pubsub_targets};
use crate::{col, col_ts, db_err, map_err, ts, SqliteStore};

const COLUMNS: &str =
    "id, collection, name, content_type, size, checksum, blob_key, created_at, updated_at";

fn file(row: &SqliteRow) -> StoreResult<FileMeta> {
    let size: i64 = col(row, "size")?;
    Ok(FileMeta {
        id: FileId::from_trusted(col(row, "id")?),
        collection: col(row, "collection")?,
        name: col(row, "name")?,
        content_type: col(row, "content_type")?,
        size: u64::try_from(size).unwrap_or(0),
        checksum: col(row, "checksum")?,
        blob_key: col(row, "blob_key")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn locked(
    conn: &mut SqliteConnection,
    app: &AppId,
    collection: &str,
    id: &FileId,
) -> StoreResult<Option<FileMeta>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM files WHERE id = ? AND app_id = ? AND collection = ?"
    ))
    .bind(id.as_str())
    .bind(app.as_str())
    .bind(collection)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    row.as_ref().map(file).transpose()
}

/// Queues, in the write's transaction, the events of the `files` triggers of the
/// file's collection that listen to `op`.
async fn queue(
    conn: &mut SqliteConnection,
    app: &AppId,
    op: FilesOp,
    file: &FileMeta,
    prev: Option<&FileMeta>,
    cause: &EventCause,
) -> StoreResult<WriteOutcome> {
    let targets = files_targets(conn, app, &file.collection, op, cause.default_retry).await?;
    let payload = files_event(op, &file.collection, file, prev);
    emit(conn, app, targets, ExecutionSource::Files, payload, cause).await
}

#[async_trait]
impl FilesStore for SqliteStore {
    async fn files_create(
        &self,
        app: &AppId,
        new: NewFile,
        cause: &EventCause,
    ) -> StoreResult<(FileMeta, WriteOutcome)> {
        let now = picloud_core::now();
        let meta = FileMeta {
            id: new.id,
            collection: new.collection,
            name: new.name,
            content_type: new.content_type,
            size: new.size,
            checksum: new.checksum,
            blob_key: new.blob_key,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO files (id, app_id, collection, name, content_type, size, checksum, \
             blob_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(meta.id.as_str())
        .bind(app.as_str())
        .bind(&meta.collection)
        .bind(&meta.name)
        .bind(&meta.content_type)
        .bind(big(meta.size))
        .bind(&meta.checksum)
        .bind(&meta.blob_key)
        .bind(ts(now))
        .bind(ts(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => map_err(e, "that file already exists"),
        })?;
        let outcome = queue(&mut tx, app, FilesOp::Create, &meta, None, cause).await?;
        self.commit_queued(tx, !outcome.events.is_empty()).await?;
        Ok((meta, outcome))
    }

    async fn files_head(
        &self,
        app: &AppId,
        collection: &str,
        id: &FileId,
    ) -> StoreResult<Option<FileMeta>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM files WHERE id = ? AND app_id = ? AND collection = ?"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .bind(collection)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        row.as_ref().map(file).transpose()
    }

    async fn files_update(
        &self,
        app: &AppId,
        collection: &str,
        id: &FileId,
        update: &FileUpdate,
        cause: &EventCause,
    ) -> StoreResult<(FileMeta, FileMeta, WriteOutcome)> {
        let mut tx = self.begin_write().await?;
        let prev = locked(&mut tx, app, collection, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let next = update.apply(&prev, picloud_core::now());
        sqlx::query(
            "UPDATE files SET name = ?, content_type = ?, size = ?, checksum = ?, blob_key = ?, \
             updated_at = ? WHERE id = ?",
        )
        .bind(&next.name)
        .bind(&next.content_type)
        .bind(big(next.size))
        .bind(&next.checksum)
        .bind(&next.blob_key)
        .bind(ts(next.updated_at))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(e, "that blob is already in use"))?;
        let outcome = queue(&mut tx, app, FilesOp::Update, &next, Some(&prev), cause).await?;
        self.commit_queued(tx, !outcome.events.is_empty()).await?;
        Ok((next, prev, outcome))
    }

    async fn files_delete(
        &self,
        app: &AppId,
        collection: &str,
        id: &FileId,
        cause: &EventCause,
    ) -> StoreResult<(Option<FileMeta>, WriteOutcome)> {
        let mut tx = self.begin_write().await?;
        let Some(prev) = locked(&mut tx, app, collection, id).await? else {
            return Ok((None, WriteOutcome::default()));
        };
        sqlx::query("DELETE FROM files WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let outcome = queue(&mut tx, app, FilesOp::Delete, &prev, Some(&prev), cause).await?;
        self.commit_queued(tx, !outcome.events.is_empty()).await?;
        Ok((Some(prev), outcome))
    }

    async fn files_list(
        &self,
        app: &AppId,
        collection: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<FileMeta>> {
        let after = page.after.as_deref().unwrap_or("");
        let sql = match collection {
            Some(_) => format!(
                "SELECT {COLUMNS} FROM files WHERE app_id = ?1 AND collection = ?3 AND id > ?2 \
                 ORDER BY id LIMIT ?4"
            ),
            None => format!(
                "SELECT {COLUMNS} FROM files WHERE app_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ),
        };
        let mut query = sqlx::query(&sql).bind(app.as_str()).bind(after);
        if let Some(collection) = collection {
            query = query.bind(collection);
        }
        let rows = query
            .bind(page.fetch_limit())
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        let files = rows.iter().map(file).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(files, page, |f| f.id.as_str()))
    }

    async fn files_known_blobs(&self, keys: &[String]) -> StoreResult<HashSet<String>> {
        let mut known = HashSet::new();
        // Bounded statements: SQLite caps the number of bound parameters.
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT blob_key FROM files WHERE blob_key IN ({marks})");
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for key in chunk {
                query = query.bind(key);
            }
            known.extend(query.fetch_all(&self.reader).await.map_err(db_err)?);
        }
        Ok(known)
    }
}

#[async_trait]
impl PubsubStore for SqliteStore {
    async fn publish_durable(
        &self,
        app: &AppId,
        topic: &str,
        message: &Value,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        let mut tx = self.begin_write().await?;
        let targets = pubsub_targets(&mut tx, app, topic, cause.default_retry).await?;
        if targets.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let payload = pubsub_event(topic, message, picloud_core::now());
        let outcome = emit(
            &mut tx,
            app,
            targets,
            ExecutionSource::Pubsub,
            payload,
            cause,
        )
        .await?;
        self.commit_queued(tx, !outcome.events.is_empty()).await?;
        Ok(outcome)
    }
}
