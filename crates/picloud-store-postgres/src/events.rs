use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::model::ExecutionSource;
use picloud_core::{AppId, DeadLetterId, EventId, ScriptId, TriggerId};
use picloud_store::{
    ClaimPlan, DeadLetter, EventStore, FanOut, NewEvent, OutboxEvent, RetryPolicy, StoreResult,
};
use sqlx::postgres::{PgConnection, PgRow};

use crate::dead_letters::insert_dead_letter;
use crate::outbox::insert_event;
use crate::triggers::dead_letter_targets;
use crate::{col, col_enum, col_json, col_u32, col_u64, db_err, int, PostgresStore};

/// jsonb is read as text: sqlx's `json` feature is not enabled.
const COLUMNS: &str = "id, app_id, trigger_id, script_id, source, payload::text AS payload, \
     attempt, max_attempts, base_delay_ms, max_delay_ms, depth, due_at, lease_version, \
     replay_of, created_at";

pub(crate) fn outbox_event(row: &PgRow) -> StoreResult<OutboxEvent> {
    let trigger_id: Option<String> = col(row, "trigger_id")?;
    let replay_of: Option<String> = col(row, "replay_of")?;
    Ok(OutboxEvent {
        id: EventId::from_trusted(col(row, "id")?),
        app_id: AppId::from_trusted(col(row, "app_id")?),
        trigger_id: trigger_id.map(TriggerId::from_trusted),
        script_id: ScriptId::from_trusted(col(row, "script_id")?),
        source: col_enum(row, "source")?,
        payload: col_json(row, "payload")?,
        attempt: col_u32(row, "attempt")?,
        retry: RetryPolicy {
            max_attempts: col_u32(row, "max_attempts")?,
            base_delay_ms: col_u64(row, "base_delay_ms")?,
            max_delay_ms: col_u64(row, "max_delay_ms")?,
        },
        depth: col_u32(row, "depth")?,
        due_at: col(row, "due_at")?,
        lease_version: col(row, "lease_version")?,
        replay_of: replay_of.map(DeadLetterId::from_trusted),
        created_at: col(row, "created_at")?,
    })
}

/// The channel announced on after writes that queued deliveries, so that every node's
/// dispatcher wakes, not only the writer's.
pub(crate) const EVENTS_CHANNEL: &str = "picloud_events";

/// What [`EventStore::dead_letter_event`] needs to know before it locks anything
/// below the app: whose delivery it is, and whether it may queue handler events.
struct Claimed {
    app_id: AppId,
    source: ExecutionSource,
    depth: u32,
}

