//! Group commit for the service writes (KV set/delete, document create): writes from
//! concurrent runs that arrive while a commit is under way share the next one, so a
//! burst of writes waits for one flush of the write-ahead log instead of one each.
//!
//! A few lanes (tasks) run batches side by side, each lane one batch after another (see
//! [`LANES`]): a batch is one transaction; when one
//! of its items fails (a missing app, a bad value), it runs again with a savepoint
//! around each item, so that item is rolled back alone and its neighbours commit. Each item is the same code as a write
//! on its own (`kv::set_in`, `kv::delete_in`, `docs::create_in`): the same locks in the
//! same order, the outbox rows in the write's transaction. Each caller hears its own
//! result after the commit, so a write is durable before its script goes on; the
//! dispatchers are woken after the commit, as for every other write.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use picloud_core::AppId;
use picloud_store::{Doc, EventCause, EventSignal, Outage, StoreError, StoreResult, WriteOutcome};
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::db_err;

/// Most writes one commit takes; the rest wait for the next.
const MAX_BATCH: usize = 128;

pub(crate) enum WriteOp {
    KvSet {
        app: AppId,
        collection: String,
        key: String,
        value: Value,
        cause: EventCause,
    },
    KvDelete {
        app: AppId,
        collection: String,
        key: String,
        cause: EventCause,
    },
    DocCreate {
        app: AppId,
        collection: String,
        data: Value,
        cause: EventCause,
    },
}

pub(crate) enum Written {
    Kv(WriteOutcome),
    Doc(Doc, WriteOutcome),
}

impl Written {
    fn queued(&self) -> bool {
        match self {
            Self::Kv(o) | Self::Doc(_, o) => !o.events.is_empty(),
        }
    }
}

struct Item {
    op: WriteOp,
    reply: oneshot::Sender<StoreResult<Written>>,
}

/// The group-commit writer's queue.
pub(crate) struct Writer {
    lanes: Vec<(mpsc::UnboundedSender<Item>, tokio::task::JoinHandle<()>)>,
    /// Spreads document creates (new rows: they never contend) over the lanes.
    next: AtomicUsize,
}

/// Batches committing at once, each on its own connection. Writes to one KV key always
/// take the same lane, so two batches never wait for each other's row locks (a batch
/// holding key A and wanting key B while another holds B and wants A would deadlock);
/// the other locks a write takes (`FOR KEY SHARE` of its app, scripts and triggers)
/// never conflict with one another.
const LANES: usize = 4;

/// Who hears of a commit that queued deliveries: this node's dispatcher and, through
/// the announcer, the other nodes'.
#[derive(Clone)]
pub(crate) struct Wake {
    pub signal: Arc<EventSignal>,
    pub announcements: Arc<Notify>,
}

impl Writer {
    pub(crate) fn start(pool: PgPool, wake: Wake) -> Self {
        let lanes = (0..LANES)
            .map(|_| {
                let (queue, items) = mpsc::unbounded_channel();
                let task = tokio::spawn(run(pool.clone(), wake.clone(), items));
                (queue, task)
            })
            .collect();
        Self {
            lanes,
            next: AtomicUsize::new(0),
        }
    }

    fn lane(&self, op: &WriteOp) -> usize {
        match op {
            WriteOp::KvSet {
                app,
                collection,
                key,
                ..
            }
            | WriteOp::KvDelete {
                app,
                collection,
                key,
                ..
            } => {
                let mut hasher = DefaultHasher::new();
                (app.as_str(), collection, key).hash(&mut hasher);
                usize::try_from(hasher.finish() % LANES as u64).unwrap_or(0)
            }
            WriteOp::DocCreate { .. } => self.next.fetch_add(1, Ordering::Relaxed) % LANES,
        }
    }

    pub(crate) async fn write(&self, op: WriteOp) -> StoreResult<Written> {
        let (reply, answer) = oneshot::channel();
        let (queue, _) = &self.lanes[self.lane(&op)];
        queue.send(Item { op, reply }).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        for (_, task) in &self.lanes {
            task.abort();
        }
    }
}

fn closed() -> StoreError {
    StoreError::unavailable(
        Outage::Busy,
        std::io::Error::other("the database writer has stopped"),
    )
}

