//! PiCloud's store on embedded SQLite.
//!
//! One file in WAL mode. Writes go through a pool of exactly one connection, so
//! in-process writers queue instead of spinning on `SQLITE_BUSY`; reads use a separate
//! pool and never wait for writers.

mod abandoned;
mod apps;
mod audit;
mod batch;
mod cron;
mod dead_letters;
mod direct;
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
#[cfg(test)]
mod upgrade_tests;
mod users;
mod write;
#[cfg(test)]
mod write_tests;

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use picloud_store::{
    Backend, ChangeFeed, EventSignal, MetaStore, OnChange, Outage, Store, StoreError, StoreResult,
};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

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
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Signalled after every commit that queued deliveries (see `commit_queued`).
    signal: Arc<EventSignal>,
    /// Told after every commit that changed cached rows (see `changed`).
    changes: ChangeFeed,
    /// Group commit of queuing and completing deliveries.
    outbox: outbox_batch::OutboxBatches,
    /// Point reads of the service calls, on the caller's thread (`direct.rs`).
    direct: direct::Readers,
    /// Group commit of the service calls' writes (`batch.rs`).
    batch: batch::Writer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let store = Self::connect(path).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens without migrating.
    pub async fn connect(path: &Path) -> StoreResult<Self> {
        Self::connect_with(options(path)).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> StoreResult<Self> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // A local file's connection has nothing to test: the check cost every
            // write a round trip to the connection's thread.
            .test_before_acquire(false)
            .after_release(|conn, _| Box::pin(write::fit_for_reuse(conn)))
            .connect_with(options.clone())
            .await
            .map_err(StoreError::other)?;
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2);
        let reader = SqlitePoolOptions::new()
            .max_connections(u32::try_from(readers).unwrap_or(4).max(2))
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .connect_with(options.clone().read_only(true))
            .await
            .map_err(StoreError::other)?;
        let max_page_count: i64 = sqlx::query_scalar("PRAGMA max_page_count")
            .fetch_one(&writer)
            .await
            .map_err(db_err)?;
        let path = options.get_filename().to_owned();
        let signal: Arc<EventSignal> = Arc::default();
        let outbox = outbox_batch::OutboxBatches::start(&writer, &signal);
        let batch = batch::Writer::start(batch::WriterParts {
            path: path.clone(),
            lock: writer.clone(),
            signal: signal.clone(),
            max_page_count,
        })?;
        Ok(Self {
            writer,
            reader,
            signal,
            changes: ChangeFeed::default(),
            outbox,
            direct: direct::Readers::new(&path),
            batch,
        })
    }

    /// Applies pending migrations with foreign keys off, as SQLite's procedure for
    /// rebuilding a table asks (a migration that drops and recreates a parent table
    /// would otherwise cascade the drop into its children). SQLite ignores the pragma
    /// inside a transaction, and every migration runs in one, so it is set on the
    /// connection around them; the keys are checked before it is handed back.
    pub async fn migrate(&self) -> StoreResult<()> {
        self.migrate_with(migrator()).await
    }

    async fn migrate_with(&self, migrator: Migrator) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(db_err)?;
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
        let migrated = migrator.run(&mut *conn).await.map_err(StoreError::other);
        let violations = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err);
        let restored = sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *conn)
            .await
            .map_err(db_err);
        if restored.is_err() {
            // Never hand a connection without foreign keys back to the pool.
            conn.detach();
        }
        migrated?;
        restored?;
        if !violations?.is_empty() {
            return Err(StoreError::other(std::io::Error::other(
                "a migration left rows whose parents are missing",
            )));
        }
        Ok(())
    }
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("temp_store", "memory")
}

/// Formats a timestamp so that text order is time order.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn col_ts(row: &SqliteRow, col: &str) -> StoreResult<DateTime<Utc>> {
    let text: String = row.try_get(col).map_err(StoreError::other)?;
    parse_ts(&text)
}

pub(crate) fn parse_ts(text: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(StoreError::other)
}

/// The stored size of a text column, for read budgets: measured before the row is
/// decoded.
pub(crate) fn stored_len(row: &SqliteRow, name: &str) -> usize {
    row.try_get::<&str, _>(name).map_or(0, str::len)
}

pub(crate) fn col<'r, T>(row: &'r SqliteRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name).map_err(StoreError::other)
}

pub(crate) fn col_opt_ts(row: &SqliteRow, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    let text: Option<String> = row.try_get(col).map_err(StoreError::other)?;
    text.map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(StoreError::other)
    })
    .transpose()
}

pub(crate) fn col_enum<T: FromStr>(row: &SqliteRow, name: &str) -> StoreResult<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = col(row, name)?;
    text.parse().map_err(StoreError::other)
}

/// Maps a failed statement: unique violations become `Conflict(message)`, a full
/// disk or a lock held too long `Unavailable`.
pub(crate) fn map_err(e: sqlx::Error, conflict: &str) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(conflict.to_owned())
        }
        // A JSON function handed text that is not JSON: the request's value, never an
        // outage. (SQLite reports it as a plain SQLITE_ERROR, like a bug of ours, so
        // only its message tells them apart.)
        sqlx::Error::Database(db) if db.message().contains("malformed JSON") => {
            StoreError::Invalid("a value in the request is not valid JSON".to_owned())
        }
        _ => match outage(&e) {
            Some(outage) => StoreError::unavailable(outage, e),
            None => StoreError::other(e),
        },
    }
}

/// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;
/// `SQLITE_IOERR_SHMSIZE`: the shared-memory index could not grow (a full disk).
const SQLITE_IOERR_SHMSIZE: i32 = SQLITE_IOERR | (19 << 8);

fn outage(e: &sqlx::Error) -> Option<Outage> {
    match e {
        sqlx::Error::Database(db) => {
            let code: i32 = db.code()?.parse().ok()?;
            match code & 0xff {
                SQLITE_FULL => Some(Outage::DiskFull),
                SQLITE_IOERR if code == SQLITE_IOERR_SHMSIZE => Some(Outage::DiskFull),
                SQLITE_BUSY | SQLITE_LOCKED => Some(Outage::Busy),
                _ => None,
            }
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Some(Outage::Busy),
        _ => None,
    }
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    map_err(e, "already exists")
}

/// `NotFound` unless a statement touched a row.
pub(crate) fn expect_row(affected: u64) -> StoreResult<()> {
    if affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)
    }

    async fn init_meta(&self, key: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await
            .map_err(db_err)?;
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_one(&self.writer)
            .await
            .map_err(db_err)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn event_signal(&self) -> Arc<EventSignal> {
        self.signal.clone()
    }

    fn watch_changes(&self, on_change: OnChange) {
        self.changes.subscribe(on_change);
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(db_err)
    }

    async fn close(&self) {
        self.batch.close();
        self.direct.close();
        self.reader.close().await;
        self.writer.close().await;
    }
}
