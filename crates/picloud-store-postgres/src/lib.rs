//! PiCloud's store on PostgreSQL.
//!
//! Several nodes may share one database, so anything that must be atomic across
//! writers (route clashes, the first user, a KV write and its events) takes a lock in
//! PostgreSQL rather than relying on a single writer as the SQLite store does.
//!
//! Transactions that write events take their row locks top-down — the app, then
//! scripts, then triggers, then the KV / outbox / dead-letter row — which is the order
//! deleting an app or a script locks them in (cascades run parent first). Taking them
//! bottom-up would let a write and a concurrent delete each wait for the other: a
//! deadlock PostgreSQL breaks only by failing one of them.

mod abandoned;
mod apps;
mod audit;
mod batch;
mod changes;
mod cron;
mod dead_letters;
mod docs;
mod docs_index;
mod events;
mod executions;
mod files;
mod keys;
mod kv;
mod members;
mod outbox;
mod outbox_batch;
mod routes;
mod scripts;
mod secrets;
mod triggers;
mod users;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use picloud_store::{
    Backend, ChangeFeed, EventSignal, MetaStore, OnChange, Outage, Store, StoreError, StoreResult,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/0001_foundation.sql"),
    ),
    (
        2,
        "identity",
        include_str!("../migrations/0002_identity.sql"),
    ),
    (
        3,
        "executions by id",
        include_str!("../migrations/0003_executions_by_id.sql"),
    ),
    (4, "events", include_str!("../migrations/0004_events.sql")),
    (5, "docs", include_str!("../migrations/0005_docs.sql")),
    (6, "modules", include_str!("../migrations/0006_modules.sql")),
    (7, "cron", include_str!("../migrations/0007_cron.sql")),
    (
        8,
        "executions by app",
        include_str!("../migrations/0008_executions_by_app.sql"),
    ),
    (
        9,
        "session epochs",
        include_str!("../migrations/0009_session_epochs.sql"),
    ),
    (
        10,
        "outbox by app",
        include_str!("../migrations/0010_outbox_by_app.sql"),
    ),
    (
        11,
        "docs indexes",
        include_str!("../migrations/0011_docs_indexes.sql"),
    ),
    (
        12,
        "files and pubsub",
        include_str!("../migrations/0012_files_pubsub.sql"),
    ),
    (
        13,
        "secrets",
        include_str!("../migrations/0013_secrets.sql"),
    ),
];

const MAX_CONNECTIONS: u32 = 16;
const RELAXED_CONNECTIONS: u32 = 4;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

fn migrator() -> Migrator {
    migrator_upto(i64::MAX)
}

/// The migrations up to `version` (tests upgrade from older schemas).
fn migrator_upto(version: i64) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .filter(|(v, _, _)| *v <= version)
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    // `Migrator::DEFAULT` keeps `locking`: PostgreSQL then holds an advisory lock while
    // migrating, so nodes starting together apply each migration once.
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

pub struct PostgresStore {
    pool: PgPool,
    /// Connections with `synchronous_commit = off`, for the dispatcher's bookkeeping
    /// (claims, lease extensions, completions), where losing the last few commits in a
    /// crash only means a delivery runs once more.
    relaxed: PgPool,
    /// For the `LISTEN` connection, which lives outside the pool.
    options: PgConnectOptions,
    listener: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    change_listener: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Asks the announcer task to tell other nodes that deliveries were queued.
    announcements: std::sync::Arc<tokio::sync::Notify>,
    /// Wakes this node's dispatcher: signalled after every commit that queued
    /// deliveries, and when another node announces some.
    signal: std::sync::Arc<EventSignal>,
    /// Told after every commit that changed cached rows, here or on another node.
    changes: std::sync::Arc<ChangeFeed>,
    announcer: tokio::task::JoinHandle<()>,
    /// Group commit of queuing and completing deliveries.
    outbox: outbox_batch::OutboxBatches,
    /// Group commit of the service calls' writes (`batch.rs`).
    batch: batch::Writer,
}

