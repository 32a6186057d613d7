//! KV, triggers, the transactional outbox, dead letters and abandoned runs: the
//! storage side of events.
//!
//! A write and the outbox rows of every trigger it matches commit in one transaction
//! (DESIGN.md decision 3). Each outbox row is one *delivery* — one event for one
//! trigger — and its id is the event id scripts see, stable across retries.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::model::{DocsOp, ExecutionSource, FilesOp, KvOp, Resolution, TriggerKind};
use picloud_core::{AbandonedId, AppId, DeadLetterId, EventId, ExecutionId, ScriptId, TriggerId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{ClaimPlan, CronState, Page, PageRequest, StoreResult};

/// How often and how patiently a delivery is retried. `max_attempts` counts every
/// run, the first included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl RetryPolicy {
    /// A dead-letter handler runs once.
    pub const ONCE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        base_delay_ms: 0,
        max_delay_ms: 0,
    };

    /// A trigger's own policy from its three nullable columns: all set, or none (the
    /// default applies). Stored values are never out of range; a corrupt one is
    /// clamped rather than failing every read of the trigger.
    pub fn from_columns(
        max_attempts: Option<i64>,
        base_delay_ms: Option<i64>,
        max_delay_ms: Option<i64>,
    ) -> Option<RetryPolicy> {
        match (max_attempts, base_delay_ms, max_delay_ms) {
            (Some(max), Some(base), Some(cap)) => Some(RetryPolicy {
                max_attempts: u32::try_from(max).unwrap_or(1),
                base_delay_ms: u64::try_from(base).unwrap_or(0),
                max_delay_ms: u64::try_from(cap).unwrap_or(0),
            }),
            _ => None,
        }
    }
}

/// What a write knows about the run that caused it, for the events it emits.
#[derive(Debug, Clone, Copy)]
pub struct EventCause {
    /// Depth of the causing run: 0 for a route, the event's depth for a handler.
    pub depth: u32,
    /// Events deeper than this are not emitted (a handler feeding itself).
    pub max_depth: u32,
    /// Retry policy of triggers without their own.
    pub default_retry: RetryPolicy,
}

impl EventCause {
    /// The depth of events this write emits, or `None` past the limit.
    pub fn child_depth(&self) -> Option<u32> {
        let depth = self.depth + 1;
        (depth <= self.max_depth).then_some(depth)
    }
}

/// The result of a write that may emit events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    /// The value before the write (`None`: there was none).
    pub prev: Option<Value>,
    /// Deliveries queued, one per matching enabled trigger.
    pub events: Vec<EventId>,
    /// Matching triggers that were skipped because the depth limit was reached.
    pub skipped_for_depth: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    pub collection: String,
    pub key: String,
    pub value: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The kind-specific part of a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerConfig {
    Kv {
        collection: String,
        ops: Vec<KvOp>,
    },
    Docs {
        collection: String,
        ops: Vec<DocsOp>,
    },
    Files {
        collection: String,
        ops: Vec<FilesOp>,
    },
    /// A topic pattern as [`crate::pubsub::TopicPattern`] parses it.
    Pubsub {
        topic: String,
    },
    /// Six fields with seconds, evaluated in `timezone` (an IANA name).
    Cron {
        schedule: String,
        timezone: String,
    },
    DeadLetter,
}

impl TriggerConfig {
    /// Refuses what no trigger of this kind can be stored with (`Invalid`): the admin
    /// API explains each field first; this keeps the rows sound whoever writes them.
    pub fn check(&self) -> crate::StoreResult<()> {
        if let TriggerConfig::Pubsub { topic } = self {
            crate::TopicPattern::parse(topic).map_err(|e| crate::StoreError::Invalid(e.0))?;
        }
        Ok(())
    }

