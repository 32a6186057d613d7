//! Group commit for the service writes (KV set/delete, document create): writes from
//! concurrent runs that arrive while a commit is under way share the next one.
//!
//! One thread owns a direct connection (`direct.rs`) and takes the store's writer
//! pool's only connection as the write lock for each batch, so these writes and every
//! other write of the store still take turns. A batch is one `BEGIN IMMEDIATE` …
//! `COMMIT`; each item runs inside a savepoint, so an item that fails (a missing app, a
//! bad value) is rolled back alone and its neighbours commit. Each caller hears its own
//! result after the commit, so a write is durable before its script goes on. The
//! outbox rows a write queues commit with it, and the dispatcher is woken after the
//! commit, as for every other write of the store.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use picloud_core::model::{DocsOp, ExecutionSource, KvOp};
use picloud_core::AppId;
use picloud_core::{ScriptId, TriggerId};
use picloud_store::{
    docs_event_for, kv_event, Doc, EventCause, EventSignal, FanOut, NewEvent, RetryPolicy,
    StoreError, StoreResult, Target, WriteOutcome,
};
use rusqlite::{params, Connection, OptionalExtension as _};
use serde_json::Value;
use sqlx::SqlitePool;
use tokio::sync::oneshot;

use crate::direct::{self, direct_err, outage_of};
use crate::{db_err, ts};

/// Most writes one commit takes; the rest wait for the next.
const MAX_BATCH: usize = 128;

pub(crate) enum WriteOp {
    /// `text` is the value's JSON, written by the caller: the one writer thread does
    /// no more than the SQL.
    KvSet {
        app: AppId,
        collection: String,
        key: String,
        text: String,
        cause: EventCause,
    },
    KvDelete {
        app: AppId,
        collection: String,
        key: String,
        cause: EventCause,
    },
    /// The caller's document, `text` its data's JSON.
    DocCreate {
        doc: Doc,
        app: AppId,
        text: String,
        cause: EventCause,
    },
}

struct Item {
    op: WriteOp,
    /// The op goes back with its result: a created document is not copied.
    reply: oneshot::Sender<(WriteOp, StoreResult<WriteOutcome>)>,
}

/// The group-commit writer's queue.
pub(crate) struct Writer {
    queue: Mutex<Option<mpsc::Sender<Item>>>,
}

/// What the writer thread needs of the store.
pub(crate) struct WriterParts {
    pub path: PathBuf,
    /// The store's writer pool: its one connection is the write lock.
    pub lock: SqlitePool,
    pub signal: Arc<EventSignal>,
    /// `PRAGMA max_page_count` of the store's writer, so both writers see one limit.
    pub max_page_count: i64,
}

impl Writer {
    /// Starts the writer thread; it ends when the store is closed or dropped.
    pub(crate) fn start(parts: WriterParts) -> StoreResult<Self> {
        let (queue, items) = mpsc::channel();
        let handle = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("picloud-sqlite-writer".into())
            .spawn(move || run(&parts, &handle, &items))
            .map_err(StoreError::other)?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
        })
    }

    pub(crate) async fn write(&self, op: WriteOp) -> StoreResult<WriteOutcome> {
        self.write_back(op).await.map(|(_, outcome)| outcome)
    }

    /// Creates a document: the `DocCreate` op's document, with its outcome.
    pub(crate) async fn write_doc(&self, op: WriteOp) -> StoreResult<(Doc, WriteOutcome)> {
        match self.write_back(op).await? {
            (WriteOp::DocCreate { doc, .. }, outcome) => Ok((doc, outcome)),
            _ => Err(StoreError::other(std::io::Error::other(
                "the writer was handed a document create of another kind",
            ))),
        }
    }

    async fn write_back(&self, op: WriteOp) -> StoreResult<(WriteOp, WriteOutcome)> {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .queue
            .lock()
            .ok()
            .and_then(|q| q.as_ref().map(|q| q.send(Item { op, reply }).is_ok()));
        if sent != Some(true) {
            return Err(closed());
        }
        let (op, result) = answer.await.map_err(|_| closed())?;
        result.map(|outcome| (op, outcome))
    }

    /// Stops taking writes; the thread finishes what it has and closes its connection.
    pub(crate) fn close(&self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
    }
}

