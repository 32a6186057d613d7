use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use picloud_core::{AppId, DeadLetterId, EventId, ScriptId, TriggerId};
use picloud_store::page::Gathered;
use picloud_store::{
    DeadLetter, DeadLetterFilter, DeadLetterStore, NewEvent, OutboxEvent, Page, PageRequest,
    RetryPolicy, StoreError, StoreResult,
};
use sqlx::postgres::{PgConnection, PgRow};

use crate::outbox::insert_event;
use crate::{
    col, col_enum, col_json, col_u32, db_err, int, json_text, stored_len, without_nul,
    PostgresStore,
};

/// Of `dead_letters d`; jsonb is read as text: sqlx's `json` feature is not enabled.
const COLUMNS: &str = "d.id, d.app_id, d.event_id, d.trigger_id, d.script_id, d.source, \
     d.payload::text AS payload, d.error, d.attempts, d.depth, d.resolution, d.replay_of, \
     d.created_at";

fn dead_letter(row: &PgRow) -> StoreResult<DeadLetter> {
    let trigger_id: Option<String> = col(row, "trigger_id")?;
    let resolution: Option<String> = col(row, "resolution")?;
    let replay_of: Option<String> = col(row, "replay_of")?;
    Ok(DeadLetter {
        id: DeadLetterId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        event_id: EventId::from_trusted(col(row, "event_id")?),
        trigger_id: trigger_id.map(TriggerId::from_trusted),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        source: col_enum(row, "source")?,
        payload: col_json(row, "payload")?,
        error: col(row, "error")?,
        attempts: col_u32(row, "attempts")?,
        depth: col_u32(row, "depth")?,
        resolution: resolution
            .map(|r| r.parse().map_err(StoreError::other))
            .transpose()?,
        replay_of: replay_of.map(DeadLetterId::from_trusted),
        created_at: col(row, "created_at")?,
    })
}

/// Writes the dead letter of an exhausted delivery inside the caller's transaction.
/// The error is user text (a script's message) and is stored without NUL; the
/// returned value is what was stored.
pub(crate) async fn insert_dead_letter(
    conn: &mut PgConnection,
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
        error: without_nul(error).into_owned(),
        attempts: event.attempt,
        depth: event.depth,
        resolution: None,
        replay_of: event.replay_of.clone(),
        created_at: picloud_core::now(),
    };
    sqlx::query(
        "INSERT INTO dead_letters (id, app_id, event_id, trigger_id, script_id, source, \
         payload, error, attempts, depth, resolution, replay_of, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, NULL, $11, $12)",
    )
    .bind(dl.id.as_str())
    .bind(dl.app_id.as_str())
    .bind(dl.event_id.as_str())
    .bind(dl.trigger_id.as_ref().map(TriggerId::as_str))
    .bind(dl.script_id.as_str())
    .bind(dl.source.as_str())
    .bind(json_text(&dl.payload))
    .bind(&dl.error)
    .bind(int(dl.attempts))
    .bind(int(dl.depth))
    .bind(dl.replay_of.as_ref().map(DeadLetterId::as_str))
    .bind(dl.created_at)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(dl)
}

/// Key-share locks the script (and trigger) a replayed delivery goes to, in the
/// crate's lock order; `NotFound` if either is gone.
async fn lock_target(
    conn: &mut PgConnection,
    script: &ScriptId,
    trigger: Option<&TriggerId>,
) -> StoreResult<()> {
    let found = match trigger {
        Some(trigger) => sqlx::query(
            "SELECT 1 FROM scripts s JOIN triggers t ON t.id = $2 WHERE s.id = $1 \
             FOR KEY SHARE OF s, t",
        )
        .bind(script.as_str())
        .bind(trigger.as_str()),
        None => {
            sqlx::query("SELECT 1 FROM scripts WHERE id = $1 FOR KEY SHARE").bind(script.as_str())
        }
    }
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    found.map(|_| ()).ok_or(StoreError::NotFound)
}

#[async_trait]
impl DeadLetterStore for PostgresStore {
    async fn list_dead_letters(
        &self,
        app: &AppId,
        filter: DeadLetterFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<DeadLetter>> {
        let condition = match filter {
            DeadLetterFilter::Unresolved => "(resolution IS NULL OR resolution = 'handler_failed')",
            DeadLetterFilter::Resolved => "resolution IN ('resolved', 'replayed')",
            DeadLetterFilter::All => "TRUE",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM dead_letters d WHERE d.app_id = $1 AND {condition} \
             AND ($2::text IS NULL OR d.id < $2) ORDER BY d.id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(app.as_str())
            .bind(page.after.as_deref())
            .bind(page.fetch_limit())
            .fetch(&self.pool)
            .map_err(db_err);
        let items = Gathered::read(rows, |row| stored_len(row, "payload"), dead_letter).await?;
        Ok(Page::from_gathered(items, page, |d| d.id.as_str()))
    }

    async fn get_dead_letter(&self, app: &AppId, id: &DeadLetterId) -> StoreResult<DeadLetter> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dead_letters d WHERE d.id = $1 AND d.app_id = $2"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        dead_letter(&row)
    }

    async fn resolve_dead_letter(&self, app: &AppId, id: &DeadLetterId) -> StoreResult<DeadLetter> {
        let row = sqlx::query(&format!(
            "UPDATE dead_letters d SET resolution = 'resolved' WHERE d.id = $1 \
             AND d.app_id = $2 RETURNING {COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map_or(Err(StoreError::NotFound), dead_letter)
    }

    async fn replay_dead_letter(
        &self,
        app: &AppId,
        id: &DeadLetterId,
        retry: RetryPolicy,
    ) -> StoreResult<EventId> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // App first (crate lock order), then the dead letter, read-modify-written here.
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dead_letters d JOIN apps a ON a.id = d.app_id \
             WHERE d.id = $1 AND d.app_id = $2 FOR KEY SHARE OF a FOR UPDATE OF d"
        ))
        .bind(id.as_str())
        .bind(app.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let dl = dead_letter(&row)?;
        lock_target(&mut tx, &dl.script_id, dl.trigger_id.as_ref()).await?;
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
        sqlx::query("UPDATE dead_letters SET resolution = 'replayed' WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.announce();
        Ok(dl.event_id)
    }

    async fn delete_dead_letters_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        sqlx::query(
            "DELETE FROM dead_letters WHERE id IN \
             (SELECT id FROM dead_letters WHERE id < $1 LIMIT $2)",
        )
        .bind(DeadLetterId::lower_bound(cutoff))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
    }
}
