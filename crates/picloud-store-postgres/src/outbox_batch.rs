//! Group commit of the outbox's hot writes: queuing an async route's call (durable:
//! the caller is answered 202 after the commit) and completing a delivery (relaxed).
//! Concurrent callers share one statement; each gets its own answer (see
//! `picloud_store::Batcher`).

use picloud_core::{EventId, TriggerId};
use picloud_store::{deleted, inserted_once, Batcher, NewEvent, StoreResult};
use sqlx::PgPool;

use crate::outbox::insert_event;
use crate::{big, db_err, int, json_text};

const MAX_BATCH: usize = 512;

pub(crate) struct OutboxBatches {
    enqueue: Batcher<NewEvent, ()>,
    complete: Batcher<(EventId, i64), bool>,
}

impl OutboxBatches {
    /// `durable` for queuing, `relaxed` for completions; `queued` is called after a
    /// batch queued something (the store's wake-up and announcement).
    pub(crate) fn start(
        durable: &PgPool,
        relaxed: &PgPool,
        queued: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let queued = std::sync::Arc::new(queued);
        let pool = durable.clone();
        let enqueue = Batcher::start(MAX_BATCH, move |items| {
            let (pool, queued) = (pool.clone(), queued.clone());
            Box::pin(async move {
                let results = enqueue(&pool, items).await;
                if results.iter().any(Result::is_ok) {
                    queued();
                }
                results
            })
        });
        let pool = relaxed.clone();
        let complete = Batcher::start(MAX_BATCH, move |items| {
            let pool = pool.clone();
            Box::pin(async move { complete(&pool, items).await })
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

async fn enqueue(pool: &PgPool, items: Vec<NewEvent>) -> Vec<StoreResult<()>> {
    match insert_all(pool, &items).await {
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
                out.push(insert_one(pool, e).await);
            }
            out
        }
    }
}

async fn insert_one(pool: &PgPool, e: &NewEvent) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    insert_event(&mut conn, e, None).await
}

/// One multi-row insert from arrays; the ids it inserted (a queued id is skipped, not
/// an error).
async fn insert_all(pool: &PgPool, items: &[NewEvent]) -> StoreResult<Vec<String>> {
    let ids: Vec<&str> = items.iter().map(|e| e.id.as_str()).collect();
    let apps: Vec<&str> = items.iter().map(|e| e.app_id.as_str()).collect();
    let triggers: Vec<Option<&str>> = items
        .iter()
        .map(|e| e.trigger_id.as_ref().map(TriggerId::as_str))
        .collect();
    let scripts: Vec<&str> = items.iter().map(|e| e.script_id.as_str()).collect();
    let sources: Vec<&str> = items.iter().map(|e| e.source.as_str()).collect();
    let payloads: Vec<String> = items.iter().map(|e| json_text(&e.payload)).collect();
    let attempts: Vec<i32> = items.iter().map(|e| int(e.retry.max_attempts)).collect();
    let base: Vec<i64> = items.iter().map(|e| big(e.retry.base_delay_ms)).collect();
    let max: Vec<i64> = items.iter().map(|e| big(e.retry.max_delay_ms)).collect();
    let depths: Vec<i32> = items.iter().map(|e| int(e.depth)).collect();
    let due: Vec<chrono::DateTime<chrono::Utc>> = items.iter().map(|e| e.due_at).collect();
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO outbox (id, app_id, trigger_id, script_id, source, payload, attempt, \
         max_attempts, base_delay_ms, max_delay_ms, depth, due_at, replay_of, created_at) \
         SELECT t.id, t.app_id, t.trigger_id, t.script_id, t.source, t.payload::jsonb, 1, \
           t.max_attempts, t.base_delay_ms, t.max_delay_ms, t.depth, t.due_at, NULL, $12 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::int[], $8::bigint[], $9::bigint[], $10::int[], $11::timestamptz[]) \
           AS t(id, app_id, trigger_id, script_id, source, payload, max_attempts, \
                base_delay_ms, max_delay_ms, depth, due_at) \
         ON CONFLICT (id) DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&apps)
    .bind(&triggers)
    .bind(&scripts)
    .bind(&sources)
    .bind(&payloads)
    .bind(&attempts)
    .bind(&base)
    .bind(&max)
    .bind(&depths)
    .bind(&due)
    .bind(picloud_core::now())
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    Ok(inserted)
}

async fn complete(pool: &PgPool, items: Vec<(EventId, i64)>) -> Vec<StoreResult<bool>> {
    let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
    let versions: Vec<i64> = items.iter().map(|(_, v)| *v).collect();
    let done = sqlx::query_scalar::<_, String>(
        "DELETE FROM outbox o USING unnest($1::text[], $2::bigint[]) AS d(id, version) \
         WHERE o.id = d.id AND o.lease_version = d.version RETURNING o.id",
    )
    .bind(&ids)
    .bind(&versions)
    .fetch_all(pool)
    .await;
    match done {
        Ok(done) => deleted(items.iter().map(|(id, _)| id.as_str()), done),
        // Each on its own, so every caller gets its own error.
        Err(_) => {
            let mut out = Vec::with_capacity(items.len());
            for (id, version) in &items {
                out.push(complete_one(pool, id, *version).await);
            }
            out
        }
    }
}

async fn complete_one(pool: &PgPool, id: &EventId, version: i64) -> StoreResult<bool> {
    sqlx::query("DELETE FROM outbox WHERE id = $1 AND lease_version = $2")
        .bind(id.as_str())
        .bind(version)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1)
        .map_err(db_err)
}
