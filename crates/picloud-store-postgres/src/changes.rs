//! Announcing changes to cached rows between nodes (see `picloud_store::changes`).
//!
//! A write that changes cached rows sends `NOTIFY` inside its own transaction:
//! PostgreSQL delivers it to every listening node, this one included, at commit, and
//! drops it with a rollback. After the commit the writer also hands the changes to its
//! own feed at once, so the request that follows on this node cannot be served from a
//! cache the notification has not reached yet; the echo that arrives later repeats an
//! invalidation, which costs one reload. Admin writes are rare, so the notification
//! lock NOTIFY takes at commit does not matter here (the outbox's hot path announces
//! outside its transactions instead, see `announce_loop`).

use picloud_store::{Change, StoreResult};
use sqlx::PgConnection;

use crate::{db_err, spawn_listener, PostgresStore};

/// The channel on which nodes announce changes to cached rows.
pub(crate) const CHANGES_CHANNEL: &str = "picloud_changes";

/// Queues the notifications of `changes` in the transaction `conn` is in.
pub(crate) async fn announce_in(conn: &mut PgConnection, changes: &[Change]) -> StoreResult<()> {
    for change in changes {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(change.encode())
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

impl PostgresStore {
    /// After the commit that announced `changes`: this node's caches follow at once.
    pub(crate) fn changed(&self, changes: &[Change]) {
        self.changes.publish(changes);
    }

    /// Feeds other nodes' announcements (and this node's echoes) into the feed, once
    /// per store; after a lost connection everything is dropped, since what was
    /// announced meanwhile is gone.
    pub(crate) fn listen_for_changes(&self) {
        let mut listener = self.change_listener.lock();
        if listener.is_some() {
            return;
        }
        let feed = self.changes.clone();
        let on_lost = self.changes.clone();
        *listener = Some(spawn_listener(
            self.options.clone(),
            CHANGES_CHANNEL,
            Box::new(move |payload| feed.publish(&[Change::decode(payload)])),
            Box::new(move || on_lost.publish(&[Change::All])),
        ));
    }
}
