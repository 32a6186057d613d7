//! Direct SQLite connections for the hot service calls (KV get/set/delete, document
//! get/create): plain synchronous SQLite on the calling thread, no hand-off.
//!
//! sqlx runs every SQLite connection on a worker thread of its own, so each statement
//! is two thread switches (there and back), and a pool checkout is more. A point read
//! costs SQLite a few microseconds; through sqlx it cost a hundred in switches. Reads
//! here run on the caller's thread (a script thread blocks on its call anyway); writes
//! go to the group-commit writer (`batch.rs`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use picloud_store::{Outage, StoreError, StoreResult};
use rusqlite::{ffi, Connection, OpenFlags};

/// Idle read connections kept for reuse; more may be open while callers overlap.
const MAX_IDLE_READERS: usize = 16;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection to the store's file with the settings every sqlx connection of
/// the store has (WAL is the file's, set when the store opened it).
pub(crate) fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The statements here are few and run constantly: keep them all prepared.
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// A small pool of read-only connections, used on the caller's thread.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on an idle reader (opening one if none is idle). Synchronous: meant for
    /// point reads of microseconds, so it never holds an async worker for long.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match taken {
            Some(conn) => conn,
            None => open(&self.path, true).map_err(direct_err)?,
        };
        let out = f(&conn);
        // A connection left inside a transaction (it should never be: reads here are
        // single statements) is dropped rather than reused.
        if conn.is_autocommit() {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(conn);
                }
            }
        }
        out
    }

    pub(crate) fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// Maps a failed statement like `crate::map_err` does for sqlx: unique violations are
/// `Conflict`, a missing parent row (the app) `NotFound`, a full disk or a lock held
/// too long `Unavailable`, text that is not JSON `Invalid`.
pub(crate) fn direct_err(e: rusqlite::Error) -> StoreError {
    let rusqlite::Error::SqliteFailure(failure, message) = &e else {
        return match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            other => StoreError::other(other),
        };
    };
    let code = failure.extended_code;
    match code {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
            return StoreError::Conflict("already exists".to_owned())
        }
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StoreError::NotFound,
        ffi::SQLITE_IOERR_SHMSIZE => return StoreError::unavailable(Outage::DiskFull, e),
        _ => {}
    }
    match code & 0xff {
        ffi::SQLITE_FULL => StoreError::unavailable(Outage::DiskFull, e),
        ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => StoreError::unavailable(Outage::Busy, e),
        _ if message
            .as_deref()
            .is_some_and(|m| m.contains("malformed JSON")) =>
        {
            StoreError::Invalid("a value in the request is not valid JSON".to_owned())
        }
        _ => StoreError::other(e),
    }
}

/// The outage a failed statement stands for, if it is one (the writer uses it to tell
/// a lost transaction's other items why they failed too).
pub(crate) fn outage_of(e: &StoreError) -> Outage {
    e.outage().unwrap_or(Outage::Busy)
}
