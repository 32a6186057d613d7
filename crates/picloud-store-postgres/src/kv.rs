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
use sqlx::postgres::{PgConnection, PgRow};

use crate::batch::{WriteOp, Written};
use crate::outbox::emit;
use crate::triggers::kv_targets;
use crate::{
    col, col_json, db_err, json_text, map_insert_err, stored_len, without_nul, PostgresStore,
};

/// jsonb is read as text: sqlx's `json` feature is not enabled.
const COLUMNS: &str = "collection, key, value::text AS value, created_at, updated_at";

fn entry(row: &PgRow) -> StoreResult<KvEntry> {
    Ok(KvEntry {
        collection: col(row, "collection")?,
        key: col(row, "key")?,
        value: col_json(row, "value")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

/// The current value of the entry, row-locked until the transaction ends.
async fn locked_value(
    conn: &mut PgConnection,
    app: &AppId,
    collection: &str,
    key: &str,
) -> StoreResult<Option<Value>> {
    let prev: Option<String> = sqlx::query_scalar(
        "SELECT value::text FROM kv_entries WHERE app_id = $1 AND collection = $2 AND key = $3 \
         FOR UPDATE",
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

/// Inserts the entry, or updates it if `overwrite`. `false` when the key exists and
/// `overwrite` is off: nothing was written, but the row is now locked (ON CONFLICT DO
/// UPDATE locks the conflicting row even when its WHERE rejects the update).
async fn upsert(
    conn: &mut PgConnection,
    app: &AppId,
    collection: &str,
    key: &str,
    value: &str,
    overwrite: bool,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "INSERT INTO kv_entries (app_id, collection, key, value, created_at, updated_at) \
         VALUES ($1, $2, $3, $4::jsonb, $5, $5) ON CONFLICT (app_id, collection, key) \
         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at WHERE $6",
    )
    .bind(app.as_str())
    .bind(collection)
    .bind(key)
    .bind(value)
    .bind(picloud_core::now())
    .bind(overwrite)
    .execute(&mut *conn)
    .await
    .map_err(|e| map_insert_err(e, "that entry already exists"))?;
    Ok(result.rows_affected() == 1)
}

/// Sets the entry inside the caller's transaction (a batch of the group-commit
/// writer, `batch.rs`); the caller commits and announces.
pub(crate) async fn set_in(
    tx: &mut PgConnection,
    app: &AppId,
    collection: &str,
    key: &str,
    value: &Value,
    cause: &EventCause,
) -> StoreResult<WriteOutcome> {
    let (collection, key) = (without_nul(collection), without_nul(key));
    let text = json_text(value);
    // Locks the app, scripts and triggers before the entry: the crate's lock order.
    let targets = kv_targets(&mut *tx, app, &collection, KvOp::Set, cause.default_retry).await?;
    // `prev` must be the value this write replaces, even against writers on other
    // nodes. An existing row is locked by the read, so it stays `prev` until we
    // commit. A missing one cannot be locked: another transaction may insert the key
    // between our read and our insert, and then both would report "no previous
    // value". So the first upsert does not overwrite — it inserts, or finds the
    // other writer's row (waiting for it to commit) and locks it without writing;
    // we then read that row as `prev` and overwrite it. The second round cannot lose
    // again: the row is ours until commit. (Chosen over an advisory lock on a hash
    // of the key: no extra statement on the common path, no second lock space.)
    let mut prev = locked_value(&mut *tx, app, &collection, &key).await?;
    if !upsert(&mut *tx, app, &collection, &key, &text, prev.is_some()).await? {
        prev = locked_value(&mut *tx, app, &collection, &key).await?;
        if prev.is_none() || !upsert(&mut *tx, app, &collection, &key, &text, true).await? {
            return Err(StoreError::other(std::io::Error::other(
                "a KV entry locked by this transaction changed under it",
            )));
        }
    }
    // (The outbox stores the payload with NUL replaced, so it shows the value as
    // stored, like `prev`.)
    let payload = kv_event(KvOp::Set, &collection, &key, Some(value), prev.as_ref());
    let mut outcome = emit(&mut *tx, app, targets, ExecutionSource::Kv, payload, cause).await?;
    outcome.prev = prev;
    Ok(outcome)
}

/// Deletes the entry inside the caller's transaction (see [`set_in`]).
pub(crate) async fn delete_in(
    tx: &mut PgConnection,
    app: &AppId,
    collection: &str,
    key: &str,
    cause: &EventCause,
) -> StoreResult<WriteOutcome> {
    let (collection, key) = (without_nul(collection), without_nul(key));
    let targets = kv_targets(
        &mut *tx,
        app,
        &collection,
        KvOp::Delete,
        cause.default_retry,
    )
    .await?;
    // The delete locks the row and returns the value it removes: `prev` is read by
    // the write itself. A key inserted concurrently and not yet committed is simply
    // not there yet (this delete is ordered before that insert).
    let prev: Option<String> = sqlx::query_scalar(
        "DELETE FROM kv_entries WHERE app_id = $1 AND collection = $2 AND key = $3 \
         RETURNING value::text",
    )
    .bind(app.as_str())
    .bind(collection.as_ref())
    .bind(key.as_ref())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let prev: Option<Value> = prev
        .map(|p| serde_json::from_str(&p).map_err(StoreError::other))
        .transpose()?;
    let mut outcome = match &prev {
        Some(prev) => {
            let payload = kv_event(KvOp::Delete, &collection, &key, None, Some(prev));
            emit(&mut *tx, app, targets, ExecutionSource::Kv, payload, cause).await?
        }
        None => WriteOutcome::default(),
    };
    outcome.prev = prev;
    Ok(outcome)
}

#[async_trait]
impl KvStore for PostgresStore {
    async fn kv_get(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<KvEntry>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM kv_entries WHERE app_id = $1 AND collection = $2 AND key = $3"
        ))
        .bind(app.as_str())
        .bind(without_nul(collection).as_ref())
        .bind(without_nul(key).as_ref())
        .fetch_optional(&self.pool)
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
        let op = WriteOp::KvSet {
            app: app.clone(),
            collection: collection.to_owned(),
            key: key.to_owned(),
            value: value.clone(),
            cause: *cause,
        };
        match self.batch.write(op).await? {
            Written::Kv(outcome) | Written::Doc(_, outcome) => Ok(outcome),
        }
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
        match self.batch.write(op).await? {
            Written::Kv(outcome) | Written::Doc(_, outcome) => Ok(outcome),
        }
    }

    async fn kv_list(
        &self,
        app: &AppId,
        collection: &str,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<KvEntry>> {
        let collection = without_nul(collection);
        let prefix = without_nul(prefix.unwrap_or(""));
        let after = page.after.as_deref().map(without_nul);
        let (lower, strict) = match after.as_deref() {
            Some(after) if after >= prefix.as_ref() => (after, true),
            _ => (prefix.as_ref(), false),
        };
        let upper = prefix_end(&prefix);
        // The upper bound is left out rather than bound as NULL, so that it is an index
        // condition: the scan stops at the end of the prefix instead of filtering the
        // rest of the collection.
        let sql = format!(
            "SELECT {COLUMNS} FROM kv_entries WHERE app_id = $1 AND collection = $2 \
             AND key {} $4 {} ORDER BY key LIMIT $3",
            if strict { ">" } else { ">=" },
            if upper.is_some() { "AND key < $5" } else { "" },
        );
        let mut query = sqlx::query(&sql)
            .bind(app.as_str())
            .bind(collection.as_ref())
            .bind(page.fetch_limit())
            .bind(lower);
        if let Some(upper) = &upper {
            query = query.bind(upper.as_str());
        }
        let rows = query.fetch(&self.pool).map_err(db_err);
        let items = Gathered::read(rows, |row| stored_len(row, "value"), entry).await?;
        Ok(Page::from_gathered(items, page, |e| e.key.as_str()))
    }
}