    pub fn kind(&self) -> TriggerKind {
        match self {
            TriggerConfig::Kv { .. } => TriggerKind::Kv,
            TriggerConfig::Docs { .. } => TriggerKind::Docs,
            TriggerConfig::Files { .. } => TriggerKind::Files,
            TriggerConfig::Pubsub { .. } => TriggerKind::Pubsub,
            TriggerConfig::Cron { .. } => TriggerKind::Cron,
            TriggerConfig::DeadLetter => TriggerKind::DeadLetter,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub id: TriggerId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub enabled: bool,
    /// The trigger's own policy; `None` uses the instance defaults.
    pub retry: Option<RetryPolicy>,
    pub config: TriggerConfig,
    /// Where a cron trigger stands; `None` for every other kind.
    pub cron: Option<CronState>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub retry: Option<RetryPolicy>,
    pub config: TriggerConfig,
}

/// One delivery waiting in (or claimed from) the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub id: EventId,
    pub app_id: AppId,
    pub trigger_id: Option<TriggerId>,
    pub script_id: ScriptId,
    pub source: ExecutionSource,
    /// `{source, op, <source>: {...}}`: `ctx.event` without `id` and `attempt`; an
    /// async route call adds the `request` and `principal` its run restores (see
    /// [`ctx_event`]).
    pub payload: Value,
    /// The attempt this claim runs (1 for the first).
    pub attempt: u32,
    pub retry: RetryPolicy,
    pub depth: u32,
    pub due_at: DateTime<Utc>,
    /// Fencing token: bumped by every claim; completing needs the current one.
    pub lease_version: i64,
    pub replay_of: Option<DeadLetterId>,
    pub created_at: DateTime<Utc>,
}

impl OutboxEvent {
    /// `ctx.event` of this delivery's run.
    pub fn ctx_event(&self) -> Value {
        ctx_event(&self.payload, &self.id, self.attempt)
    }
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub app_id: AppId,
    pub trigger_id: Option<TriggerId>,
    pub script_id: ScriptId,
    pub source: ExecutionSource,
    pub payload: Value,
    pub retry: RetryPolicy,
    pub depth: u32,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: DeadLetterId,
    pub app_id: AppId,
    pub event_id: EventId,
    pub trigger_id: Option<TriggerId>,
    pub script_id: ScriptId,
    pub source: ExecutionSource,
    pub payload: Value,
    pub error: String,
    pub attempts: u32,
    pub depth: u32,
    pub resolution: Option<Resolution>,
    pub replay_of: Option<DeadLetterId>,
    pub created_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The event as its handler last saw it (`ctx.event`, with its `id` and the last
    /// `attempt`): what the admin API, `dead_letters::list` and dead-letter handlers
    /// show. A replay delivers it again under the same id.
    pub fn event(&self) -> Value {
        ctx_event(&self.payload, &self.event_id, self.attempts)
    }
}

/// Which dead letters to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterFilter {
    /// Open ones: no resolution, or a failed handler.
    Unresolved,
    Resolved,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    pub id: AbandonedId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    pub execution_id: ExecutionId,
    pub started_at: DateTime<Utc>,
    pub abandoned_at: DateTime<Utc>,
    pub reason: String,
}

/// The event a KV write emits (SCRIPTING.md "Events").
pub fn kv_event(
    op: KvOp,
    collection: &str,
    key: &str,
    value: Option<&Value>,
    prev: Option<&Value>,
) -> Value {
    json!({
        "source": "kv",
        "op": op.as_str(),
        "kv": {"collection": collection, "key": key, "value": value, "prev": prev},
    })
}

/// Payload fields that are not part of `ctx.event`: an async route call's request and
/// caller, restored into `ctx.request` and `ctx.principal` when it runs.
pub const RUN_CONTEXT_FIELDS: [&str; 2] = ["request", "principal"];

/// `ctx.event` from a delivery's payload: the payload without [`RUN_CONTEXT_FIELDS`],
/// with the event's `id` and the `attempt`.
pub fn ctx_event(payload: &Value, id: &EventId, attempt: u32) -> Value {
    let mut event: serde_json::Map<String, Value> = payload
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| !RUN_CONTEXT_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    event.insert("id".into(), Value::String(id.to_string()));
    event.insert("attempt".into(), json!(attempt));
    Value::Object(event)
}

/// The event a dead letter emits for `dead_letter` triggers.
pub fn dead_letter_event(dl: &DeadLetter) -> Value {
    json!({
        "source": "dead_letter",
        "op": "created",
        "dead_letter": {
            "id": dl.id.as_str(),
            "trigger_id": dl.trigger_id.as_ref().map(|t| t.as_str()),
            "script_id": dl.script_id.as_str(),
            "source_kind": dl.source.as_str(),
            "event": dl.event(),
            "error": dl.error,
            "attempts": dl.attempts,
        },
    })
}

#[async_trait]
pub trait KvStore {
    async fn kv_get(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<KvEntry>>;
    /// Writes the value and queues an event per matching enabled trigger, atomically.
    async fn kv_set(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
        value: &Value,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome>;
    /// Deletes the entry (`prev` tells whether there was one) and queues events.
    async fn kv_delete(
        &self,
        app: &AppId,
        collection: &str,
        key: &str,
        cause: &EventCause,
    ) -> StoreResult<WriteOutcome>;
    /// Entries in key order, optionally only keys starting with `prefix`.
    async fn kv_list(
        &self,
        app: &AppId,
        collection: &str,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> StoreResult<Page<KvEntry>>;
}

#[async_trait]
pub trait TriggerStore {
    /// `NotFound` unless the script exists in that very app and is an endpoint: a
    /// trigger can never run another app's script. A cron trigger starts at its first
    /// window after now.
    async fn create_trigger(&self, new: NewTrigger) -> StoreResult<Trigger>;
    async fn get_trigger(&self, app: &AppId, id: &TriggerId) -> StoreResult<Trigger>;
    async fn list_triggers(&self, app: &AppId, page: &PageRequest) -> StoreResult<Page<Trigger>>;
    /// Enabling a disabled cron trigger moves it to its first window after now: the
    /// windows it missed while off are not caught up.
    async fn set_trigger_enabled(
        &self,
        app: &AppId,
        id: &TriggerId,
        enabled: bool,
    ) -> StoreResult<Trigger>;
    async fn delete_trigger(&self, app: &AppId, id: &TriggerId) -> StoreResult<()>;
}

#[async_trait]
pub trait EventStore {
    /// Queues one delivery (an async route call). `Conflict` if the id is queued.
    async fn enqueue_event(&self, new: NewEvent) -> StoreResult<()>;
    /// Claims due, unclaimed (or lease-expired) deliveries for `lease`, as many as
    /// `plan` has room for, taking turns across apps (`ClaimPlan::pick`): each app's
    /// oldest first. Returned in due order.
    async fn claim_planned(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        plan: &ClaimPlan,
    ) -> StoreResult<Vec<OutboxEvent>>;
    /// Claims up to `limit` due deliveries of any apps, in turns across apps.
    async fn claim_events(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<OutboxEvent>> {
        self.claim_planned(now, lease, &ClaimPlan::any(limit)).await
    }
    /// Keeps a running delivery claimed; `false` if someone else holds it now.
    async fn extend_lease(
        &self,
        id: &EventId,
        version: i64,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Success: the delivery is done. `false` if the claim was lost.
    async fn complete_event(&self, id: &EventId, version: i64) -> StoreResult<bool>;
    /// Failure with attempts left: run `attempt` again at `due_at`.
    async fn retry_event(
        &self,
        id: &EventId,
        version: i64,
        attempt: u32,
        due_at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Failure with no attempts left: the delivery becomes a dead letter and every
    /// enabled `dead_letter` trigger of the app gets an event for it (one run, no
    /// retries, depth + 1), atomically. `None` if the claim was lost.
    async fn dead_letter_event(
        &self,
        id: &EventId,
        version: i64,
        error: &str,
        max_depth: u32,
    ) -> StoreResult<Option<DeadLetter>>;
    /// A dead-letter handler failed: its dead letter is marked `handler_failed`, and
    /// nothing new is queued.
    async fn fail_dead_letter_handler(
        &self,
        id: &EventId,
        version: i64,
        dead_letter: &DeadLetterId,
    ) -> StoreResult<bool>;
    /// Releases every claim (single-node start-up: whatever was running died with the
    /// previous process).
    async fn release_claims(&self) -> StoreResult<u64>;
    /// When the next unclaimed delivery is due.
    async fn next_event_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Deliveries queued for an app (claimed or not).
    async fn count_events(&self, app: &AppId) -> StoreResult<u64>;
}

#[async_trait]
pub trait DeadLetterStore {
    async fn list_dead_letters(
        &self,
        app: &AppId,
        filter: DeadLetterFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<DeadLetter>>;
    async fn get_dead_letter(&self, app: &AppId, id: &DeadLetterId) -> StoreResult<DeadLetter>;
    async fn resolve_dead_letter(&self, app: &AppId, id: &DeadLetterId) -> StoreResult<DeadLetter>;
    /// Queues the event again under its original id, attempt 1, with `retry`; the dead
    /// letter becomes `replayed`. `Conflict` while that event is still queued.
    async fn replay_dead_letter(
        &self,
        app: &AppId,
        id: &DeadLetterId,
        retry: RetryPolicy,
    ) -> StoreResult<EventId>;
    async fn delete_dead_letters_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;
}

#[async_trait]
pub trait AbandonedStore {
    async fn record_abandoned(&self, entry: &Abandoned) -> StoreResult<()>;
    async fn list_abandoned(&self, app: &AppId, page: &PageRequest)
        -> StoreResult<Page<Abandoned>>;
    async fn delete_abandoned_before(&self, cutoff: DateTime<Utc>, limit: u32) -> StoreResult<u64>;
}
