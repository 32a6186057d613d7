//! The storage surface every backend implements: one trait per resource, gathered in
//! [`Store`], returning the models of [`models`] and a small [`StoreError`].
//!
//! Backends own their SQL and migrations; nothing here knows a dialect. The same
//! conformance suite (`picloud-testkit`) runs against every implementation.

pub mod batch;
pub mod changes;
pub mod claim;
pub mod cron;
pub mod docs;
pub mod docs_index;
pub mod events;
pub mod fanout;
pub mod files;
pub mod identity;
pub mod models;
pub mod page;
pub mod pubsub;
pub mod range;
pub mod secrets;
pub mod signal;
pub mod trigger_row;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::access::Role;
use picloud_core::{
    ApiKeyId, AppId, AuditId, ErrorCode, ExecutionId, RouteId, ScriptId, SessionId, UserId,
};

pub use batch::{deleted, inserted_once, Batcher, Flushed};
pub use changes::{Change, ChangeFeed, OnChange};
pub use claim::{AppRoom, Candidate, ClaimPlan};
pub use cron::{
    cron_event, first_window, CronFire, CronState, CronStore, DueCron, Leadership, SoleLeader,
};
pub use docs::{docs_event_for, Condition, Doc, DocsStore, FieldPath, Patch, Query, QueryError};
pub use docs_index::{DocsIndex, DocsIndexStore, IndexDeclared};
pub use events::*;
pub use fanout::{FanOut, Target};
pub use files::{files_event, FileMeta, FileUpdate, FilesStore, NewBytes, NewFile};
pub use models::*;
pub use page::{Cursor, Page, PageError, PageRequest};
pub use pubsub::{pubsub_event, validate_topic, PubsubStore, TopicError, TopicPattern};
pub use range::prefix_end;
pub use secrets::{DataKeyRow, Flip, SecretMeta, SecretRow, SecretStore};
pub use signal::EventSignal;
pub use trigger_row::{trigger_config, TriggerColumns};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; the message says which, in user terms.
    #[error("{0}")]
    Conflict(String),
    #[error("invalid cursor")]
    InvalidCursor,
    /// The request cannot be applied to the stored data (a patch's `$inc` on a
    /// string, a document grown past its size limit); nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// The database cannot take the request now (see [`Outage`]); retrying later
    /// may succeed. `source` is the driver's error, for the server log only.
    #[error("database unavailable ({outage}): {source}")]
    Unavailable {
        outage: Outage,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("storage error: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Box::new(e))
    }

    pub fn unavailable(outage: Outage, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable {
            outage,
            source: Box::new(e),
        }
    }

    /// The public error code of this kind of failure; the server derives the status
    /// from it (`ErrorCode::status`), so every endpoint answers it alike.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound => ErrorCode::NotFound,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            // A cursor is something the client sends back verbatim: a bad one is a
            // malformed request, like a bad `limit`.
            StoreError::InvalidCursor => ErrorCode::BadRequest,
            StoreError::Invalid(_) => ErrorCode::Invalid,
            StoreError::Unavailable { .. } => ErrorCode::Unavailable,
            StoreError::Other(_) => ErrorCode::Internal,
        }
    }

    /// The outage behind this error, when it is one (worth retrying later).
    pub fn outage(&self) -> Option<Outage> {
        match self {
            StoreError::Unavailable { outage, .. } => Some(*outage),
            StoreError::NotFound
            | StoreError::Conflict(_)
            | StoreError::InvalidCursor
            | StoreError::Invalid(_)
            | StoreError::Other(_) => None,
        }
    }
}

/// Why the database cannot serve a request right now. A write that failed with one
/// was not committed — except when a connection is lost during its COMMIT, where
/// the database alone knows whether it was. Either way nothing reports it as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The disk holding the database is full (SQLite `SQLITE_FULL`, PostgreSQL
    /// `disk_full`).
    DiskFull,
    /// The connection broke mid-request: the server restarted, the network dropped,
    /// an administrator ended the session.
    ConnectionLost,
    /// The database stayed locked, ran out of connections, or timed out.
    Busy,
}

impl Outage {
    /// What a client is told: no SQL, no file path, nothing from the driver.
    pub fn message(self) -> &'static str {
        match self {
            Outage::DiskFull => "the database is out of disk space; try again later",
            Outage::ConnectionLost => "the connection to the database was lost; try again",
            Outage::Busy => "the database is busy; try again later",
        }
    }
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outage::DiskFull => "disk full",
            Outage::ConnectionLost => "connection lost",
            Outage::Busy => "busy",
        })
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Instance-wide key/value settings (the master-key check value, …).
#[async_trait]
pub trait MetaStore {
    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores `value` unless the key already has one; returns the value now stored.
    async fn init_meta(&self, key: &str, value: &str) -> StoreResult<String>;
}