impl PostgresStore {
    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::other)?;
        // The pool retries a refused connection until its acquire timeout and then
        // reports only that it timed out; one direct attempt fails fast with the cause.
        PgConnection::connect_with(&options)
            .await
            .map_err(StoreError::other)?
            .close()
            .await
            .map_err(StoreError::other)?;
        // No ping before handing out a pooled connection: it was a round trip in front
        // of every statement (sqlx already pings each connection when it is returned,
        // off the caller's path), and a connection the server dropped fails its next
        // statement as an outage like any other.
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::other)?;
        let relaxed = PgPoolOptions::new()
            .max_connections(RELAXED_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_lazy_with(options.clone().options([("synchronous_commit", "off")]));
        let announcements = std::sync::Arc::new(tokio::sync::Notify::new());
        let announcer = tokio::spawn(announce_loop(pool.clone(), announcements.clone()));
        let signal: std::sync::Arc<EventSignal> = std::sync::Arc::default();
        let outbox = {
            let (signal, announcements) = (signal.clone(), announcements.clone());
            outbox_batch::OutboxBatches::start(&pool, &relaxed, move || {
                signal.notify();
                announcements.notify_one();
            })
        };
        let batch = batch::Writer::start(
            pool.clone(),
            batch::Wake {
                signal: signal.clone(),
                announcements: announcements.clone(),
            },
        );
        Ok(Self {
            batch,
            pool,
            relaxed,
            options,
            listener: parking_lot::Mutex::new(None),
            change_listener: parking_lot::Mutex::new(None),
            announcements,
            announcer,
            signal,
            changes: std::sync::Arc::default(),
            outbox,
        })
    }

    /// After the commit of a write that queued deliveries: wakes this node's
    /// dispatcher, and (soon) tells the other nodes.
    pub(crate) fn announce(&self) {
        self.signal.notify();
        self.announcements.notify_one();
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        migrator().run(&self.pool).await.map_err(StoreError::other)
    }

    /// Identifies the schema the migrations produce; test templates are keyed by it,
    /// so they are rebuilt whenever a migration changes.
    pub fn schema_fingerprint() -> String {
        let mut hasher = Sha256::new();
        for (version, _, sql) in MIGRATIONS {
            hasher.update(version.to_be_bytes());
            hasher.update(sql.as_bytes());
        }
        let mut hex = hex::encode(hasher.finalize());
        hex.truncate(16);
        hex
    }
}

/// The stored size of a text column, for read budgets: measured before the row is
/// decoded.
pub(crate) fn stored_len(row: &PgRow, name: &str) -> usize {
    row.try_get::<&str, _>(name).map_or(0, str::len)
}

pub(crate) fn col<'r, T>(row: &'r PgRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name).map_err(StoreError::other)
}

pub(crate) fn col_enum<T: FromStr>(row: &PgRow, name: &str) -> StoreResult<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = col(row, name)?;
    text.parse().map_err(StoreError::other)
}

/// Maps a failed statement: unique violations become `Conflict(message)`; a lost
/// connection, a full disk or an exhausted server `Unavailable`.
pub(crate) fn map_err(e: sqlx::Error, conflict: &str) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(conflict.to_owned())
        }
        // Class 22, data exception: a value the request carried cannot be stored or
        // compared (JSON text that is not JSON, a `\u0000` in jsonb, a number out of
        // range). The caller's mistake, not an outage; PostgreSQL's message names the
        // value's problem without SQL text.
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
            StoreError::Invalid(format!(
                "a value in the request is refused: {}",
                db.message()
            ))
        }
        // 54000, program_limit_exceeded: a value too large for a B-tree index row (a
        // declared document index holds at most ~2,700 bytes of a value). The request's
        // value, not an outage.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("54000") => StoreError::Invalid(
            "a value is too large for a declared index on its field (PostgreSQL \
                 indexes hold at most about 2,700 bytes of a value): store a shorter \
                 value or drop the index"
                .to_owned(),
        ),
        _ => match outage(&e) {
            Some(outage) => StoreError::unavailable(outage, e),
            None => StoreError::other(e),
        },
    }
}

