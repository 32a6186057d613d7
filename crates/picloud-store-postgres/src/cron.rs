use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::{AppId, ScriptId, TriggerId};
use picloud_store::{CronFire, CronStore, DueCron, Leadership, StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::Connection;

use crate::outbox::insert_event;
use crate::triggers::retry;
use crate::{col, db_err, PostgresStore};

/// The session-level advisory lock whose holder runs the cron scheduler ("picloudc").
const LEADER_LOCK: i64 = 0x7069_636c_6f75_6463;
/// Longest wait for the leader connection to answer before leadership counts as lost.
const LEADER_TIMEOUT: Duration = Duration::from_secs(5);

fn due(row: &PgRow) -> StoreResult<DueCron> {
    Ok(DueCron {
        trigger_id: TriggerId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        retry: retry(row)?,
        schedule: col(row, "schedule")?,
        timezone: col(row, "timezone")?,
        next_fire_at: col(row, "next_fire_at")?,
    })
}

#[async_trait]
impl CronStore for PostgresStore {
    async fn due_cron_triggers(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<DueCron>> {
        let rows = sqlx::query(
            "SELECT t.id, t.app_id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
             t.retry_max_delay_ms, c.schedule, c.timezone, c.next_fire_at \
             FROM cron_trigger_details c JOIN triggers t ON t.id = c.trigger_id \
             WHERE c.next_fire_at <= $1 AND t.enabled \
             ORDER BY c.next_fire_at, t.id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(due).collect()
    }

    async fn fire_cron(&self, fire: &CronFire) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Top-down like every event write (see the crate docs): the app, the script
        // and the trigger are key-share locked, so none can vanish under the insert.
        let live: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM apps a JOIN triggers t ON t.app_id = a.id \
             JOIN scripts s ON s.id = t.script_id WHERE t.id = $1 AND t.enabled \
             FOR KEY SHARE OF a, s, t",
        )
        .bind(fire.trigger_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if live.is_none() {
            return Ok(false);
        }
        // The compare-and-set: a second scheduler firing the same window waits for this
        // row, then finds it moved on and updates nothing.
        let moved = sqlx::query(
            "UPDATE cron_trigger_details SET next_fire_at = $1, last_fired_at = $2 \
             WHERE trigger_id = $3 AND next_fire_at = $4",
        )
        .bind(fire.next_fire_at)
        .bind(fire.fired_at)
        .bind(fire.trigger_id.as_str())
        .bind(fire.expected_next_fire_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, &fire.event, None).await?;
        tx.commit().await.map_err(db_err)?;
        self.announce();
        Ok(true)
    }

    async fn next_cron_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query_scalar(
            "SELECT MIN(c.next_fire_at) FROM cron_trigger_details c \
             JOIN triggers t ON t.id = c.trigger_id WHERE t.enabled",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn reschedule_cron(
        &self,
        trigger: &TriggerId,
        expected: Option<DateTime<Utc>>,
        next_fire_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        sqlx::query(
            "UPDATE cron_trigger_details SET next_fire_at = $1 \
             WHERE trigger_id = $2 AND next_fire_at IS NOT DISTINCT FROM $3",
        )
        .bind(next_fire_at)
        .bind(trigger.as_str())
        .bind(expected)
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(db_err)
    }

    fn cron_leadership(&self) -> Box<dyn Leadership> {
        Box::new(AdvisoryLeader {
            options: self.options.clone().application_name("picloud-cron-leader"),
            conn: None,
            held: false,
        })
    }
}

/// Leadership as a session-level advisory lock on a connection of its own (outside
/// the pool, which would hand the session to other work). PostgreSQL releases the lock
/// when that session ends, so a node that dies or loses its connection loses the
/// leadership with it, and another node takes it on its next try.
struct AdvisoryLeader {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    held: bool,
}

fn timed_out() -> StoreError {
    StoreError::other(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the cron leader connection did not answer",
    ))
}

impl AdvisoryLeader {
    /// Whether the session holding the lock still answers.
    async fn alive(conn: &mut PgConnection) -> bool {
        matches!(
            tokio::time::timeout(LEADER_TIMEOUT, conn.ping()).await,
            Ok(Ok(()))
        )
    }

    async fn try_lock(&mut self) -> StoreResult<bool> {
        let conn = match self.conn.as_mut() {
            Some(conn) => conn,
            None => {
                let conn =
                    tokio::time::timeout(LEADER_TIMEOUT, PgConnection::connect_with(&self.options))
                        .await
                        .map_err(|_| timed_out())?
                        .map_err(db_err)?;
                self.conn.insert(conn)
            }
        };
        let query = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *conn);
        match tokio::time::timeout(LEADER_TIMEOUT, query).await {
            Ok(Ok(got)) => Ok(got),
            Ok(Err(e)) => {
                self.conn = None;
                Err(db_err(e))
            }
            Err(_) => {
                self.conn = None;
                Err(timed_out())
            }
        }
    }
}

#[async_trait]
impl Leadership for AdvisoryLeader {
    async fn hold(&mut self) -> StoreResult<bool> {
        if self.held {
            if let Some(conn) = self.conn.as_mut() {
                if Self::alive(conn).await {
                    return Ok(true);
                }
            }
            // The session is gone, and the lock with it (or it soon will be, on the
            // server's side): start over on a new connection.
            tracing::warn!("cron leader connection lost; leadership released");
            self.conn = None;
            self.held = false;
        }
        self.held = self.try_lock().await?;
        Ok(self.held)
    }

    async fn release(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.held {
                let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(LEADER_LOCK)
                    .execute(&mut conn);
                let _ = tokio::time::timeout(LEADER_TIMEOUT, unlock).await;
            }
            let _ = tokio::time::timeout(LEADER_TIMEOUT, conn.close()).await;
        }
        self.held = false;
    }
}
