use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::{AppId, DeadLetterId, EventId, ScriptId, TriggerId};
use picloud_store::{
    Candidate, ClaimPlan, DeadLetter, EventStore, FanOut, NewEvent, OutboxEvent, RetryPolicy,
    StoreError, StoreResult,
};
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::dead_letters::insert_dead_letter;
use crate::outbox::insert_event;
use crate::triggers::dead_letter_targets;
use crate::write::commit;
use crate::{col, col_enum, col_ts, db_err, ts, SqliteStore};

const COLUMNS: &str = "id, app_id, trigger_id, script_id, source, payload, attempt, max_attempts, \
     base_delay_ms, max_delay_ms, depth, due_at, lease_version, replay_of, created_at";

fn u32_col(row: &SqliteRow, name: &str) -> StoreResult<u32> {
    let v: i64 = col(row, name)?;
    Ok(u32::try_from(v).unwrap_or(0))
}

fn u64_col(row: &SqliteRow, name: &str) -> StoreResult<u64> {
    let v: i64 = col(row, name)?;
    Ok(u64::try_from(v).unwrap_or(0))
}

pub(crate) fn outbox_event(row: &SqliteRow) -> StoreResult<OutboxEvent> {
    let payload: String = col(row, "payload")?;
    let trigger_id: Option<String> = col(row, "trigger_id")?;
    let replay_of: Option<String> = col(row, "replay_of")?;
    Ok(OutboxEvent {
        id: EventId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        trigger_id: trigger_id.map(TriggerId::from_trusted),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        source: col_enum(row, "source")?,
        payload: picloud_core::json::parse_stored(&payload).map_err(StoreError::other)?,
        attempt: u32_col(row, "attempt")?,
        retry: RetryPolicy {
            max_attempts: u32_col(row, "max_attempts")?,
            base_delay_ms: u64_col(row, "base_delay_ms")?,
            max_delay_ms: u64_col(row, "max_delay_ms")?,
        },
        depth: u32_col(row, "depth")?,
        due_at: col_ts(row, "due_at")?,
        lease_version: col(row, "lease_version")?,
        replay_of: replay_of.map(DeadLetterId::from_trusted),
        created_at: col_ts(row, "created_at")?,
    })
}

