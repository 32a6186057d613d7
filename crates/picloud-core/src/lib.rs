//! Domain types shared by every PiCloud crate: typed ids, the small enums that
//! describe apps, scripts, routes and executions, configuration, and crypto helpers.

pub mod config;
pub mod crypto;
pub mod email;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod json;
pub mod model;
pub mod net;
pub mod route_pattern;
pub mod route_trie;

pub use error::ErrorCode;
pub use ids::{
    AbandonedId, ApiKeyId, AppId, AuditId, DeadLetterId, DocId, EventId, ExecutionId, FileId,
    RouteId, ScriptId, SessionId, TriggerId, UserId,
};

/// The current time, truncated to microseconds: the precision both databases keep, so
/// a value written and read back compares equal.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::{DurationRound, TimeDelta};
    let now = chrono::Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}

pub mod access;
pub mod cron;