fn closed() -> StoreError {
    StoreError::unavailable(
        picloud_store::Outage::Busy,
        std::io::Error::other("the database writer has stopped"),
    )
}

fn run(parts: &WriterParts, handle: &tokio::runtime::Handle, items: &mpsc::Receiver<Item>) {
    let mut conn: Option<Connection> = None;
    while let Ok(first) = items.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match items.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.into_iter().map(|i| (i.op, i.reply)).unzip();
        let results = handle.block_on(async {
            let lock = match parts.lock.acquire().await {
                Ok(lock) => lock,
                Err(e) => return fail_all(ops.len(), &db_err(e)),
            };
            let results = with_connection(parts, &mut conn, |c| commit_batch(c, &ops));
            drop(lock);
            results.unwrap_or_else(|e| fail_all(ops.len(), &e))
        });
        let queued = results
            .iter()
            .any(|r| r.as_ref().is_ok_and(|o| !o.events.is_empty()));
        if queued {
            parts.signal.notify();
        }
        for ((reply, op), result) in replies.into_iter().zip(ops).zip(results) {
            let _ = reply.send((op, result));
        }
    }
}

/// Runs `f` on the writer's connection, opening it first if needed; a connection left
/// inside a transaction it could not end is closed (closing rolls it back).
fn with_connection<T>(
    parts: &WriterParts,
    conn: &mut Option<Connection>,
    f: impl FnOnce(&Connection) -> T,
) -> StoreResult<T> {
    if conn.is_none() {
        let c = direct::open(&parts.path, false).map_err(direct_err)?;
        c.pragma_update(None, "max_page_count", parts.max_page_count)
            .map_err(direct_err)?;
        *conn = Some(c);
    }
    let c = conn.as_ref().ok_or_else(closed)?;
    let out = f(c);
    if !c.is_autocommit() && c.execute_batch("ROLLBACK").is_err() {
        tracing::error!("the database writer could not end a failed transaction; reopening it");
        *conn = None;
    }
    Ok(out)
}

fn fail_all(n: usize, e: &StoreError) -> Vec<StoreResult<WriteOutcome>> {
    (0..n).map(|_| Err(shared_failure(e))).collect()
}

/// The error of an item whose transaction failed for another reason than itself.
fn shared_failure(e: &StoreError) -> StoreError {
    StoreError::unavailable(
        outage_of(e),
        std::io::Error::other(format!("the write's transaction failed: {e}")),
    )
}

fn exec(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .map_err(direct_err)
}

/// One transaction for the batch, a savepoint for each item.
fn commit_batch(conn: &Connection, ops: &[WriteOp]) -> Vec<StoreResult<WriteOutcome>> {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        return fail_all(ops.len(), &e);
    }
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        if let Err(e) = exec(conn, "SAVEPOINT item") {
            return lost(results, ops.len(), e);
        }
        match apply(conn, op) {
            Ok(outcome) => {
                if let Err(e) = exec(conn, "RELEASE item") {
                    return lost(results, ops.len(), e);
                }
                results.push(Ok(outcome));
            }
            // SQLite may have rolled the whole transaction back (a full disk): then
            // the items before this one are gone too.
            Err(e) if conn.is_autocommit() => return lost(results, ops.len(), e),
            Err(e) => {
                // Past saving (the connection is broken): the item keeps its own
                // error, the others fail with it.
                if exec(conn, "ROLLBACK TO item")
                    .and_then(|()| exec(conn, "RELEASE item"))
                    .is_err()
                {
                    return lost(results, ops.len(), e);
                }
                results.push(Err(e));
            }
        }
    }
    if let Err(e) = exec(conn, "COMMIT") {
        return results
            .into_iter()
            .map(|r| r.and(Err(shared_failure(&e))))
            .collect();
    }
    results
}

