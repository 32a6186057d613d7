//! Group commit of the outbox's hot writes: queuing an async route's call and
//! completing a delivery. Concurrent callers share one statement on the writer; each
//! gets its own answer (see `picloud_store::Batcher`).

use std::sync::Arc;

use picloud_core::{EventId, TriggerId};
use picloud_store::{deleted, inserted_once, Batcher, EventSignal, NewEvent, StoreResult};
use sqlx::SqlitePool;

use crate::outbox::insert_event;
use crate::{db_err, ts};

/// Rows per statement: 13 parameters each stays far below SQLite's limit.
const MAX_BATCH: usize = 256;

pub(crate) struct OutboxBatches {
    enqueue: Batcher<NewEvent, ()>,
    complete: Batcher<(EventId, i64), bool>,
}

impl OutboxBatches {
    pub(crate) fn start(writer: &SqlitePool, signal: &Arc<EventSignal>) -> Self {
        let (w, s) = (writer.clone(), signal.clone());
        let enqueue = Batcher::start(MAX_BATCH, move |items| {
            let (w, s) = (w.clone(), s.clone());
            Box::pin(async move { enqueue(&w, &s, items).await })
        });
        let w = writer.clone();
        let complete = Batcher::start(MAX_BATCH, move |items| {
            let w = w.clone();
            Box::pin(async move { complete(&w, items).await })
        });
        Self { enqueue, complete }
    }

    pub(crate) async fn enqueue(&self, event: NewEvent) -> StoreResult<()> {
        self.enqueue.submit(event).await
    }

    pub(crate) async fn complete(&self, id: EventId, version: i64) -> StoreResult<bool> {
        self.complete.submit((id, version)).await
    }
}

async fn enqueue(
    writer: &SqlitePool,
    signal: &EventSignal,
    items: Vec<NewEvent>,
) -> Vec<StoreResult<()>> {
    let results = match insert_all(writer, &items).await {
        Ok(inserted) => inserted_once(
            items.iter().map(|e| e.id.as_str()),
            inserted,
            "that event is already queued",
        ),
        // The statement failed as a whole (an app deleted meanwhile, say): each item
        // on its own, so only the bad one fails.
        Err(_) => {
            let mut out = Vec::with_capacity(items.len());
            for e in &items {
                out.push(insert_one(writer, e).await);
            }
            out
        }
    };
    if results.iter().any(Result::is_ok) {
        signal.notify();
    }
    results
}

async fn insert_one(writer: &SqlitePool, e: &NewEvent) -> StoreResult<()> {
    let mut conn = writer.acquire().await.map_err(db_err)?;
    insert_event(&mut conn, e, None).await
}

/// One multi-row insert; the ids it inserted (a queued id is skipped, not an error).
async fn insert_all(writer: &SqlitePool, items: &[NewEvent]) -> StoreResult<Vec<String>> {
    let row = "(?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, NULL, ?)";
    let sql = format!(
        "INSERT INTO outbox (id, app_id, trigger_id, script_id, source, payload, attempt, \
         max_attempts, base_delay_ms, max_delay_ms, depth, due_at, replay_of, created_at) \
         VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
        vec![row; items.len()].join(", ")
    );
    let now = ts(picloud_core::now());
    let mut q = sqlx::query_scalar::<_, String>(&sql);
    for e in items {
        q = q
            .bind(e.id.as_str())
            .bind(e.app_id.as_str())
            .bind(e.trigger_id.as_ref().map(TriggerId::as_str))
            .bind(e.script_id.as_str())
            .bind(e.source.as_str())
            .bind(e.payload.to_string())
            .bind(i64::from(e.retry.max_attempts))
            .bind(i64::try_from(e.retry.base_delay_ms).unwrap_or(i64::MAX))
            .bind(i64::try_from(e.retry.max_delay_ms).unwrap_or(i64::MAX))
            .bind(i64::from(e.depth))
            .bind(ts(e.due_at))
            .bind(now.clone());
    }
    q.fetch_all(writer).await.map_err(db_err)
}

async fn complete(writer: &SqlitePool, items: Vec<(EventId, i64)>) -> Vec<StoreResult<bool>> {
    let sql = format!(
        "DELETE FROM outbox WHERE (id, lease_version) IN (VALUES {}) RETURNING id",
        vec!["(?, ?)"; items.len()].join(", ")
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql);
    for (id, version) in &items {
        q = q.bind(id.as_str()).bind(*version);
    }
    match q.fetch_all(writer).await {
        Ok(done) => deleted(items.iter().map(|(id, _)| id.as_str()), done),
        // Each on its own, so every caller gets its own error (a full disk is
        // `Unavailable`, not a generic failure).
        Err(_) => {
            let mut out = Vec::with_capacity(items.len());
            for (id, version) in &items {
                out.push(complete_one(writer, id, *version).await);
            }
            out
        }
    }
}

async fn complete_one(writer: &SqlitePool, id: &EventId, version: i64) -> StoreResult<bool> {
    sqlx::query("DELETE FROM outbox WHERE id = ? AND lease_version = ?")
        .bind(id.as_str())
        .bind(version)
        .execute(writer)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(db_err)
}
