//! Changes to rows that nodes cache, announced by the write that made them (DESIGN.md
//! decision 8). Each backend's write path says which [`Change`]s it made; the backend
//! delivers them to its [`ChangeFeed`] after the commit — in process on SQLite, and on
//! PostgreSQL also by `NOTIFY` sent inside the transaction, so that every node hears
//! them at commit and none hears of a rolled-back write. Whoever caches subscribes to
//! the feed with [`crate::Store::watch_changes`]; no caller of the store announces.

use std::sync::{Arc, PoisonError, RwLock};

use picloud_core::model::TriggerKind;
use picloud_core::{AppId, ScriptId};

/// Something other processes may hold in a cache, changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The app was renamed or changed.
    App(AppId),
    /// The app was deleted with everything it owns: also forget per-app state that
    /// outlives edits (the executor's slot counter).
    AppDeleted(AppId),
    /// The app's routes, or the scripts they run, changed.
    Routes(AppId),
    /// A script's source or name changed, or it was deleted.
    Script(ScriptId),
    /// A cron trigger was created, enabled, disabled or deleted: the scheduler,
    /// wherever it runs, recomputes when it next wakes.
    CronSchedules,
    /// Anything may have changed: drop every cache.
    All,
}

impl Change {
    /// What editing or deleting a script changes: its compiled copy and row, and the
    /// route table of its app (which holds the scripts it runs).
    pub fn script(app: &AppId, script: &ScriptId) -> [Change; 2] {
        [Change::Script(script.clone()), Change::Routes(app.clone())]
    }

    /// What writing a trigger of `kind` changes: only cron triggers are cached (as the
    /// scheduler's next wake-up).
    pub fn trigger(kind: TriggerKind) -> Option<Change> {
        match kind {
            TriggerKind::Cron => Some(Change::CronSchedules),
            TriggerKind::Kv
            | TriggerKind::Docs
            | TriggerKind::Files
            | TriggerKind::Pubsub
            | TriggerKind::DeadLetter => None,
        }
    }

    /// The form sent between processes.
    pub fn encode(&self) -> String {
        match self {
            Change::App(id) => format!("app:{id}"),
            Change::AppDeleted(id) => format!("app-deleted:{id}"),
            Change::Routes(id) => format!("routes:{id}"),
            Change::Script(id) => format!("script:{id}"),
            Change::CronSchedules => "cron".to_owned(),
            Change::All => "all".to_owned(),
        }
    }

    /// Reads [`Change::encode`]'s form; anything unreadable means [`Change::All`] (a
    /// newer node may announce kinds this one does not know).
    pub fn decode(text: &str) -> Change {
        let parsed = match text.split_once(':') {
            Some(("app", id)) => AppId::parse(id).ok().map(Change::App),
            Some(("app-deleted", id)) => AppId::parse(id).ok().map(Change::AppDeleted),
            Some(("routes", id)) => AppId::parse(id).ok().map(Change::Routes),
            Some(("script", id)) => ScriptId::parse(id).ok().map(Change::Script),
            None if text == "cron" => Some(Change::CronSchedules),
            _ => None,
        };
        parsed.unwrap_or(Change::All)
    }
}

/// Called with every change; must be cheap and must not block (it runs on the writing
/// task, or on the notification listener).
pub type OnChange = Arc<dyn Fn(&Change) + Send + Sync>;

/// The one stream of changes in a process: backends publish, caches subscribe.
#[derive(Default)]
pub struct ChangeFeed {
    subscribers: RwLock<Vec<OnChange>>,
}

impl ChangeFeed {
    pub fn subscribe(&self, on_change: OnChange) {
        self.subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(on_change);
    }

    /// Hands `changes` to every subscriber. Backends call it only after the commit
    /// that made the changes: a cache refilled before then would keep the old rows.
    pub fn publish(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for change in changes {
            for on_change in subscribers.iter() {
                on_change(change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_survives_encoding() {
        let app = AppId::new();
        let script = ScriptId::new();
        for change in [
            Change::App(app.clone()),
            Change::AppDeleted(app.clone()),
            Change::Routes(app),
            Change::Script(script),
            Change::CronSchedules,
            Change::All,
        ] {
            assert_eq!(Change::decode(&change.encode()), change);
        }
        assert_eq!(Change::decode("from-a-newer-node:x"), Change::All);
    }

    #[test]
    fn subscribers_hear_every_published_change() {
        let feed = ChangeFeed::default();
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = heard.clone();
        feed.subscribe(Arc::new(move |c: &Change| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(c.clone())
        }));
        feed.publish(&[Change::CronSchedules, Change::All]);
        assert_eq!(
            *heard.lock().unwrap_or_else(PoisonError::into_inner),
            vec![Change::CronSchedules, Change::All]
        );
    }
}
