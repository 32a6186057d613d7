//! Which deliveries a write queues, decided once for every backend: the backends read
//! the matching triggers (with their own SQL and locks) and insert what this returns
//! into the outbox inside the write's transaction.

use picloud_core::model::ExecutionSource;
use picloud_core::{AppId, EventId, ScriptId, TriggerId};
use serde_json::Value;

use crate::{dead_letter_event, DeadLetter, EventCause, NewEvent, RetryPolicy, WriteOutcome};

/// A trigger an event is delivered to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub trigger_id: TriggerId,
    pub script_id: ScriptId,
    /// The trigger's own policy, or the default when it sets none.
    pub retry: RetryPolicy,
}

/// The deliveries of one write.
#[derive(Debug, Default)]
pub struct FanOut {
    pub events: Vec<NewEvent>,
    /// Matching triggers skipped because the depth limit was reached.
    pub skipped_for_depth: usize,
}

impl FanOut {
    /// One delivery of `payload` per target, one level deeper than the write's cause;
    /// past the depth limit nothing is queued and the skipped targets are counted.
    pub fn of_write(
        app: &AppId,
        targets: Vec<Target>,
        source: ExecutionSource,
        payload: Value,
        cause: &EventCause,
    ) -> FanOut {
        let Some(depth) = cause.child_depth() else {
            return FanOut {
                events: Vec::new(),
                skipped_for_depth: targets.len(),
            };
        };
        let events = targets
            .into_iter()
            .map(|target| NewEvent {
                id: EventId::new(),
                app_id: app.clone(),
                trigger_id: Some(target.trigger_id),
                script_id: target.script_id,
                source,
                payload: payload.clone(),
                retry: target.retry,
                depth,
                due_at: picloud_core::now(),
            })
            .collect();
        FanOut {
            events,
            skipped_for_depth: 0,
        }
    }

    /// The depth of the handler deliveries a dead letter of a delivery (from `source`,
    /// at `depth`) queues, or `None` when it queues none: dead-letter handlers never
    /// produce dead letters of their own, and the depth limit holds here too.
    pub fn dead_letter_depth(source: ExecutionSource, depth: u32, max_depth: u32) -> Option<u32> {
        let child = depth + 1;
        (source != ExecutionSource::DeadLetter && child <= max_depth).then_some(child)
    }

    /// One delivery of the dead letter to each handler, tried once.
    pub fn of_dead_letter(dl: &DeadLetter, targets: Vec<Target>, depth: u32) -> Vec<NewEvent> {
        let payload = dead_letter_event(dl);
        targets
            .into_iter()
            .map(|target| NewEvent {
                id: EventId::new(),
                app_id: dl.app_id.clone(),
                trigger_id: Some(target.trigger_id),
                script_id: target.script_id,
                source: ExecutionSource::DeadLetter,
                payload: payload.clone(),
                retry: RetryPolicy::ONCE,
                depth,
                due_at: picloud_core::now(),
            })
            .collect()
    }

    /// What the write reports once the deliveries are inserted.
    pub fn into_outcome(self) -> WriteOutcome {
        WriteOutcome {
            prev: None,
            events: self.events.into_iter().map(|e| e.id).collect(),
            skipped_for_depth: self.skipped_for_depth,
        }
    }
}
