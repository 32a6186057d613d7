//! Rows as the rest of PiCloud sees them, independent of any SQL dialect.

use chrono::{DateTime, Utc};
use picloud_core::access::{Role, Scope};
use picloud_core::model::{
    DispatchMode, ExecutionSource, ExecutionStatus, LogLevel, RouteAuth, RouteMethod, ScriptKind,
};
use picloud_core::{ApiKeyId, AppId, AuditId, ExecutionId, RouteId, ScriptId, SessionId, UserId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewApp {
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, Default)]
pub struct AppPatch {
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub id: ScriptId,
    pub app_id: AppId,
    pub name: String,
    pub kind: ScriptKind,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewScript {
    pub app_id: AppId,
    pub name: String,
    pub kind: ScriptKind,
    pub source: String,
    /// Names of the modules the source imports (written with the script).
    pub imports: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ScriptPatch {
    pub name: Option<String>,
    pub source: Option<String>,
    /// The imports of the new source; `None` keeps the recorded ones.
    pub imports: Option<Vec<String>>,
}

/// One edge of an app's import graph: script `script_name` imports `module`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportEdge {
    pub script_id: ScriptId,
    pub script_name: String,
    pub module: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub id: RouteId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub method: RouteMethod,
    /// The pattern as the user wrote it, e.g. `/users/{id}`.
    pub path: String,
    pub dispatch_mode: DispatchMode,
    pub auth: RouteAuth,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewRoute {
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub method: RouteMethod,
    pub path: String,
    /// The path's shape with positional parameter names; routes clash on it.
    pub path_key: String,
    pub dispatch_mode: DispatchMode,
    pub auth: RouteAuth,
}

/// A route together with the script it runs.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub route: Route,
    pub script: Script,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Lower-cased.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub is_admin: bool,
    pub disabled: bool,
    /// Bumped by every change that ends the user's sessions (a disable, a new
    /// password); a session is live only while it carries the current value.
    pub session_epoch: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub is_admin: bool,
}

#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// A new password: ends the user's sessions (all but `keep_session`).
    pub password_hash: Option<String>,
    pub is_admin: Option<bool>,
    /// `Some(true)` ends every session of the user, for good: enabling them again
    /// revives none.
    pub disabled: Option<bool>,
    /// What happens to the user's API keys, in the same transaction.
    pub api_keys: KeyRevocation,
    /// The one session that outlives a new password: the caller's own, when users
    /// change their own password.
    pub keep_session: Option<SessionId>,
    /// Apply the patch only while the stored password hash is still this one: users
    /// changing their own password proved they knew it, and two such changes racing
    /// must not both succeed. `Conflict` ([`crate::identity::PASSWORD_CHANGED`])
    /// otherwise.
    pub if_password_hash: Option<String>,
}

/// What a user change does to the user's API keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyRevocation {
    /// Keys are credentials of their own; a disabled owner's keys stop working
    /// meanwhile (they are checked on every use) and work again when re-enabled.
    #[default]
    Keep,
    /// Every key of the user is deleted.
    RevokeAll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: UserId,
    /// SHA-256 of the bearer token; the token itself is never stored.
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    /// The user's `session_epoch` as read when their credentials were checked: a
    /// disable or a new password committed since then leaves the session dead on
    /// arrival, so a login racing either cannot outlive it.
    pub session_epoch: i64,
}

/// One line a script logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub id: ExecutionId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub source: ExecutionSource,
    pub status: ExecutionStatus,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub logs: Vec<LogLine>,
    /// The full error, with its position, for the owner's eyes only.
    pub error: Option<String>,
    pub error_line: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub script_id: Option<ScriptId>,
    pub status: Option<ExecutionStatus>,
    pub source: Option<ExecutionSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub app_id: AppId,
    pub user_id: UserId,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The first characters of the key, so a user can tell keys apart.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub app_id: Option<AppId>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub user_id: UserId,
    pub name: String,
    /// SHA-256 of the key; the key itself is never stored.
    pub key_hash: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub app_id: Option<AppId>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One admin mutation: who, what, which app, when, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: AuditId,
    pub at: DateTime<Utc>,
    pub user_id: Option<UserId>,
    pub key_id: Option<ApiKeyId>,
    /// e.g. `POST /api/v1/admin/apps/{app}/scripts`
    pub action: String,
    pub app_id: Option<AppId>,
    /// The object acted on, e.g. a script id.
    pub target: Option<String>,
    pub ip: Option<String>,
    /// The response's status; [`AuditEntry::PENDING`] until the request ends, and
    /// for good when its outcome could not be recorded.
    pub status: u16,
}

impl AuditEntry {
    /// The status of an entry written before its request ran.
    pub const PENDING: u16 = 0;
}