/// The delivery `id` if `version` is still its claim, key-share locking its app so
/// that the app cannot be deleted under the transaction (see the crate docs on order).
async fn lock_claimed_app(
    conn: &mut PgConnection,
    id: &EventId,
    version: i64,
) -> StoreResult<Option<Claimed>> {
    let row = sqlx::query(
        "SELECT o.app_id, o.source, o.depth FROM outbox o JOIN apps a ON a.id = o.app_id \
         WHERE o.id = $1 AND o.lease_version = $2 FOR KEY SHARE OF a",
    )
    .bind(id.as_str())
    .bind(version)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    row.map(|row| {
        Ok(Claimed {
            app_id: AppId::from_trusted(col(&row, "app_id")?),
            source: col_enum(&row, "source")?,
            depth: col_u32(&row, "depth")?,
        })
    })
    .transpose()
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn enqueue_event(&self, new: NewEvent) -> StoreResult<()> {
        // Shares a statement (and a WAL flush) with concurrent calls; announced after.
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
        let names: Vec<&str> = plan.apps.iter().map(|a| a.app.as_str()).collect();
        let rooms: Vec<i64> = plan.apps.iter().map(|a| i64::from(a.room)).collect();
        let running: Vec<i64> = plan.apps.iter().map(|a| i64::from(a.running)).collect();
        // Claims, lease extensions and completions commit without waiting for the WAL
        // flush (`relaxed` pool): one lost in a crash only means the delivery runs once
        // more, which at-least-once delivery allows; waiting for the disk on each
        // was what bounded event throughput.
        // The apps with queued rows come from a loose index scan (one probe per app),
        // then each app's oldest due rows up to its room, in turns across apps, those
        // running fewer first (`ClaimPlan::pick`, in SQL): the cost follows the apps and the room, never a
        // backlog's length. SKIP LOCKED: rows another node is claiming right now are
        // passed over rather than waited for, so concurrent dispatchers never claim
        // the same delivery.
        let rows = sqlx::query(&format!(
            "WITH RECURSIVE apps(id) AS ( \
               (SELECT app_id FROM outbox ORDER BY app_id LIMIT 1) \
               UNION ALL \
               SELECT (SELECT o.app_id FROM outbox o WHERE o.app_id > apps.id \
                       ORDER BY o.app_id LIMIT 1) \
               FROM apps WHERE apps.id IS NOT NULL \
             ), room AS ( \
               SELECT apps.id, LEAST(COALESCE(r.room, $3), $4) AS room, \
                 COALESCE(r.running, 0) AS running FROM apps \
               LEFT JOIN unnest($5::text[], $6::bigint[], $7::bigint[]) \
                 AS r(app, room, running) ON r.app = apps.id \
               WHERE apps.id IS NOT NULL \
             ), picked AS ( \
               SELECT c.id, c.due_at, room.running \
                 + row_number() OVER (PARTITION BY room.id ORDER BY c.due_at, c.id) AS turn \
               FROM room CROSS JOIN LATERAL ( \
                 SELECT o.id, o.due_at FROM outbox o WHERE o.app_id = room.id \
                   AND o.due_at <= $2 AND (o.claimed_until IS NULL OR o.claimed_until <= $2) \
                 ORDER BY o.due_at LIMIT room.room FOR UPDATE SKIP LOCKED \
               ) c \
               WHERE room.room > 0 \
             ) \
             UPDATE outbox SET claimed_until = $1, lease_version = lease_version + 1 \
             WHERE id IN (SELECT id FROM picked ORDER BY turn, due_at LIMIT $4) \
             RETURNING {COLUMNS}"
        ))
        .bind(until)
        .bind(now)
        .bind(i64::from(plan.per_app))
        .bind(i64::from(plan.limit))
        .bind(&names)
        .bind(&rooms)
        .bind(&running)
        .fetch_all(&self.relaxed)
        .await
        .map_err(db_err)?;
        let mut events = rows
            .iter()
            .map(outbox_event)
            .collect::<StoreResult<Vec<_>>>()?;
        events.sort_by(|a, b| a.due_at.cmp(&b.due_at).then_with(|| a.id.cmp(&b.id)));
        Ok(events)
    }

    async fn extend_lease(
        &self,
        id: &EventId,
        version: i64,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        sqlx::query("UPDATE outbox SET claimed_until = $1 WHERE id = $2 AND lease_version = $3")
            .bind(until)
            .bind(id.as_str())
            .bind(version)
            .execute(&self.relaxed)
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
            "UPDATE outbox SET attempt = $1, due_at = $2, claimed_until = NULL \
             WHERE id = $3 AND lease_version = $4",
        )
        .bind(int(attempt))
        .bind(due_at)
        .bind(id.as_str())
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        let requeued = retried.rows_affected() == 1;
        if requeued {
            // This node's claim loop may be asleep until its next poll, having seen
            // nothing due while the delivery was claimed: wake it to sleep until
            // `due_at`. Other nodes need no NOTIFY for a row that is not yet due.
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
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Locks go app, handler scripts and triggers, then the delivery's own row.
        let Some(claimed) = lock_claimed_app(&mut tx, id, version).await? else {
            return Ok(None);
        };
        let handlers = FanOut::dead_letter_depth(claimed.source, claimed.depth, max_depth);
        let targets = match handlers {
            Some(_) => dead_letter_targets(&mut tx, &claimed.app_id).await?,
            None => Vec::new(),
        };
        // The fencing token is checked again by the delete itself: a claim may have
        // been taken over since the first look, and then nothing is written.
        let row = sqlx::query(&format!(
            "DELETE FROM outbox WHERE id = $1 AND lease_version = $2 RETURNING {COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let event = outbox_event(&row)?;
        let dl = insert_dead_letter(&mut tx, &event, error).await?;
        let queued_handlers = !targets.is_empty();
        if let Some(depth) = handlers {
            for new in FanOut::of_dead_letter(&dl, targets, depth) {
                insert_event(&mut tx, &new, None).await?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        if queued_handlers {
            self.announce();
        }
        Ok(Some(dl))
    }

    async fn fail_dead_letter_handler(
        &self,
        id: &EventId,
        version: i64,
        dead_letter: &DeadLetterId,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let deleted = sqlx::query("DELETE FROM outbox WHERE id = $1 AND lease_version = $2")
            .bind(id.as_str())
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if deleted.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE dead_letters SET resolution = 'handler_failed' \
             WHERE id = $1 AND resolution IS NULL",
        )
        .bind(dead_letter.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn release_claims(&self) -> StoreResult<u64> {
        sqlx::query("UPDATE outbox SET claimed_until = NULL WHERE claimed_until IS NOT NULL")
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_err)
    }

    async fn next_event_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT MIN(due_at) FROM outbox WHERE claimed_until IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn count_events(&self, app: &AppId) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE app_id = $1")
            .bind(app.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
