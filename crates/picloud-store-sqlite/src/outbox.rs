//! Inserting deliveries into the outbox, for every write that queues some. Its own
//! module so that events, dead letters and cron can all queue without importing
//! each other.

use picloud_core::model::ExecutionSource;
use picloud_core::{AppId, DeadLetterId, TriggerId};
use picloud_store::{EventCause, FanOut, NewEvent, StoreError, StoreResult, Target, WriteOutcome};
use sqlx::sqlite::SqliteConnection;

use crate::{map_err, ts};

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Queues one delivery inside the caller's transaction.
pub(crate) async fn insert_event(
    conn: &mut SqliteConnection,
    e: &NewEvent,
    replay_of: Option<&DeadLetterId>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (id, app_id, trigger_id, script_id, source, payload, attempt, \
         max_attempts, base_delay_ms, max_delay_ms, depth, due_at, replay_of, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.id.as_str())
    .bind(e.app_id.as_str())
    .bind(e.trigger_id.as_ref().map(TriggerId::as_str))
    .bind(e.script_id.as_str())
    .bind(e.source.as_str())
    .bind(e.payload.to_string())
    .bind(i64::from(e.retry.max_attempts))
    .bind(big(e.retry.base_delay_ms))
    .bind(big(e.retry.max_delay_ms))
    .bind(i64::from(e.depth))
    .bind(ts(e.due_at))
    .bind(replay_of.map(DeadLetterId::as_str))
    .bind(ts(picloud_core::now()))
    .execute(&mut *conn)
    .await
    .map_err(|err| match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => map_err(err, "that event is already queued"),
    })?;
    Ok(())
}

/// Queues a write's deliveries (see [`FanOut::of_write`]) inside its transaction.
pub(crate) async fn emit(
    conn: &mut SqliteConnection,
    app: &AppId,
    targets: Vec<Target>,
    source: ExecutionSource,
    payload: serde_json::Value,
    cause: &EventCause,
) -> StoreResult<WriteOutcome> {
    let fan = FanOut::of_write(app, targets, source, payload, cause);
    for new in &fan.events {
        insert_event(conn, new, None).await?;
    }
    Ok(fan.into_outcome())
}
