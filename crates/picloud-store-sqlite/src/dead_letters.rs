use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use picloud_core::{AppId, DeadLetterId, EventId, ScriptId, TriggerId};
use picloud_store::page::Gathered;
use picloud_store::{
    DeadLetter, DeadLetterFilter, DeadLetterStore, NewEvent, OutboxEvent, Page, PageRequest,
    RetryPolicy, StoreError, StoreResult,
};
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::outbox::insert_event;
use crate::{col, col_enum, col_ts, db_err, expect_row, stored_len, ts, SqliteStore};

const COLUMNS: &str = "id, app_id, event_id, trigger_id, script_id, source, payload, error, \
     attempts, depth, resolution, replay_of, created_at";

fn dead_letter(row: &SqliteRow) -> StoreResult<DeadLetter> {
    let payload: String = col(row, "payload")?;
    let trigger_id: Option<String> = col(row, "trigger_id")?;
    let resolution: Option<String> = col(row, "resolution")?;
    let replay_of: Option<String> = col(row, "replay_of")?;
    let attempts: i64 = col(row, "attempts")?;
    let depth: i64 = col(row, "depth")?;
    Ok(DeadLetter {
        id: DeadLetterId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        event_id: EventId::from_trusted(col(row, "event_id")?),
        trigger_id: trigger_id.map(TriggerId::from_trusted),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        source: col_enum(row, "source")?,
        payload: picloud_core::json::parse_stored(&payload).map_err(StoreError::other)?,
        error: col(row, "error")?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        depth: u32::try_from(depth).unwrap_or(0),
        resolution: resolution
            .map(|r| r.parse().map_err(StoreError::other))
            .transpose()?,
        replay_of: replay_of.map(DeadLetterId::from_trusted),
        created_at: col_ts(row, "created_at")?,
    })
}

/// Writes the dead letter of an exhausted delivery inside the caller's transaction.
pub(crate) async fn insert_dead_letter(
    conn: &mut SqliteConnection,
    event: &OutboxEvent,
    error: &str,
) -> StoreResult<DeadLetter> {
    let dl = DeadLetter {
        id: DeadLetterId::new(),
        app_id: event.app_id.clone(),
        event_id: event.id.clone(),
        trigger_id: event.trigger_id.clone(),
        script_id: event.script_id.clone(),
        source: event.source,
        payload: event.payload.clone(),
        error: error.to_owned(),
        attempts: event.attempt,
        depth: event.depth,
        resolution: None,
        replay_of: event.replay_of.clone(),
        created_at: picloud_core::now(),
    };
    sqlx::query(&format!(
        "INSERT INTO dead_letters ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)"
    ))
    .bind(dl.id.as_str())
    .bind(dl.app_id.as_str())
    .bind(dl.event_id.as_str())
    .bind(dl.trigger_id.as_ref().map(TriggerId::as_str))
    .bind(dl.script_id.as_str())
    .bind(dl.source.as_str())
    .bind(dl.payload.to_string())
    .bind(&dl.error)
    .bind(i64::from(dl.attempts))
    .bind(i64::from(dl.depth))
    .bind(dl.replay_of.as_ref().map(DeadLetterId::as_str))
    .bind(ts(dl.created_at))
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(dl)
}

#[async_trait]
impl DeadLetterStore for SqliteStore {
    async fn list_dead_letters(
        &self,
        app: &AppId,
        filter: DeadLetterFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<DeadLetter>> {
        let condition = match filter {
            DeadLetterFilter::Unresolved => "(resolution IS NULL OR resolution = 'handler_failed')",
            DeadLetterFilter::Resolved => "resolution IN ('resolved', 'replayed')",
            DeadLetterFilter::All => "1 = 1",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE app_id = ? AND {condition} \
             AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(app.as_str())
            .bind(page.after.as_deref())
            .bind(page.after.as_deref())
            .bind(page.fetch_limit())
            .fetch(&self.reader)
            .map_err(db_err);
        let items = Gathered::read(rows, |row| stored_len(row, "payload"), dead_letter).await?;
        Ok(Page::from_gathered(items, page, |d| d.id.as_str()))
    }

    async fn get_dead_letter(&self, app: &AppId, id: &DeadLetterId) -> StoreResult<DeadLetter> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE id = ? AND app_id = ?"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_one(&self.writer)
        .await
        .map_err(db_err)?;
        dead_letter(&row)
    }

    async fn resolve_dead_letter(&self, app: &AppId, id: &DeadLetterId) -> StoreResult<DeadLetter> {
        let result = sqlx::query(
            "UPDATE dead_letters SET resolution = 'resolved' WHERE id = ? AND app_id = ?",
        )
        .bind(id.as_str())
        .bind(app.as_str())
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        expect_row(result.rows_affected())?;
        self.get_dead_letter(app, id).await
    }

    async fn replay_dead_letter(
        &self,
        app: &AppId,
        id: &DeadLetterId,
        retry: RetryPolicy,
    ) -> StoreResult<EventId> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE id = ? AND app_id = ?"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let dl = dead_letter(&row)?;
        let new = NewEvent {
            id: dl.event_id.clone(),
            app_id: dl.app_id.clone(),
            trigger_id: dl.trigger_id.clone(),
            script_id: dl.script_id.clone(),
            source: dl.source,
            payload: dl.payload.clone(),
            retry,
            depth: dl.depth,
            due_at: picloud_core::now(),
        };
        insert_event(&mut tx, &new, Some(&dl.id)).await?;
        sqlx::query("UPDATE dead_letters SET resolution = 'replayed' WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        self.commit_queued(tx, true).await?;
        Ok(dl.event_id)
    }

    async fn delete_dead_letters_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        sqlx::query("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE id < ? LIMIT ?)")
            .bind(DeadLetterId::lower_bound(cutoff))
            .bind(i64::from(limit))
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_err)
    }
}
