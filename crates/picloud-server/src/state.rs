//! Shared server state: `Arc`s of the services handlers call.

use std::sync::Arc;

use parking_lot::Mutex;
use picloud_core::config::Config;
use picloud_core::crypto;
use picloud_runtime::{CronWake, Runner};
use picloud_services::Services;
use picloud_store::{Change, Store};

use crate::auth::ratelimit::LoginLimiter;
use crate::dataplane::routing::Routing;

/// What every handler shares, behind one `Arc`: axum clones the state for every layer
/// of every request, and one reference count is cheaper than a dozen.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// Engine, executor, execution recorder and metrics.
    pub runner: Runner,
    pub services: Arc<Services>,
    /// Wakes the cron scheduler when a cron trigger changes.
    pub cron_wake: Arc<CronWake>,
    pub routing: Arc<Routing>,
    pub setup: Arc<SetupToken>,
    /// Key of the CSRF tokens of cookie sessions (derived from the master key).
    pub csrf_key: Arc<[u8; 32]>,
    pub login_limiter: Arc<LoginLimiter>,
}

impl AppState {
    /// Subscribes this node's caches to the store's one stream of committed changes
    /// (this node's writes and, on PostgreSQL, every other node's): the only place
    /// caches are invalidated. Call before serving.
    pub fn watch_changes(&self) {
        let routing = self.routing.clone();
        let runner = self.runner.clone();
        let cron = self.cron_wake.clone();
        self.store.watch_changes(Arc::new(move |change: &Change| {
            forget(&routing, &runner, &cron, change)
        }));
    }

    pub fn session_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.session_ttl).unwrap_or(chrono::Duration::days(1))
    }
}

/// Drops this node's cached copies of what `change` touched.
fn forget(routing: &Routing, runner: &Runner, cron: &CronWake, change: &Change) {
    match change {
        Change::App(app) => {
            routing.invalidate_app(app);
            runner.app_changed(app);
        }
        Change::AppDeleted(app) => {
            routing.invalidate_app(app);
            runner.app_deleted(app);
            // Its cron triggers went with it.
            cron.notify();
        }
        Change::Routes(app) => routing.invalidate_routes(app),
        Change::Script(script) => runner.forget_script(script),
        Change::CronSchedules => cron.notify(),
        Change::All => {
            routing.clear();
            runner.forget_all();
            cron.notify();
        }
    }
}

/// The one-time token that lets the first user be created through the API. Only its
/// hash is kept; it dies when used.
#[derive(Default)]
pub struct SetupToken {
    hash: Mutex<Option<String>>,
}

impl SetupToken {
    /// Creates a fresh token and returns it (to be printed once).
    pub fn issue(&self) -> String {
        let token = crypto::generate_token("pst_");
        *self.hash.lock() = Some(crypto::hash_token(&token));
        token
    }

    pub fn matches(&self, token: &str) -> bool {
        match self.hash.lock().as_deref() {
            Some(hash) => {
                crypto::constant_time_eq(hash.as_bytes(), crypto::hash_token(token).as_bytes())
            }
            None => false,
        }
    }

    pub fn revoke(&self) {
        *self.hash.lock() = None;
    }
}
