use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::{AppId, ScriptId, TriggerId};
use picloud_store::{CronFire, CronStore, DueCron, Leadership, SoleLeader, StoreResult};
use sqlx::sqlite::SqliteRow;

use crate::outbox::insert_event;
use crate::triggers::retry;
use crate::{col, col_opt_ts, col_ts, db_err, ts, SqliteStore};

fn due(row: &SqliteRow) -> StoreResult<DueCron> {
    Ok(DueCron {
        trigger_id: TriggerId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        retry: retry(row)?,
        schedule: col(row, "schedule")?,
        timezone: col(row, "timezone")?,
        next_fire_at: col_ts(row, "next_fire_at")?,
    })
}

#[async_trait]
impl CronStore for SqliteStore {
    async fn due_cron_triggers(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<DueCron>> {
        let rows = sqlx::query(
            "SELECT t.id, t.app_id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
             t.retry_max_delay_ms, c.schedule, c.timezone, c.next_fire_at \
             FROM cron_trigger_details c JOIN triggers t ON t.id = c.trigger_id \
             WHERE c.next_fire_at <= ? AND t.enabled = 1 \
             ORDER BY c.next_fire_at, t.id LIMIT ?",
        )
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter().map(due).collect()
    }

    async fn fire_cron(&self, fire: &CronFire) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE cron_trigger_details SET next_fire_at = ?, last_fired_at = ? \
             WHERE trigger_id = ? AND next_fire_at = ? \
             AND EXISTS (SELECT 1 FROM triggers WHERE id = ? AND enabled = 1)",
        )
        .bind(fire.next_fire_at.map(ts))
        .bind(ts(fire.fired_at))
        .bind(fire.trigger_id.as_str())
        .bind(ts(fire.expected_next_fire_at))
        .bind(fire.trigger_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, &fire.event, None).await?;
        self.commit_queued(tx, true).await?;
        Ok(true)
    }

    async fn next_cron_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT MIN(c.next_fire_at) AS next_fire_at FROM cron_trigger_details c \
             JOIN triggers t ON t.id = c.trigger_id WHERE t.enabled = 1",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(db_err)?;
        col_opt_ts(&row, "next_fire_at")
    }

    async fn reschedule_cron(
        &self,
        trigger: &TriggerId,
        expected: Option<DateTime<Utc>>,
        next_fire_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        sqlx::query(
            "UPDATE cron_trigger_details SET next_fire_at = ? \
             WHERE trigger_id = ? AND next_fire_at IS ?",
        )
        .bind(next_fire_at.map(ts))
        .bind(trigger.as_str())
        .bind(expected.map(ts))
        .execute(&self.writer)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(db_err)
    }

    fn cron_leadership(&self) -> Box<dyn Leadership> {
        // One process owns a SQLite file.
        Box::new(SoleLeader)
    }
}
