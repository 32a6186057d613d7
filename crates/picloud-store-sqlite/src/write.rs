//! The writer connection's transactions, and the check that keeps one that could not
//! be ended from serving the next write.
//!
//! When a COMMIT fails on a full disk, SQLite has usually rolled the transaction back
//! already, so sqlx's own ROLLBACK on drop fails too ("no transaction is active") and
//! sqlx still counts the connection as inside a transaction. Handed back as it was,
//! the one writer refused every later `BEGIN IMMEDIATE` for good, and a plain `BEGIN`
//! became a SAVEPOINT that opened a real transaction nothing ever committed: later
//! single-statement writes went into it and were reported done, then lost. The check
//! runs as the pool's `after_release`, so it covers every use of the writer, inside a
//! transaction or not.

use picloud_store::{Change, StoreResult};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Sqlite, Transaction};

use crate::{db_err, SqliteStore};

pub(crate) type WriteTx = Transaction<'static, Sqlite>;

impl SqliteStore {
    /// Starts a write. `IMMEDIATE` takes SQLite's write lock now rather than at the
    /// first write, so the transaction cannot fail later with `SQLITE_BUSY` after it
    /// has read what it decides on.
    pub(crate) async fn begin_write(&self) -> StoreResult<WriteTx> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }

    /// Commits a write and, when it queued deliveries, wakes the dispatcher: the
    /// wake-up belongs to the commit, so no caller has to remember it (and none can
    /// send it before the rows are visible).
    pub(crate) async fn commit_queued(&self, tx: WriteTx, queued: bool) -> StoreResult<()> {
        commit(tx).await?;
        if queued {
            self.signal.notify();
        }
        Ok(())
    }

    /// After the commit of a write to cached rows: every cache in this process (the
    /// only one on a SQLite file) drops what the write made stale.
    pub(crate) fn changed(&self, changes: &[Change]) {
        self.changes.publish(changes);
    }
}

/// Commits, or reports why not. A failed commit leaves the transaction to its drop
/// (a rollback) and the connection to [`fit_for_reuse`].
pub(crate) async fn commit(tx: WriteTx) -> StoreResult<()> {
    tx.commit().await.map_err(db_err)
}

/// The writer pool's `after_release`: `false` closes the connection, and the pool
/// opens a fresh one for the next write. Closing a SQLite connection rolls back
/// whatever it still had open, so the WAL never gets a half-made transaction.
pub(crate) async fn fit_for_reuse(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A transaction dropped without commit queues its rollback on the connection's
    // worker; one round trip lets it run before we look again.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::error!(
            "the database writer could not end a failed transaction; \
             replacing its connection"
        );
        return Ok(false);
    }
    Ok(true)
}