/// The transaction is gone: the item that found out gets `e`, every other item of the
/// batch (done or not) fails with it.
fn lost(
    mut results: Vec<StoreResult<WriteOutcome>>,
    total: usize,
    e: StoreError,
) -> Vec<StoreResult<WriteOutcome>> {
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

fn apply(conn: &Connection, op: &WriteOp) -> StoreResult<WriteOutcome> {
    match op {
        WriteOp::KvSet {
            app,
            collection,
            key,
            text,
            cause,
        } => kv_set(conn, app, collection, key, text, cause),
        WriteOp::KvDelete {
            app,
            collection,
            key,
            cause,
        } => kv_delete(conn, app, collection, key, cause),
        WriteOp::DocCreate {
            doc,
            app,
            text,
            cause,
        } => doc_create(conn, app, doc, text, cause),
    }
}

fn previous(
    conn: &Connection,
    app: &AppId,
    collection: &str,
    key: &str,
) -> StoreResult<Option<Value>> {
    let prev: Option<String> = conn
        .prepare_cached(
            "SELECT value FROM kv_entries WHERE app_id = ?1 AND collection = ?2 AND key = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![app.as_str(), collection, key], |r| r.get(0))
                .optional()
        })
        .map_err(direct_err)?;
    prev.map(|p| serde_json::from_str(&p).map_err(StoreError::other))
        .transpose()
}

fn kv_set(
    conn: &Connection,
    app: &AppId,
    collection: &str,
    key: &str,
    text: &str,
    cause: &EventCause,
) -> StoreResult<WriteOutcome> {
    let prev = previous(conn, app, collection, key)?;
    let now = ts(picloud_core::now());
    conn.prepare_cached(
        "INSERT INTO kv_entries (app_id, collection, key, value, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (app_id, collection, key) \
         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .and_then(|mut s| s.execute(params![app.as_str(), collection, key, text, now]))
    .map_err(direct_err)?;
    let targets = kv_targets(conn, app, collection, KvOp::Set, cause.default_retry)?;
    let mut outcome = emit(conn, app, targets, ExecutionSource::Kv, cause, || {
        let value = serde_json::from_str(text).ok();
        kv_event(KvOp::Set, collection, key, value.as_ref(), prev.as_ref())
    })?;
    outcome.prev = prev;
    Ok(outcome)
}

fn kv_delete(
    conn: &Connection,
    app: &AppId,
    collection: &str,
    key: &str,
    cause: &EventCause,
) -> StoreResult<WriteOutcome> {
    let Some(prev) = previous(conn, app, collection, key)? else {
        return Ok(WriteOutcome::default());
    };
    conn.prepare_cached(
        "DELETE FROM kv_entries WHERE app_id = ?1 AND collection = ?2 AND key = ?3",
    )
    .and_then(|mut s| s.execute(params![app.as_str(), collection, key]))
    .map_err(direct_err)?;
    let targets = kv_targets(conn, app, collection, KvOp::Delete, cause.default_retry)?;
    let mut outcome = emit(conn, app, targets, ExecutionSource::Kv, cause, || {
        kv_event(KvOp::Delete, collection, key, None, Some(&prev))
    })?;
    outcome.prev = Some(prev);
    Ok(outcome)
}

fn doc_create(
    conn: &Connection,
    app: &AppId,
    doc: &Doc,
    text: &str,
    cause: &EventCause,
) -> StoreResult<WriteOutcome> {
    conn.prepare_cached(
        "INSERT INTO docs (app_id, id, collection, data, created_at, updated_at) \
         VALUES (?1, ?2, ?3, jsonb(?4), ?5, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            app.as_str(),
            doc.id.as_str(),
            doc.collection,
            text,
            ts(doc.created_at)
        ])
    })
    .map_err(direct_err)?;
    let targets = docs_targets(conn, app, &doc.collection, cause.default_retry)?;
    emit(conn, app, targets, ExecutionSource::Docs, cause, || {
        docs_event_for(DocsOp::Create, doc, None)
    })
}