#[async_trait]
pub trait AppStore {
    /// `Conflict` when the slug is taken.
    async fn create_app(&self, new: NewApp) -> StoreResult<App>;
    async fn get_app(&self, id: &AppId) -> StoreResult<App>;
    async fn get_app_by_slug(&self, slug: &str) -> StoreResult<App>;
    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>>;
    async fn update_app(&self, id: &AppId, patch: AppPatch) -> StoreResult<App>;
    /// Deletes the app and everything it owns.
    async fn delete_app(&self, id: &AppId) -> StoreResult<()>;
}

#[async_trait]
pub trait ScriptStore {
    /// `Conflict` when the app already has a script of that name.
    async fn create_script(&self, new: NewScript) -> StoreResult<Script>;
    async fn get_script(&self, id: &ScriptId) -> StoreResult<Script>;
    async fn list_scripts(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Script>>;
    /// Bumps `updated_at`, which is what invalidates compiled copies. `Conflict`
    /// naming the importers when a module that other scripts import is renamed.
    async fn update_script(&self, id: &ScriptId, patch: ScriptPatch) -> StoreResult<Script>;
    /// Deletes the script and its routes. `Conflict` naming the importers when it is a
    /// module other scripts import.
    async fn delete_script(&self, id: &ScriptId) -> StoreResult<()>;
    /// The app's module of that name (`NotFound` for endpoints and other apps).
    async fn get_module(&self, app: &AppId, name: &str) -> StoreResult<Script>;
    /// Every import edge of the app, sorted by script name then module.
    async fn import_edges(&self, app: &AppId) -> StoreResult<Vec<ImportEdge>>;
}

/// The `Conflict` message for a script name the app already uses.
pub fn script_name_taken(name: &str) -> String {
    format!("the app already has a script named {name:?}")
}

/// The `Invalid` message for an import of a module the app does not have.
pub fn no_module(module: &str) -> String {
    format!("the app has no module named {module:?}")
}

/// The import cycle through `start`, as `start → … → start`, if the edges hold one.
/// Stores check it inside the write, so two saves racing each other cannot build a
/// cycle that neither saw.
pub fn import_cycle(edges: &[ImportEdge], start: &str) -> Option<Vec<String>> {
    fn walk<'a>(
        edges: &'a [ImportEdge],
        at: &'a str,
        start: &str,
        seen: &mut std::collections::BTreeSet<&'a str>,
        path: &mut Vec<&'a str>,
    ) -> bool {
        for edge in edges.iter().filter(|e| e.script_name == at) {
            if edge.module == start {
                return true;
            }
            if seen.insert(&edge.module) {
                path.push(&edge.module);
                if walk(edges, &edge.module, start, seen, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let found = walk(edges, start, start, &mut Default::default(), &mut path);
    found.then(|| {
        path.push(start);
        path.into_iter().map(str::to_owned).collect()
    })
}

/// The `Invalid` message for an import cycle.
pub fn circular_import(cycle: &[String]) -> String {
    format!("circular import: {}", cycle.join(" → "))
}

/// The `Conflict` message for a module that is still imported.
pub fn module_in_use(module: &str, importers: &[String]) -> String {
    format!(
        "module {module:?} is imported by {}",
        importers
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[async_trait]
pub trait RouteStore {
    /// `Conflict` naming the existing route when one in the app has the same path shape
    /// and an overlapping method (equal, or either is `ANY`).
    async fn create_route(&self, new: NewRoute) -> StoreResult<Route>;
    async fn get_route(&self, id: &RouteId) -> StoreResult<Route>;
    async fn list_routes(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Route>>;
    /// Every route of an app with the script it runs: what the data plane's route table
    /// is built from.
    async fn route_targets(&self, app: &AppId) -> StoreResult<Vec<RouteTarget>>;
    async fn delete_route(&self, id: &RouteId) -> StoreResult<()>;
}

#[async_trait]
pub trait UserStore {
    async fn count_users(&self) -> StoreResult<u64>;
    /// `Conflict` when the email is taken.
    async fn create_user(&self, new: NewUser) -> StoreResult<User>;
    /// Creates the user only if no user exists at all, atomically; `Conflict` otherwise.
    async fn create_first_user(&self, new: NewUser) -> StoreResult<User>;
    async fn get_user(&self, id: &UserId) -> StoreResult<User>;
    async fn get_user_by_email(&self, email: &str) -> StoreResult<User>;
    async fn list_users(&self, page: &PageRequest) -> StoreResult<Page<User>>;
    /// `Conflict` ([`identity::LAST_ADMIN`]) when the change would leave no enabled
    /// instance admin, checked inside the write so that two concurrent changes cannot
    /// both pass.
    async fn update_user(&self, id: &UserId, patch: UserPatch) -> StoreResult<User>;
    /// Deletes the user with their sessions, keys and memberships; `Conflict` as for
    /// [`UserStore::update_user`] when they are the last enabled instance admin.
    async fn delete_user(&self, id: &UserId) -> StoreResult<()>;
}

#[async_trait]
pub trait SessionStore {
    async fn create_session(&self, new: NewSession) -> StoreResult<Session>;
    /// The live (unexpired) session with this token hash, and its user.
    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(Session, User)>;
    /// Slides the expiry forward.
    async fn touch_session(
        &self,
        id: &SessionId,
        used_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn delete_session(&self, id: &SessionId) -> StoreResult<()>;
    /// Ends every session of a user (a password change); returns how many.
    async fn delete_user_sessions(&self, user: &UserId) -> StoreResult<u64>;
    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}

#[async_trait]
pub trait ExecutionStore {
    /// Writes a batch of finished runs in one transaction. Records of apps deleted
    /// meanwhile are dropped silently.
    async fn insert_executions(&self, batch: &[Execution]) -> StoreResult<()>;
    async fn get_execution(&self, app: &AppId, id: &ExecutionId) -> StoreResult<Execution>;
    /// Newest first.
    async fn list_executions(
        &self,
        app: &AppId,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Execution>>;
    /// Deletes up to `limit` runs that started before `cutoff`; returns how many.
    async fn delete_executions_before(&self, cutoff: DateTime<Utc>, limit: u32)
        -> StoreResult<u64>;
}

#[async_trait]
pub trait MemberStore {
    /// Adds the user to the app or changes their role. `NotFound` if either is missing.
    async fn set_member(&self, app: &AppId, user: &UserId, role: Role) -> StoreResult<Membership>;
    async fn remove_member(&self, app: &AppId, user: &UserId) -> StoreResult<()>;
    async fn list_members(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Membership>>;
    async fn memberships_of(&self, user: &UserId) -> StoreResult<Vec<Membership>>;
    async fn member_role(&self, app: &AppId, user: &UserId) -> StoreResult<Option<Role>>;
}

#[async_trait]
pub trait ApiKeyStore {
    async fn create_api_key(&self, new: NewApiKey) -> StoreResult<ApiKey>;
    /// The unexpired key with this hash, and its owner.
    async fn api_key_by_hash(
        &self,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiKey, User)>;
    async fn get_api_key(&self, id: &ApiKeyId) -> StoreResult<ApiKey>;
    /// Keys of one user, or of everyone with `None`; newest first.
    async fn list_api_keys(
        &self,
        user: Option<&UserId>,
        page: &PageRequest,
    ) -> StoreResult<Page<ApiKey>>;
    async fn touch_api_key(&self, id: &ApiKeyId, used_at: DateTime<Utc>) -> StoreResult<()>;
    async fn delete_api_key(&self, id: &ApiKeyId) -> StoreResult<()>;
}

#[async_trait]
pub trait AuditStore {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Sets the outcome, and the app once known, of an entry appended before its
    /// request ran (with status [`AuditEntry::PENDING`]).
    async fn finish_audit(&self, id: &AuditId, status: u16, app: Option<&AppId>)
        -> StoreResult<()>;
    /// Removes an entry appended for a request that turned out to be no one's.
    async fn delete_audit(&self, id: &AuditId) -> StoreResult<()>;
    /// Newest first; only the app's entries when `app` is given.
    async fn list_audit(
        &self,
        app: Option<&AppId>,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditEntry>>;
}

/// Everything PiCloud stores, behind one object picked at start-up.
#[async_trait]
pub trait Store:
    MetaStore
    + AppStore
    + ScriptStore
    + RouteStore
    + UserStore
    + SessionStore
    + ExecutionStore
    + MemberStore
    + ApiKeyStore
    + AuditStore
    + KvStore
    + DocsStore
    + DocsIndexStore
    + FilesStore
    + PubsubStore
    + SecretStore
    + TriggerStore
    + CronStore
    + EventStore
    + DeadLetterStore
    + AbandonedStore
    + Send
    + Sync
{
    fn backend(&self) -> Backend;
    /// The dispatcher's wake-up. The store signals it after every commit that made
    /// outbox rows claimable; callers only wait on it.
    fn event_signal(&self) -> std::sync::Arc<EventSignal>;
    /// Also signals [`Store::event_signal`] whenever another process sharing the
    /// database queues deliveries. Backends without cross-process notifications
    /// (SQLite: one process) do nothing.
    fn watch_events(&self) {}
    /// Calls `on_change` for every committed change to cached rows, made by this
    /// process or (PostgreSQL) another one on the same database, and with
    /// [`Change::All`] whenever announcements may have been missed (a reconnect).
    /// The store's write methods announce by themselves; see [`changes`].
    fn watch_changes(&self, on_change: OnChange);
    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes connections; pending work is finished first.
    async fn close(&self);
}
