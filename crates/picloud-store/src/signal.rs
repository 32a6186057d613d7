//! The dispatcher's wake-up, owned by the store: every store method that makes an
//! outbox row claimable (a write that queued deliveries, a replay, a cron fire, a
//! retry) signals after its commit, so no caller has to remember to (DESIGN.md
//! decision 8). A wake-up is a hint: the dispatcher also polls, so one lost to a
//! crash between commit and signal costs at most a poll interval.

use tokio::sync::Notify;

/// Wakes the dispatcher when the outbox gained work. One per store; the dispatcher
/// waits on [`EventSignal::notified`], the store's write paths call `notify`.
#[derive(Debug, Default)]
pub struct EventSignal(Notify);

impl EventSignal {
    /// For the store's write paths (and, on PostgreSQL, for other nodes' announcements
    /// the store listens to); nothing above the store calls it.
    pub fn notify(&self) {
        // `notify_one` keeps a permit when no one waits, so a wake-up sent while the
        // dispatcher is busy is seen at its next wait.
        self.0.notify_one();
    }

    pub async fn notified(&self) {
        self.0.notified().await;
    }
}