async fn run(pool: PgPool, wake: Wake, mut items: mpsc::UnboundedReceiver<Item>) {
    while let Some(first) = items.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match items.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.into_iter().map(|i| (i.op, i.reply)).unzip();
        let results = match fast_batch(&pool, &ops).await {
            Some(results) => results,
            None => commit_batch(&pool, &ops).await,
        };
        if results
            .iter()
            .any(|r| r.as_ref().is_ok_and(Written::queued))
        {
            wake.signal.notify();
            wake.announcements.notify_one();
        }
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// The error of an item whose transaction failed for another reason than itself.
fn shared_failure(e: &StoreError) -> StoreError {
    StoreError::unavailable(
        e.outage().unwrap_or(Outage::Busy),
        std::io::Error::other(format!("the write's transaction failed: {e}")),
    )
}

async fn exec(conn: &mut PgConnection, sql: &str) -> StoreResult<()> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(db_err)
}

/// The batch as one transaction without savepoints: two round trips fewer per write.
/// `None` when a write of a batch of several failed: the transaction is rolled back
/// (PostgreSQL aborts it at the first error) and the batch runs again with a savepoint
/// per write, so the failure stays with its write.
async fn fast_batch(pool: &PgPool, ops: &[WriteOp]) -> Option<Vec<StoreResult<Written>>> {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let e = db_err(e);
            return Some(ops.iter().map(|_| Err(shared_failure(&e))).collect());
        }
    };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        match apply(&mut tx, op).await {
            Ok(written) => results.push(Ok(written)),
            Err(e) if ops.len() == 1 => return Some(vec![Err(e)]),
            Err(_) => {
                let _ = tx.rollback().await;
                return None;
            }
        }
    }
    if let Err(e) = tx.commit().await.map_err(db_err) {
        return Some(
            results
                .into_iter()
                .map(|r| r.and(Err(shared_failure(&e))))
                .collect(),
        );
    }
    Some(results)
}

/// One transaction for the batch, a savepoint for each item.
async fn commit_batch(pool: &PgPool, ops: &[WriteOp]) -> Vec<StoreResult<Written>> {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let e = db_err(e);
            return ops.iter().map(|_| Err(shared_failure(&e))).collect();
        }
    };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        if let Err(e) = exec(&mut tx, "SAVEPOINT item").await {
            return lost(results, ops.len(), e);
        }
        match apply(&mut tx, op).await {
            Ok(written) => {
                if let Err(e) = exec(&mut tx, "RELEASE SAVEPOINT item").await {
                    return lost(results, ops.len(), e);
                }
                results.push(Ok(written));
            }
            Err(e) => {
                let undone = match exec(&mut tx, "ROLLBACK TO SAVEPOINT item").await {
                    Ok(()) => exec(&mut tx, "RELEASE SAVEPOINT item").await,
                    Err(undo) => Err(undo),
                };
                // The connection broke (or the transaction is past saving): the
                // item keeps its own error, the others fail with it.
                if undone.is_err() {
                    return lost(results, ops.len(), e);
                }
                results.push(Err(e));
            }
        }
    }
    if let Err(e) = tx.commit().await.map_err(db_err) {
        return results
            .into_iter()
            .map(|r| r.and(Err(shared_failure(&e))))
            .collect();
    }
    results
}

/// The transaction is gone (the connection broke): every item of the batch fails.
fn lost(
    mut results: Vec<StoreResult<Written>>,
    total: usize,
    e: StoreError,
) -> Vec<StoreResult<Written>> {
    for r in &mut results {
        if r.is_ok() {
            *r = Err(shared_failure(&e));
        }
    }
    let rest: Vec<_> = (results.len() + 1..total)
        .map(|_| Err(shared_failure(&e)))
        .collect();
    results.push(Err(e));
    results.extend(rest);
    results
}

async fn apply(tx: &mut PgConnection, op: &WriteOp) -> StoreResult<Written> {
    match op {
        WriteOp::KvSet {
            app,
            collection,
            key,
            value,
            cause,
        } => crate::kv::set_in(tx, app, collection, key, value, cause)
            .await
            .map(Written::Kv),
        WriteOp::KvDelete {
            app,
            collection,
            key,
            cause,
        } => crate::kv::delete_in(tx, app, collection, key, cause)
            .await
            .map(Written::Kv),
        WriteOp::DocCreate {
            app,
            collection,
            data,
            cause,
        } => crate::docs::create_in(tx, app, collection, data, cause)
            .await
            .map(|(d, o)| Written::Doc(d, o)),
    }
}
