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
use sqlx::postgres::{PgConnection, PgRow};

use crate::outbox::emit;
use crate::triggers::{files_targets, pubsub_targets};
use crate::{big, col, db_err, map_err, map_insert_err, without_nul, PostgresStore};

const COLUMNS: &str =
    "id, collection, name, content_type, size, checksum, blob_key, created_at, updated_at";

fn file(row: &PgRow) -> StoreResult<FileMeta> {
    let size: i64 = col(row, "size")?;
    Ok(FileMeta {
        id: FileId::from_trusted(col(row, "id")?),
        collection: col(row, "collection")?,
        name: col(row, "name")?,
        content_type: col(row, "content_type")?,
        size: u64::try_from(size).unwrap_or(0),
        checksum: col(row, "checksum")?,
        blob_key: col(row, "blob_key")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

async fn locked(
    conn: &mut PgConnection,
    app: &AppId,
    collection: &str,
    id: &FileId,
) -> StoreResult<Option<FileMeta>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM files WHERE id = $1 AND app_id = $2 AND collection = $3 \
         FOR UPDATE"
    ))
    .bind(id.as_str())
    .bind(app.as_str())
    .bind(without_nul(collection).as_ref())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    row.as_ref().map(file).transpose()
}

/// Queues, in the write's transaction, the events of the `files` triggers of the
/// file's collection that listen to `op`.
async fn queue(
    conn: &mut PgConnection,
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
impl FilesStore for PostgresStore {
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO files (id, app_id, collection, name, content_type, size, checksum, \
             blob_key, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(meta.id.as_str())
        .bind(app.as_str())
        .bind(without_nul(&meta.collection).as_ref())
        .bind(without_nul(&meta.name).as_ref())
        .bind(without_nul(&meta.content_type).as_ref())
        .bind(big(meta.size))
        .bind(&meta.checksum)
        .bind(&meta.blob_key)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_insert_err(e, "that file already exists"))?;
        let outcome = queue(&mut tx, app, FilesOp::Create, &meta, None, cause).await?;
        self.commit(tx, &outcome).await?;
        Ok((meta, outcome))
    }

    async fn files_head(
        &self,
        app: &AppId,
        collection: &str,
        id: &FileId,
    ) -> StoreResult<Option<FileMeta>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM files WHERE id = $1 AND app_id = $2 AND collection = $3"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .bind(without_nul(collection).as_ref())
        .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let prev = locked(&mut tx, app, collection, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let next = update.apply(&prev, picloud_core::now());
        sqlx::query(
            "UPDATE files SET name = $1, content_type = $2, size = $3, checksum = $4, \
             blob_key = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(without_nul(&next.name).as_ref())
        .bind(without_nul(&next.content_type).as_ref())
        .bind(big(next.size))
        .bind(&next.checksum)
        .bind(&next.blob_key)
        .bind(next.updated_at)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(e, "that blob is already in use"))?;
        let outcome = queue(&mut tx, app, FilesOp::Update, &next, Some(&prev), cause).await?;
        self.commit(tx, &outcome).await?;
        Ok((next, prev, outcome))
    }

    async fn files_delete(
        &self,
        app: &AppId,
        collection: &str,
        id: &FileId,
        cause: &EventCause,
    ) -> StoreResult<(Option<FileMeta>, WriteOutcome)> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let Some(prev) = locked(&mut tx, app, collection, id).await? else {
            return Ok((None, WriteOutcome::default()));
        };
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let outcome = queue(&mut tx, app, FilesOp::Delete, &prev, Some(&prev), cause).await?;
        self.commit(tx, &outcome).await?;
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
                "SELECT {COLUMNS} FROM files WHERE app_id = $1 AND collection = $3 AND id > $2 \
                 ORDER BY id LIMIT $4"
            ),
            None => format!(
                "SELECT {COLUMNS} FROM files WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ),
        };
        let mut query = sqlx::query(&sql).bind(app.as_str()).bind(after);
        if let Some(collection) = collection {
            query = query.bind(without_nul(collection).into_owned());
        }
        let rows = query
            .bind(page.fetch_limit())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let files = rows.iter().map(file).collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(files, page, |f| f.id.as_str()))
    }

    async fn files_known_blobs(&self, keys: &[String]) -> StoreResult<HashSet<String>> {
        let known: Vec<String> =
            sqlx::query_scalar("SELECT blob_key FROM files WHERE blob_key = ANY($1)")
                .bind(keys)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(known.into_iter().collect())
    }
}

#[async_trait]
impl PubsubStore for PostgresStore {
    async fn publish_durable(
        &self,
        app: &AppId,
        topic: &str,
        message: &Value,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
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
        self.commit(tx, &outcome).await?;
        Ok(outcome)
    }
}

impl PostgresStore {
    /// Commits a write and, when it queued deliveries, wakes the dispatchers.
    async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        outcome: &WriteOutcome,
    ) -> StoreResult<()> {
        tx.commit().await.map_err(db_err)?;
        if !outcome.events.is_empty() {
            self.announce();
        }
        Ok(())
    }
}
