//! Inserting deliveries into the outbox, for every write that queues some. Its own
//! module so that events, dead letters and cron can all queue without importing
//! each other.

use picloud_core::model::ExecutionSource;
use picloud_core::{AppId, DeadLetterId, TriggerId};
use picloud_store::{EventCause, FanOut, NewEvent, StoreResult, Target, WriteOutcome};
use serde_json::Value;
use sqlx::postgres::PgConnection;

use crate::{big, int, json_text, map_insert_err};

/// Queues one delivery inside the caller's transaction (or alone, on a pooled
/// connection). The caller announces it after commit (see `PostgresStore::announce`).
/// A missing app, script or trigger is `NotFound`.
pub(crate) async fn insert_event(
    conn: &mut PgConnection,
    e: &NewEvent,
    replay_of: Option<&DeadLetterId>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (id, app_id, trigger_id, script_id, source, payload, attempt, \
         max_attempts, base_delay_ms, max_delay_ms, depth, due_at, replay_of, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, 1, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(e.id.as_str())
    .bind(e.app_id.as_str())
    .bind(e.trigger_id.as_ref().map(TriggerId::as_str))
    .bind(e.script_id.as_str())
    .bind(e.source.as_str())
    .bind(json_text(&e.payload))
    .bind(int(e.retry.max_attempts))
    .bind(big(e.retry.base_delay_ms))
    .bind(big(e.retry.max_delay_ms))
    .bind(int(e.depth))
    .bind(e.due_at)
    .bind(replay_of.map(DeadLetterId::as_str))
    .bind(picloud_core::now())
    .execute(&mut *conn)
    .await
    .map_err(|err| map_insert_err(err, "that event is already queued"))?;
    Ok(())
}

/// Queues a write's deliveries (see [`FanOut::of_write`]) inside its transaction.
pub(crate) async fn emit(
    conn: &mut PgConnection,
    app: &AppId,
    targets: Vec<Target>,
    source: ExecutionSource,
    payload: Value,
    cause: &EventCause,
) -> StoreResult<WriteOutcome> {
    let fan = FanOut::of_write(app, targets, source, payload, cause);
    for new in &fan.events {
        insert_event(conn, new, None).await?;
    }
    Ok(fan.into_outcome())
}