/// The outage behind an error, by SQLSTATE: class 08 and the 57P0x shutdowns are a
/// lost connection (a terminated backend says 57P01 before it hangs up); 53100 is
/// `disk_full`; the rest of class 53 (memory, connections), a statement or lock
/// timeout are a busy server.
fn outage(e: &sqlx::Error) -> Option<Outage> {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            match code.as_ref() {
                "53100" => Some(Outage::DiskFull),
                "57P01" | "57P02" | "57P03" => Some(Outage::ConnectionLost),
                // A lock timeout, a cancelled statement, or a deadlock / serialisation
                // failure (concurrent index changes): retrying later may succeed.
                "57014" | "55P03" | "40P01" | "40001" => Some(Outage::Busy),
                c if c.starts_with("08") => Some(Outage::ConnectionLost),
                c if c.starts_with("53") => Some(Outage::Busy),
                _ => None,
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
            Some(Outage::ConnectionLost)
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Some(Outage::Busy),
        _ => None,
    }
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    map_err(e, "already exists")
}

/// Like [`map_err`], but a missing referenced row (the app, the script) is `NotFound`.
pub(crate) fn map_insert_err(e: sqlx::Error, conflict: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => map_err(e, conflict),
    }
}

/// `NotFound` unless a statement touched a row.
pub(crate) fn expect_row(affected: u64) -> StoreResult<()> {
    if affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// PostgreSQL text (and jsonb) cannot hold NUL, which a script may well print or use
/// in a key; one such record must not fail, so NUL becomes U+FFFD.
pub(crate) fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `value` as text for a jsonb parameter (bound as text and cast: sqlx's `json`
/// feature is off), with NUL in strings and object keys replaced as in
/// [`without_nul`]: jsonb rejects the escape `\u0000`.
pub(crate) fn json_text(value: &Value) -> String {
    let text = value.to_string();
    // serde_json writes NUL only as that escape, so without it there is nothing to do
    // (an escaped backslash followed by `u0000` merely costs a needless walk).
    if !text.contains("\\u0000") {
        return text;
    }
    let mut cleaned = value.clone();
    scrub(&mut cleaned);
    cleaned.to_string()
}

fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = without_nul(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => {
            *map = std::mem::take(map)
                .into_iter()
                .map(|(k, mut v)| {
                    scrub(&mut v);
                    (without_nul(&k).into_owned(), v)
                })
                .collect();
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A JSON column read back as text (see [`json_text`]).
pub(crate) fn col_json(row: &PgRow, name: &str) -> StoreResult<Value> {
    let text: String = col(row, name)?;
    picloud_core::json::parse_stored(&text).map_err(StoreError::other)
}

/// Counters (attempts, depth) are `INTEGER`; no real value comes near the clamp.
pub(crate) fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Delays are `BIGINT`.
pub(crate) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn col_u32(row: &PgRow, name: &str) -> StoreResult<u32> {
    let n: i32 = col(row, name)?;
    Ok(u32::try_from(n).unwrap_or(0))
}

pub(crate) fn col_u64(row: &PgRow, name: &str) -> StoreResult<u64> {
    let n: i64 = col(row, name)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[async_trait]
impl MetaStore for PostgresStore {
    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn init_meta(&self, key: &str, value: &str) -> StoreResult<String> {
        // A concurrent first insert makes ours wait and then do nothing; the select
        // below then sees the winner's committed value.
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }
}

/// Sends `NOTIFY` on the events channel for writes that queued deliveries: after their
/// commit and outside their transaction, at most one per couple of milliseconds. A
/// `NOTIFY` inside the writing transaction would hold PostgreSQL's notification lock
/// until that commit is flushed, serialising every such commit in the database.
async fn announce_loop(pool: PgPool, requests: std::sync::Arc<tokio::sync::Notify>) {
    loop {
        requests.notified().await;
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(events::EVENTS_CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "announcing queued deliveries failed; other nodes will poll");
        }
        // Writes committing meanwhile share the next announcement.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Calls `on_payload` for every notification on `channel`, and `on_lost` whenever the
/// connection dropped (the listener reconnects by itself, but what was sent meanwhile
/// is gone). Returns on errors it cannot recover from. The listener has a
/// one-connection pool of its own, so closing the store's pool never waits for it.
async fn listen(
    options: &PgConnectOptions,
    channel: &str,
    on_payload: &(dyn Fn(&str) + Send + Sync),
    on_lost: &(dyn Fn() + Send + Sync),
) -> Result<(), sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options.clone());
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    loop {
        // `recv` would reconnect silently; `try_recv` says when it had to.
        match listener.try_recv().await? {
            Some(notification) => on_payload(notification.payload()),
            None => {
                tracing::warn!(channel, "notification connection lost; reconnecting");
                on_lost();
            }
        }
    }
}

/// Listens on `channel` for as long as the task lives; after a failure it starts over
/// and calls `on_lost`, since notifications sent meanwhile are gone.
pub(crate) fn spawn_listener(
    options: PgConnectOptions,
    channel: &'static str,
    on_payload: Box<dyn Fn(&str) + Send + Sync>,
    on_lost: Box<dyn Fn() + Send + Sync>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listen(&options, channel, &*on_payload, &*on_lost).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, channel, "notifications lost; reconnecting");
                    on_lost();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db_err)
    }

    fn event_signal(&self) -> std::sync::Arc<EventSignal> {
        self.signal.clone()
    }

    fn watch_events(&self) {
        let wake = self.signal.clone();
        let on_lost = self.signal.clone();
        let task = spawn_listener(
            self.options.clone(),
            events::EVENTS_CHANNEL,
            Box::new(move |_| wake.notify()),
            // Something may have been queued while we were deaf.
            Box::new(move || on_lost.notify()),
        );
        if let Some(old) = self.listener.lock().replace(task) {
            old.abort();
        }
    }

    fn watch_changes(&self, on_change: OnChange) {
        self.changes.subscribe(on_change);
        self.listen_for_changes();
    }

    async fn close(&self) {
        for listener in [&self.listener, &self.change_listener] {
            if let Some(task) = listener.lock().take() {
                task.abort();
            }
        }
        self.announcer.abort();
        self.relaxed.close().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod scratch;
#[cfg(test)]
mod upgrade_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_short_stable_hex() {
        let fp = PostgresStore::schema_fingerprint();
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(fp, PostgresStore::schema_fingerprint());
    }

    #[test]
    fn json_text_replaces_nul_in_strings_and_keys_only() {
        let plain = serde_json::json!({"a": ["x", 1, null]});
        assert_eq!(json_text(&plain), plain.to_string());
        let nul = serde_json::json!({"k\u{0}": ["a\u{0}b", "\\u0000"]});
        let cleaned: Value = serde_json::from_str(&json_text(&nul)).expect("json");
        assert_eq!(
            cleaned,
            serde_json::json!({"k\u{FFFD}": ["a\u{FFFD}b", "\\u0000"]})
        );
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _, _)| *v).collect();
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, expected);
    }

    /// A value PostgreSQL refuses as data (class 22: text that is not JSON) is the
    /// request's mistake: `Invalid` with PostgreSQL's description, never an outage.
    /// Needs `PICLOUD_TEST_DATABASE_URL`, like the upgrade tests.
    #[tokio::test]
    async fn a_data_exception_is_invalid_input() {
        use sqlx::Connection;
        let Ok(url) = std::env::var("PICLOUD_TEST_DATABASE_URL") else {
            return;
        };
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("reach PostgreSQL");
        let e = sqlx::query("SELECT 'apple'::jsonb")
            .execute(&mut conn)
            .await
            .expect_err("not JSON");
        match db_err(e) {
            StoreError::Invalid(message) => assert!(message.contains("json"), "{message}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