/// The claimed row `id` if `version` is still its claim.
async fn claimed(
    conn: &mut SqliteConnection,
    id: &EventId,
    version: i64,
) -> StoreResult<Option<OutboxEvent>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE id = ? AND lease_version = ?"
    ))
    .bind(id.as_str())
    .bind(version)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    row.as_ref().map(outbox_event).transpose()
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn enqueue_event(&self, new: NewEvent) -> StoreResult<()> {
        // Shares a statement with concurrent calls; wakes the dispatcher after it.
        self.outbox.enqueue(new).await
    }

    async fn claim_planned(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        plan: &ClaimPlan,
    ) -> StoreResult<Vec<OutboxEvent>> {
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        let until =
            now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
        let mut tx = self.begin_write().await?;
        // The apps with queued rows, one index probe each (a loose index scan), then
        // each one's oldest due rows: the cost follows the number of apps and the
        // room, never the length of a backlog.
        let apps: Vec<String> = sqlx::query_scalar(
            "WITH RECURSIVE a(id) AS (SELECT MIN(app_id) FROM outbox \
             UNION ALL SELECT (SELECT MIN(app_id) FROM outbox WHERE app_id > a.id) \
             FROM a WHERE a.id IS NOT NULL) SELECT id FROM a WHERE id IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut candidates = Vec::new();
        for app in apps {
            let app = AppId::from_trusted(app);
            let room = plan.room(&app);
            if room == 0 {
                continue;
            }
            let rows = sqlx::query(
                "SELECT id, due_at FROM outbox WHERE app_id = ? AND due_at <= ? \
                 AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY due_at LIMIT ?",
            )
            .bind(app.as_str())
            .bind(ts(now))
            .bind(ts(now))
            .bind(i64::from(room))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            for row in rows {
                candidates.push(Candidate {
                    id: col::<String>(&row, "id")?,
                    app_id: app.clone(),
                    due_at: col_ts(&row, "due_at")?,
                });
            }
        }
        let picked = plan.pick(candidates);
        if picked.is_empty() {
            commit(tx).await?;
            return Ok(Vec::new());
        }
        let marks = vec!["?"; picked.len()].join(", ");
        let sql = format!(
            "UPDATE outbox SET claimed_until = ?, lease_version = lease_version + 1 \
             WHERE id IN ({marks}) RETURNING {COLUMNS}"
        );
        let mut update = sqlx::query(&sql).bind(ts(until));
        for id in &picked {
            update = update.bind(id);
        }
        let rows = update.fetch_all(&mut *tx).await.map_err(db_err)?;
        let mut events = rows
            .iter()
            .map(outbox_event)
            .collect::<StoreResult<Vec<_>>>()?;
        commit(tx).await?;
        events.sort_by(|a, b| a.due_at.cmp(&b.due_at).then_with(|| a.id.cmp(&b.id)));
        Ok(events)
    }

    async fn extend_lease(
        &self,
        id: &EventId,
        version: i64,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        sqlx::query("UPDATE outbox SET claimed_until = ? WHERE id = ? AND lease_version = ?")
            .bind(ts(until))
            .bind(id.as_str())
            .bind(version)
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(db_err)
    }

    async fn complete_event(&self, id: &EventId, version: i64) -> StoreResult<bool> {
        self.outbox.complete(id.clone(), version).await
    }

    async fn retry_event(
        &self,
        id: &EventId,
        version: i64,
        attempt: u32,
        due_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let retried = sqlx::query(
            "UPDATE outbox SET attempt = ?, due_at = ?, claimed_until = NULL \
             WHERE id = ? AND lease_version = ?",
        )
        .bind(i64::from(attempt))
        .bind(ts(due_at))
        .bind(id.as_str())
        .bind(version)
        .execute(&self.writer)
        .await
        .map_err(db_err)?;
        let requeued = retried.rows_affected() == 1;
        if requeued {
            // The claim loop may be asleep until its next poll, having seen nothing
            // due while this delivery was claimed: wake it to sleep until `due_at`.
            self.signal.notify();
        }
        Ok(requeued)
    }

    async fn dead_letter_event(
        &self,
        id: &EventId,
        version: i64,
        error: &str,
        max_depth: u32,
    ) -> StoreResult<Option<DeadLetter>> {
        let mut tx = self.begin_write().await?;
        let Some(event) = claimed(&mut tx, id, version).await? else {
            return Ok(None);
        };
        let dl = insert_dead_letter(&mut tx, &event, error).await?;
        sqlx::query("DELETE FROM outbox WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut queued = false;
        if let Some(depth) = FanOut::dead_letter_depth(event.source, event.depth, max_depth) {
            let targets = dead_letter_targets(&mut tx, &event.app_id).await?;
            for new in FanOut::of_dead_letter(&dl, targets, depth) {
                insert_event(&mut tx, &new, None).await?;
                queued = true;
            }
        }
        self.commit_queued(tx, queued).await?;
        Ok(Some(dl))
    }

    async fn fail_dead_letter_handler(
        &self,
        id: &EventId,
        version: i64,
        dead_letter: &DeadLetterId,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM outbox WHERE id = ? AND lease_version = ?")
            .bind(id.as_str())
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE dead_letters SET resolution = 'handler_failed' WHERE id = ? AND resolution IS NULL")
            .bind(dead_letter.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        commit(tx).await?;
        Ok(true)
    }

    async fn release_claims(&self) -> StoreResult<u64> {
        sqlx::query("UPDATE outbox SET claimed_until = NULL WHERE claimed_until IS NOT NULL")
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_err)
    }

    async fn next_event_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let due: Option<String> =
            sqlx::query_scalar("SELECT MIN(due_at) FROM outbox WHERE claimed_until IS NULL")
                .fetch_one(&self.writer)
                .await
                .map_err(db_err)?;
        due.map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(StoreError::other)
        })
        .transpose()
    }

    async fn count_events(&self, app: &AppId) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE app_id = ?")
            .bind(app.as_str())
            .fetch_one(&self.writer)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