fn targets(
    conn: &Connection,
    sql: &str,
    app: &AppId,
    collection: &str,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let mut stmt = conn.prepare_cached(sql).map_err(direct_err)?;
    let rows = stmt
        .query_map(params![app.as_str(), collection], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })
        .map_err(direct_err)?;
    rows.map(|row| {
        let (trigger, script, max, base, cap) = row.map_err(direct_err)?;
        Ok(Target {
            trigger_id: TriggerId::from_trusted(trigger),
            script_id: ScriptId::from_trusted(script),
            retry: RetryPolicy::from_columns(max, base, cap).unwrap_or(default_retry),
        })
    })
    .collect()
}

/// The same selection as `triggers::kv_targets`, on the direct connection.
fn kv_targets(
    conn: &Connection,
    app: &AppId,
    collection: &str,
    op: KvOp,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    let sql = match op {
        KvOp::Set => KV_TARGETS_SET,
        KvOp::Delete => KV_TARGETS_DELETE,
    };
    targets(conn, sql, app, collection, default_retry)
}

const KV_TARGETS_SET: &str = "SELECT t.id, t.script_id, t.retry_max_attempts, \
     t.retry_base_delay_ms, t.retry_max_delay_ms FROM triggers t \
     JOIN kv_trigger_details k ON k.trigger_id = t.id WHERE t.app_id = ?1 AND t.kind = 'kv' \
     AND t.enabled = 1 AND k.collection = ?2 AND k.on_set = 1 ORDER BY t.id";
const KV_TARGETS_DELETE: &str = "SELECT t.id, t.script_id, t.retry_max_attempts, \
     t.retry_base_delay_ms, t.retry_max_delay_ms FROM triggers t \
     JOIN kv_trigger_details k ON k.trigger_id = t.id WHERE t.app_id = ?1 AND t.kind = 'kv' \
     AND t.enabled = 1 AND k.collection = ?2 AND k.on_delete = 1 ORDER BY t.id";

/// The same selection as `triggers::docs_targets` for creates.
fn docs_targets(
    conn: &Connection,
    app: &AppId,
    collection: &str,
    default_retry: RetryPolicy,
) -> StoreResult<Vec<Target>> {
    targets(
        conn,
        "SELECT t.id, t.script_id, t.retry_max_attempts, t.retry_base_delay_ms, \
         t.retry_max_delay_ms FROM triggers t JOIN docs_trigger_details d ON d.trigger_id = t.id \
         WHERE t.app_id = ?1 AND t.kind = 'docs' AND t.enabled = 1 AND d.collection = ?2 \
         AND d.on_create = 1 ORDER BY t.id",
        app,
        collection,
        default_retry,
    )
}

/// Queues the write's deliveries in its transaction (`outbox::emit`, on the direct
/// connection); the payload is built only when some trigger listens.
fn emit(
    conn: &Connection,
    app: &AppId,
    targets: Vec<Target>,
    source: ExecutionSource,
    cause: &EventCause,
    payload: impl FnOnce() -> Value,
) -> StoreResult<WriteOutcome> {
    if targets.is_empty() {
        return Ok(WriteOutcome::default());
    }
    let fan = FanOut::of_write(app, targets, source, payload(), cause);
    for event in &fan.events {
        insert_event(conn, event)?;
    }
    Ok(fan.into_outcome())
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `outbox::insert_event` on the direct connection (no replay: these are new writes).
fn insert_event(conn: &Connection, e: &NewEvent) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (id, app_id, trigger_id, script_id, source, payload, attempt, \
         max_attempts, base_delay_ms, max_delay_ms, depth, due_at, replay_of, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, NULL, ?12)",
    )
    .and_then(|mut s| {
        s.execute(params![
            e.id.as_str(),
            e.app_id.as_str(),
            e.trigger_id.as_ref().map(TriggerId::as_str),
            e.script_id.as_str(),
            e.source.as_str(),
            e.payload.to_string(),
            i64::from(e.retry.max_attempts),
            big(e.retry.base_delay_ms),
            big(e.retry.max_delay_ms),
            i64::from(e.depth),
            ts(e.due_at),
            ts(picloud_core::now()),
        ])
    })
    .map(drop)
    .map_err(direct_err)
}
