//! The storage side of cron triggers: which are due, firing one (the outbox row and
//! the move to the next window in one transaction, as a compare-and-set), and the
//! leadership that lets exactly one node schedule.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::cron::{rfc3339, CronError, CronSchedule};
use picloud_core::{AppId, ScriptId, TriggerId};
use serde_json::{json, Value};

use crate::{NewEvent, RetryPolicy, StoreError, StoreResult};

/// Where a cron trigger stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CronState {
    /// The window the scheduler waits for; `None` when the schedule has no more.
    pub next_fire_at: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
}

/// An enabled cron trigger whose next window has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCron {
    pub trigger_id: TriggerId,
    pub app_id: AppId,
    pub script_id: ScriptId,
    /// The trigger's own policy; `None` uses the instance defaults.
    pub retry: Option<RetryPolicy>,
    pub schedule: String,
    pub timezone: String,
    pub next_fire_at: DateTime<Utc>,
}

/// One firing of a cron trigger.
#[derive(Debug, Clone)]
pub struct CronFire {
    pub trigger_id: TriggerId,
    /// The `next_fire_at` the scheduler read; the firing happens only if it still is.
    pub expected_next_fire_at: DateTime<Utc>,
    /// The window after this one (`None`: the schedule has no more).
    pub next_fire_at: Option<DateTime<Utc>>,
    pub fired_at: DateTime<Utc>,
    /// The delivery to queue.
    pub event: NewEvent,
}

/// The event a cron trigger emits (SCRIPTING.md "Events").
pub fn cron_event(
    schedule: &str,
    timezone: &str,
    scheduled_at: DateTime<Utc>,
    fired_at: DateTime<Utc>,
) -> Value {
    json!({
        "source": "cron",
        "op": "tick",
        "cron": {
            "schedule": schedule,
            "timezone": timezone,
            "scheduled_at": rfc3339(scheduled_at),
            "fired_at": rfc3339(fired_at),
        },
    })
}

/// The first window of a schedule after `after`, for backends storing a new or
/// re-enabled trigger. A schedule that no longer parses is `Invalid` (the API
/// validates before it gets here).
pub fn first_window(
    schedule: &str,
    timezone: &str,
    after: DateTime<Utc>,
) -> StoreResult<Option<DateTime<Utc>>> {
    let parsed = CronSchedule::parse(schedule, timezone).map_err(|e| match e {
        CronError::Schedule(m) | CronError::Timezone(m) => StoreError::Invalid(m),
    })?;
    Ok(parsed.next_after(after))
}

/// The right to run the cron scheduler, held by at most one node of a database.
#[async_trait]
pub trait Leadership: Send {
    /// Takes the leadership, or checks that it is still held; `false` while another
    /// node holds it (or the database cannot be reached, which loses it).
    async fn hold(&mut self) -> StoreResult<bool>;
    /// Gives it up (shutdown), so another node can take over at once.
    async fn release(&mut self);
}

#[async_trait]
pub trait CronStore {
    /// Enabled cron triggers whose `next_fire_at` is at or before `now`, earliest first.
    async fn due_cron_triggers(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<DueCron>>;
    /// In one transaction: queues `fire.event` and moves the trigger to
    /// `fire.next_fire_at` (recording `last_fired_at`), only if the trigger is still
    /// enabled and its `next_fire_at` still equals `fire.expected_next_fire_at`.
    /// `false` (nothing written) otherwise: another scheduler fired this window, or the
    /// trigger was disabled, re-enabled or deleted meanwhile.
    async fn fire_cron(&self, fire: &CronFire) -> StoreResult<bool>;
    /// The earliest `next_fire_at` of the enabled cron triggers.
    async fn next_cron_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Moves a cron trigger's next window without firing, if it is still `expected`
    /// (parking a trigger whose schedule cannot be evaluated; tests simulating
    /// downtime). `false` if it was not.
    async fn reschedule_cron(
        &self,
        trigger: &TriggerId,
        expected: Option<DateTime<Utc>>,
        next_fire_at: Option<DateTime<Utc>>,
    ) -> StoreResult<bool>;
    /// A handle on the scheduler's leadership for this node.
    fn cron_leadership(&self) -> Box<dyn Leadership>;
}

/// Leadership where one process owns the database (SQLite): always held.
pub struct SoleLeader;

#[async_trait]
impl Leadership for SoleLeader {
    async fn hold(&mut self) -> StoreResult<bool> {
        Ok(true)
    }

    async fn release(&mut self) {}
}
